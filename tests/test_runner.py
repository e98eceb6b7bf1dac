"""The runner's promises (issue 13): a seed never overwrites another seed's results, two seeds run
at once without corrupting each other, a dead worker fails only its chain, a hung cell is stopped,
bad `--set` input fails before any notebook starts, missing outputs are rebuilt, and the chain hash
follows the package, the lock and the parameters."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
import pytest
from compendium.core.config import ConfigError, get_paper
from compendium.core.runner import (
    chain_hash,
    read_status,
    reproduce,
    run_chain,
    toy_compendium,
    _toy_notebook,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# a toy chain that writes per-seed data, results, a
# figure and claims through compendium's own paths()
SEEDED = """
import json, time
from compendium.core.artifacts import paths, save_json
from compendium.core.claims import ClaimSet
P = paths("toy", scale, seed=seed)
for i in range(5):  # several writes, interleaved with a concurrent run's
    save_json({"seed": seed, "i": i}, P.data / "data.json")
    save_json({"seed": seed}, P.results / "r.json")
    time.sleep(0.05)
cs = ClaimSet("toy", scale, seed)
cs.add("C1", "the seed", seed, ">=", 0, scales=("ci", "default"))
cs.write()
"""


def _seeded_toy(tmp_path):
    root = toy_compendium(tmp_path)
    _toy_notebook(root / "nbs/toy/01_a.ipynb", SEEDED)
    _toy_notebook(root / "nbs/toy/02_b.ipynb", "x = 1")
    return root


def test_another_seed_never_touches_the_committed_results(tmp_path):
    root = _seeded_toy(tmp_path)
    r0 = run_chain("toy", "default", root=root, out=root, log=print)  # the committed seed (0)
    assert r0.status == "ok" and (root / "figures/toy/claims.json").exists()
    before = (root / "figures/toy/claims.json").read_bytes()
    r7 = run_chain("toy", "default", seed=7, root=root, out=root, log=print)
    assert r7.status == "ok" and (root / "figures/toy/claims.json").read_bytes() == before
    d7 = root / "runs/default/toy/seed-7"
    assert json.loads((d7 / "figures/claims.json").read_text())["claims"][0]["measured"] == 7
    assert (d7 / "01_a.ipynb").exists() and (d7 / "status.json").exists()
    assert json.loads((root / "data/toy/default/seed-7/data.json").read_text())["seed"] == 7


def test_two_seeds_at_once_do_not_corrupt_each_other(tmp_path):
    root = _seeded_toy(tmp_path)
    res = {}
    ts = [
        threading.Thread(
            target=lambda s=s: res.__setitem__(
                s,
                subprocess.run(
                    [
                        str(BIN / "compendium"),
                        "reproduce",
                        "toy",
                        "--scale",
                        "ci",
                        "--seed",
                        str(s),
                    ],
                    cwd=root,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    env={**os.environ, "COMPENDIUM_ROOT": str(root)},
                ),
            )
        )
        for s in (1, 2)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for s in (1, 2):
        assert res[s].returncode == 0, res[s].stdout + res[s].stderr
        d = root / f"runs/ci/toy/seed-{s}"
        assert json.loads((d / "figures/claims.json").read_text())["claims"][0]["measured"] == s
        assert json.loads((d / "results/r.json").read_text()) == {"seed": s}
        assert json.loads((root / f"data/toy/ci/seed-{s}/data.json").read_text()) == {
            "seed": s,
            "i": 4,
        }
        assert read_status("toy", "ci", root, seed=s)["status"] == "ok"


def test_missing_outputs_are_rebuilt(tmp_path):
    root = _seeded_toy(tmp_path)
    assert run_chain("toy", "ci", root=root, out=root, log=print).status == "ok"
    assert run_chain("toy", "ci", root=root, out=root, log=print).status == "skipped"
    (root / "runs/ci/toy/seed-0/figures/claims.json").unlink()  # an output went missing
    r = run_chain("toy", "ci", root=root, out=root, log=print)
    assert (
        r.status == "ok"
        and r.ran == ["01_a", "02_b"]
        and (root / "runs/ci/toy/seed-0/figures/claims.json").exists()
    )


def test_a_dead_worker_fails_only_its_chain(tmp_path):
    root = toy_compendium(tmp_path)
    (root / "nbs/toy/go").touch()
    ini = (
        root / "settings.ini"
    ).read_text() + "\n[paper:killer]\ntitle = K\narxiv = 0\nnotebooks = 01_a\nbudget_ci_s = 60\n"
    (root / "settings.ini").write_text(ini)
    # the kernel's parent is the worker process: kill it, as the out-of-memory killer would
    _toy_notebook(
        root / "nbs/killer/01_a.ipynb",
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL); time.sleep(30)",
    )
    res = reproduce(["toy", "killer"], "ci", jobs=2, root=root, out=root, log=print)
    assert [r.status for r in res] == ["ok", "failed"]
    assert (
        "worker process died" in res[1].error
        and "signal 9" in res[1].error
        and "\n" not in res[1].error
    )
    assert read_status("toy", "ci", root)["status"] == "ok"  # the other chain's results are kept


def test_a_hung_cell_is_stopped_with_one_line(tmp_path):
    root = toy_compendium(tmp_path)
    _toy_notebook(root / "nbs/toy/01_a.ipynb", "import time\ntime.sleep(600)")
    r = subprocess.run(
        [str(BIN / "compendium"), "reproduce", "toy", "--scale", "ci", "--timeout", "3"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COMPENDIUM_ROOT": str(root)},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    line = [l for l in r.stdout.splitlines() if "FAILED" in l]
    assert (
        len(line) == 1
        and "01_a.ipynb stopped: a cell ran longer than the 3 s cell timeout" in line[0]
    )
    # the default cell timeout comes from the chain's budget at the scale
    assert read_status("toy", "ci", root)["cell_timeout_s"] == 3
    from compendium.core.runner import cell_timeout_for

    assert (
        cell_timeout_for(get_paper("cobra", ROOT), "ci")
        == 2 * get_paper("cobra", ROOT).budgets["ci"]
    )


def test_bad_set_fails_before_any_notebook(tmp_path):
    out = tmp_path / "out"
    for bad, msg in (("horizon=3", "no field 'horizon'"), ("T='x'", "must be int")):
        r = subprocess.run(
            [
                str(BIN / "compendium"),
                "reproduce",
                "cobra",
                "--scale",
                "ci",
                "--set",
                bad,
                "--out",
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (
            r.stderr
        )
    assert not (out / "runs").exists()  # nothing started
    with pytest.raises(ConfigError):
        reproduce(["cobra"], "ci", overrides={"T": "x"}, out=out)


def test_chain_hash_follows_package_lock_and_parameters(tmp_path):
    """A copy of the project: editing a core module, the
    paper's package or the lock changes the hash."""
    import shutil

    root = tmp_path / "p"
    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(".venv", ".git", "runs", "data", "figures", "_site", "docs"),
    )
    p = get_paper("cobra", root)
    h = chain_hash(p, "ci", 0, root=root)
    assert h != chain_hash(p, "ci", 0, {"T": 500}, root=root) and h != chain_hash(
        p, "ci", 1, root=root
    )
    for f in (
        "compendium/core/artifacts.py",
        "compendium/cobra/experiments.py",
        "requirements.lock",
    ):
        old = (root / f).read_text()
        (root / f).write_text(old + "\n# changed\n")
        assert chain_hash(p, "ci", 0, root=root) != h, f
        (root / f).write_text(old)
    assert chain_hash(p, "ci", 0, root=root) == h
