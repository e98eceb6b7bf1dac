"""Seed sweeps (issue 14) on a real Dask cluster on loopback: a `dask scheduler` and two
`dask worker` processes started here run a toy chain over three seeds (outputs equal to running the
same seeds locally); a worker killed in the middle of a task costs only that task (retried on the
other worker, nothing finished redone); a wrong or lost scheduler gives one line and exit code 1
within a timeout; the robustness ledger on hand-made claims files is checked against values
computed by hand; and the cheapest real chain (cobra) runs at ci scale on three seeds."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compendium.core.artifacts import paths, save_json
from compendium.core.runner import _toy_notebook, read_status, reproduce, toy_compendium
from compendium.core.sweep import environment, run_task

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# 01_a writes per-seed data, results and claims, and counts its own runs per seed; 02_b, while
# `hold-<seed>` exists in the output folder, says which worker, chain process and kernel run it,
# and waits
TOY_A = """
import os, pathlib
from compendium.core.artifacts import paths, save_json
from compendium.core.claims import ClaimSet
out = pathlib.Path(os.environ["COMPENDIUM_OUT"])
P = paths("toy", scale, seed=seed)
save_json({"seed": seed, "x": [seed * i for i in range(5)]}, P.data / "data.json")
save_json({"seed": seed, "y": seed**2}, P.results / "r.json")
cs = ClaimSet("toy", scale, seed)
cs.add("C1", "the seed is at most 1", seed, "<=", 1, scales=("ci", "default"))
cs.write()
f = out / f"count-{seed}.txt"
f.write_text(str(int(f.read_text()) + 1 if f.exists() else 1))
"""
TOY_B = """
import os, pathlib, time, psutil
out = pathlib.Path(os.environ["COMPENDIUM_OUT"])
if (out / f"hold-{seed}").exists():
    me = psutil.Process()
    chain = me.parent()
    (out / f"running-{seed}.txt").write_text(f"{chain.parent().pid} {chain.pid} {me.pid}")
    for _ in range(1200):
        if not (out / f"hold-{seed}").exists():
            break
        time.sleep(0.1)
"""


def _toy(tmp_path: Path) -> Path:
    root = toy_compendium(tmp_path / "toy")
    _toy_notebook(root / "nbs/toy/01_a.ipynb", TOY_A)
    _toy_notebook(root / "nbs/toy/02_b.ipynb", TOY_B)
    return root


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class LocalDask:
    "A `dask scheduler` and `n` `dask worker` processes (one thread each, no nanny) on 127.0.0.1."

    def __init__(self, tmp: Path, n: int = 2):
        self.tmp, self.logs = tmp, tmp / "dask-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._start(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"
        )
        self.workers = [
            self._start(
                f"worker-{i}",
                "worker",
                self.address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"w{i}",
                "--local-directory",
                str(tmp / f"scratch-{i}"),
            )
            for i in range(n)
        ]
        t0 = time.time()
        while not all("Registered to" in self.log(f"worker-{i}") for i in range(n)):
            assert time.time() - t0 < 120, "the Dask workers did not register:\n" + self.log(
                "worker-0"
            )
            assert self.scheduler.poll() is None, "dask scheduler died:\n" + self.log("scheduler")
            time.sleep(0.3)

    def _start(self, name, *args):
        f = open(self.logs / f"{name}.log", "w")
        return subprocess.Popen(
            [str(BIN / "dask"), *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
            start_new_session=True,
        )

    def log(self, name) -> str:
        return (self.logs / f"{name}.log").read_text()

    def close(self):
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def dask_cluster(tmp_path):
    c = LocalDask(tmp_path)
    yield c
    c.close()


def _compendium(*args, root: Path, timeout=300, extra_env=None, **kw):
    env = {**os.environ, "COMPENDIUM_ROOT": str(root), "MPLBACKEND": "Agg", **(extra_env or {})}
    env.pop("COMPENDIUM_OUT", None)
    return subprocess.run(
        [str(BIN / "compendium"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def _seed_files(out: Path, seed: int) -> dict:
    "What a toy run of `seed` computed (executed notebooks and provenance times left out)."
    run = out / f"runs/ci/toy/seed-{seed}"
    return {
        "data": json.loads((out / f"data/toy/ci/seed-{seed}/data.json").read_text()),
        "results": json.loads((run / "results/r.json").read_text()),
        "claims": json.loads((run / "figures/claims.json").read_text())["claims"],
        "notebooks": sorted(p.name for p in run.glob("*.ipynb")),
    }


# ----------------------------------------------------------------------------------- the sweep
def test_sweep_on_dask_equals_local(tmp_path, dask_cluster):
    root = _toy(tmp_path)
    d, l = tmp_path / "on-dask", tmp_path / "local"
    r = _compendium(
        "reproduce",
        "toy",
        "--scale",
        "ci",
        "--seeds",
        "0-2",
        "--scheduler",
        dask_cluster.address,
        "--out",
        str(d),
        root=root,
    )
    assert r.returncode == 0, r.stdout + r.stderr + dask_cluster.log("worker-0")
    assert "3 of 3 runs (paper, seed) ok at scale ci" in r.stdout
    assert f"Dask scheduler {dask_cluster.address}: 2 worker(s), 3 task(s)" in r.stdout + r.stderr
    r = _compendium(
        "reproduce", "toy", "--scale", "ci", "--seeds", "0,1,2", "--out", str(l), root=root
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for s in (0, 1, 2):
        assert _seed_files(d, s) == _seed_files(l, s)
        assert _seed_files(d, s)["claims"][0]["measured"] == s
        assert read_status("toy", "ci", d, seed=s)["status"] == "ok"
    # the chains ran in the workers' chain processes (their output is in the workers' logs)
    logs = dask_cluster.log("worker-0") + dask_cluster.log("worker-1")
    assert all(f"toy [ci, seed {s}]: 02_b.ipynb ok" in logs for s in (0, 1, 2)), logs
    assert (d / "runs/ci/toy/seed-0/figures/robustness.png").exists()  # drawn after the sweep


def test_a_killed_worker_costs_only_its_task(tmp_path, dask_cluster):
    root, out = _toy(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "hold-1").touch()
    cmd = [
        "reproduce",
        "toy",
        "--scale",
        "ci",
        "--seeds",
        "0-2",
        "--scheduler",
        dask_cluster.address,
        "--out",
        str(out),
    ]
    env = {**os.environ, "COMPENDIUM_ROOT": str(root), "MPLBACKEND": "Agg"}
    log = open(tmp_path / "sweep.log", "w")
    p = subprocess.Popen(
        [str(BIN / "compendium"), *cmd],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        f = out / "running-1.txt"
        t0 = time.time()
        while not f.exists():
            assert time.time() - t0 < 180 and p.poll() is None, (tmp_path / "sweep.log").read_text()
            time.sleep(0.2)
        worker, chain, kernel = map(int, f.read_text().split())
        victim = next(w for w in dask_cluster.workers if w.pid == worker)
        victim.kill()  # SIGKILL in the middle of seed 1's second notebook
        victim.wait()
        import psutil

        t0 = time.time()  # the chain process and its kernel follow their worker
        while any(
            psutil.pid_exists(x) and psutil.Process(x).status() != "zombie" for x in (chain, kernel)
        ):
            assert time.time() - t0 < 30, "the chain process outlived its killed worker"
            time.sleep(0.2)
        (out / "hold-1").unlink()
        assert p.wait(timeout=300) == 0, (tmp_path / "sweep.log").read_text()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "sweep.log").read_text()
    assert "3 of 3 runs (paper, seed) ok" in text
    for s in (0, 1, 2):  # nothing finished was redone: each seed's first notebook ran once
        assert (out / f"count-{s}.txt").read_text() == "1", s
        st = read_status("toy", "ci", out, seed=s)
        assert st["status"] == "ok" and _seed_files(out, s)["claims"][0]["measured"] == s
    assert read_status("toy", "ci", out, seed=1)["notebooks"][0].get(
        "resumed"
    )  # seed 1 resumed at 02_b
    # rerunning the sweep does nothing: every seed is up to date
    r = _compendium(*cmd, root=root)
    assert r.returncode == 0 and r.stdout.count(": skipped") == 3, r.stdout + r.stderr
    assert all((out / f"count-{s}.txt").read_text() == "1" for s in (0, 1, 2))


def test_wrong_scheduler_address_one_line_exit_1(tmp_path):
    root = _toy(tmp_path)
    t0 = time.time()
    r = _compendium(
        "reproduce",
        "toy",
        "--scale",
        "ci",
        "--seeds",
        "0-2",
        "--scheduler",
        f"tcp://127.0.0.1:{_free_port()}",
        "--connect-timeout",
        "2",
        root=root,
        timeout=60,
    )
    assert r.returncode == 1 and time.time() - t0 < 60
    assert r.stderr.startswith(
        "compendium: error: cannot reach the Dask scheduler at tcp://127.0.0.1:"
    )
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (root / "runs").exists()


def test_scheduler_that_goes_away_one_line_exit_1(tmp_path):
    c = LocalDask(tmp_path, n=1)
    root, out = _toy(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "hold-0").touch()
    env = {**os.environ, "COMPENDIUM_ROOT": str(root), "MPLBACKEND": "Agg"}
    p = subprocess.Popen(
        [
            str(BIN / "compendium"),
            "reproduce",
            "toy",
            "--scale",
            "ci",
            "--seeds",
            "0-1",
            "--scheduler",
            c.address,
            "--out",
            str(out),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t0 = time.time()
        while not (out / "running-0.txt").exists():
            assert time.time() - t0 < 180 and p.poll() is None, p.communicate()
            time.sleep(0.2)
        os.killpg(c.scheduler.pid, signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=60)  # no hang
    finally:
        if p.poll() is None:
            p.kill()
        c.close()
    assert p.returncode == 1, stdout + stderr
    err = [ln for ln in stderr.splitlines() if ln.strip() and "sweep [ci]" not in ln]
    assert len(err) == 1 and err[0].startswith("compendium: error: lost the Dask scheduler"), stderr


def test_embedded_sweep_reruns_only_unfinished_seeds(tmp_path):
    root = _toy(tmp_path)
    _toy_notebook(
        root / "nbs/toy/02_b.ipynb",
        "import pathlib\nif pathlib.Path(f'fail-{seed}').exists(): raise RuntimeError('no')",
    )
    (root / "nbs/toy/fail-2").touch()
    res = reproduce(["toy"], "ci", seeds=[0, 1, 2], jobs=2, root=root, out=root, log=print)
    assert [(r.seed, r.status) for r in res] == [(0, "ok"), (1, "ok"), (2, "failed")]
    (root / "nbs/toy/fail-2").unlink()
    res = reproduce(["toy"], "ci", seeds=[0, 1, 2], root=root, out=root, log=print)
    assert [(r.seed, r.status, r.ran) for r in res] == [
        (0, "skipped", []),
        (1, "skipped", []),
        (2, "ok", ["02_b"]),
    ]
    assert [(root / f"count-{s}.txt").read_text() for s in (0, 1, 2)] == ["1", "1", "1"]


def test_environment_mismatch_fails_the_task_and_writes_nothing(tmp_path):
    root = _toy(tmp_path)
    kw = dict(scale="ci", seed=5, root=str(root), out=str(root))
    for k, v in (("commit", "f" * 40), ("lock", "0" * 16)):
        r = run_task("toy", kw, {**environment(), k: v}, threads=1)
        assert (
            r.status == "failed"
            and "\n" not in r.error
            and "differs from the submitter's" in r.error
        )
    assert not (root / "runs").exists() and not (root / "data").exists()


def test_slurm_without_sbatch_one_line_exit_2(tmp_path):
    root = _toy(tmp_path)
    r = _compendium(
        "reproduce",
        "toy",
        "--scale",
        "ci",
        "--seeds",
        "0-1",
        "--cluster",
        "slurm",
        root=root,
        extra_env={"PATH": str(BIN)},
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "sbatch" in r.stderr or "dask-jobqueue" in r.stderr


# ---------------------------------------------------------------------------------- the ledger
def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_robustness_ledger_on_hand_made_claims(tmp_path):
    from compendium.core.sweep import robustness, robustness_figure

    root = tmp_path / "hm"
    root.mkdir()
    (root / "settings.ini").write_text(
        "[compendium]\nseed = 0\n\n[paper:hm]\ntitle = H\nnotebooks = a\n"
    )
    measured = [0.10, 0.40, 0.20, 0.90, 0.30, 0.45, 0.80, 0.05]  # C1 (<= 0.5) holds on 6 of 8
    for s, m in enumerate(measured):
        claims = [
            dict(
                id="C1",
                statement="small",
                measured=m,
                op="<=",
                target=0.5,
                status="pass" if m <= 0.5 else "fail",
            ),
            dict(
                id="C2",
                statement="big",
                measured=float(s),
                op=">=",
                target=3.0,
                status="not-checked" if s == 7 else ("pass" if s >= 3 else "fail"),
            ),
        ]
        save_json(
            {"paper": "hm", "scale": "default", "seed": s, "claims": claims},
            paths("hm", "default", root, make=False, seed=s).claims,
        )
    bad = paths("hm", "default", root, make=False, seed=9).claims  # an unreadable file is left out
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert (root / "figures/hm/claims.json").exists()  # seed 0 is the committed one
    df = robustness("default", root, root).set_index("id")
    c1, c2 = df.loc["C1"], df.loc["C2"]
    assert (c1.seeds, c1.checked, c1.holds) == (8, 8, 6) and c1.rate == 6 / 8
    assert np.allclose([c1.lo, c1.hi], _wilson_by_hand(6, 8), atol=1e-12)
    assert np.allclose(
        [c1.lo, c1.hi], [0.4093, 0.9285], atol=1e-4
    )  # the same, from a table of Wilson intervals
    srt = sorted(measured)  # percentiles by linear interpolation, by hand
    assert math.isclose(c1["median"], (srt[3] + srt[4]) / 2)
    assert math.isclose(c1.p5, srt[0] + 0.35 * (srt[1] - srt[0]))  # rank 0.05 * 7 = 0.35
    assert math.isclose(c1.p95, srt[6] + 0.65 * (srt[7] - srt[6]))  # rank 6.65
    # C2: seed 7 ran but did not check it; it holds on seeds 3..6 of the 7 checked
    assert (c2.seeds, c2.checked, c2.holds) == (8, 7, 4)
    assert np.allclose([c2.lo, c2.hi], _wilson_by_hand(4, 7), atol=1e-12)
    assert math.isclose(c2["median"], 3.5)
    # the CLI prints the same ledger
    r = _compendium("claims", "--seeds", "--figures", root=root, timeout=120)
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| hm | C1 |"))
    assert "| 8 | 6/8 | 75% [41%, 93%] | 0.35 [0.0675, 0.865] | <= 0.5 |" in row, row
    png = robustness_figure("hm", "default", root, root)
    assert png == root / "figures/hm/robustness.png" and png.stat().st_size > 5000
    # a fresh clone has no runs/: the figure's committed sidecar keeps the sweep's claims
    import shutil

    shutil.rmtree(root / "runs")
    again = robustness("default", root, root).set_index("id")
    assert again.drop(columns="seed_list").equals(df.drop(columns="seed_list"))


# -------------------------------------------------------------------------------- a real chain
def test_cobra_ci_three_seeds_through_dask(tmp_path, dask_cluster):
    "The cheapest real chain at ci scale on three seeds, through the local Dask scheduler."
    out = tmp_path / "out"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("COMPENDIUM_OUT", None)
    r = subprocess.run(
        [
            str(BIN / "compendium"),
            "reproduce",
            "cobra",
            "--scale",
            "ci",
            "--seeds",
            "0-2",
            "--scheduler",
            dask_cluster.address,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for s in (0, 1, 2):
        cl = json.loads((out / f"runs/ci/cobra/seed-{s}/figures/claims.json").read_text())
        assert (cl["paper"], cl["scale"], cl["seed"]) == ("cobra", "ci", s) and cl["claims"]
    r = subprocess.run(
        [str(BIN / "compendium"), "claims", "--seeds", "--scale", "ci"],
        cwd=ROOT,
        env={**env, "COMPENDIUM_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "| cobra | " in r.stdout and "| 3 |" in r.stdout, (
        r.stdout + r.stderr
    )


# ------------------------------------------------------------------------------------ the docs page
def test_cluster_page_is_staged(monkeypatch):
    "docs/build.py turns nbs/cluster.ipynb into the page `cluster`, listed under Reference."
    monkeypatch.syspath_prepend(str(ROOT / "docs"))
    monkeypatch.setenv("COMPENDIUM_ROOT", str(ROOT))
    import build

    site = build.Site(ROOT)
    site.guides()
    page = site.pages["cluster.ipynb"]
    text = "\n".join(c["source"] for c in page["cells"] if c["cell_type"] == "markdown")
    assert text.startswith("# Running on a cluster")
    for h in (
        "The embedded default",
        "An existing Dask cluster",
        "SLURM through dask-jobqueue",
        "GPUs as worker resources",
        "What must be shared",
        "When a worker dies",
    ):
        assert f"## {h}" in text, h
    assert "cluster" in [build.nbdoc_name(f.stem) for f in site.guide_notebooks()]
