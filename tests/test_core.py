"""Unit tests of compendium.core: every bad input gives
one clear line; the runner skips, resumes and reports."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
import numpy as np
import pytest
from compendium.core.config import ConfigError, get_paper, papers, check_scale
from compendium.core.artifacts import (
    CorruptArtifact,
    MissingArtifact,
    Checkpointer,
    load_checkpoint,
    load_json,
    load_table,
    save_checkpoint,
)
from compendium.core.claims import ClaimSet, ledger, ledger_markdown
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


# ---------------------------------------------------------------- bad input: one line, clear
def _one_line(e):
    s = str(e.value)
    assert "\n" not in s.strip(), s
    return s


def test_bad_scale():
    with pytest.raises(ConfigError) as e:
        check_scale("large")
    assert "unknown scale 'large'" in _one_line(e)


def test_unknown_paper():
    with pytest.raises(ConfigError) as e:
        get_paper("alphafold")
    assert "unknown paper 'alphafold'" in _one_line(e) and "cobra" in str(e.value)


def test_config_field_and_type_errors():
    from compendium.cobra.data import CobraConfig

    with pytest.raises(ConfigError) as e:
        CobraConfig.for_scale("ci", horizon=10)
    assert "no field 'horizon'" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        CobraConfig.for_scale("ci", T="100")
    assert "CobraConfig.T must be int" in _one_line(e)
    with pytest.raises(ConfigError):
        CobraConfig.for_scale("nano")
    assert (
        CobraConfig.for_scale("ci", seeds=2).seeds == 2
        and CobraConfig.for_scale("paper").T == 50_000
    )


def test_missing_and_corrupt_artifacts(tmp_path):
    with pytest.raises(MissingArtifact) as e:
        load_table(tmp_path / "x.parquet")
    assert "missing results" in _one_line(e)
    (tmp_path / "c.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(CorruptArtifact) as e:
        load_checkpoint(tmp_path / "c.safetensors")
    assert "corrupt checkpoint" in _one_line(e)
    (tmp_path / "j.json").write_text("[1,")
    with pytest.raises(CorruptArtifact):
        load_json(tmp_path / "j.json")


def test_missing_data_for_a_chain(tmp_path, monkeypatch):
    """A chain notebook run before its data exists stops
    with a one-line 'missing' error naming what to run."""
    from compendium.cobra.data import CobraConfig, load_instances

    monkeypatch.setenv("COMPENDIUM_OUT", str(tmp_path))
    with pytest.raises(MissingArtifact) as e:
        load_instances(CobraConfig.for_scale("ci"))
    assert "run nbs/cobra/01_data.ipynb first" in _one_line(e)


def test_checkpoint_roundtrip_and_resume(tmp_path):
    f = save_checkpoint(tmp_path / "s.safetensors", {"a": np.arange(4.0)}, {"step": 3})
    arrays, meta = load_checkpoint(f)
    assert meta == {"step": 3} and arrays["a"].tolist() == [0, 1, 2, 3]
    ck = Checkpointer(tmp_path / "loop.safetensors", every=2)
    assert (
        ck.load() is None
        and ck.maybe_save(4, lambda: ({"x": np.ones(1)}, {}))
        and ck.load()[1]["step"] == 4
    )
    assert not ck.maybe_save(5, lambda: ({"x": np.ones(1)}, {}))


# ---------------------------------------------------------------- claims and the ledger
def test_claims_file_and_ledger(tmp_path):
    cs = ClaimSet("cobra", "default", 0)
    cs.add("C1", "ok", 0.1, "<=", 0.5)
    cs.add("C2", "fails", 0.9, "<=", 0.5)
    cs.add("C3", "paper only", 1, ">=", 0, scales=("paper",))
    f = cs.write(tmp_path)
    d = json.loads(f.read_text())
    assert (
        f == tmp_path / "figures/cobra/claims.json"
        and d["paper"] == "cobra"
        and {"commit", "dirty", "created"} <= d.keys()
    )
    assert [c["status"] for c in d["claims"]] == ["pass", "fail", "not-checked"]
    led = ledger("default", root=tmp_path)
    assert list(led[led.paper == "cobra"].status) == ["pass", "fail", "not-checked"]
    assert (led[led.paper != "cobra"].status == "not-run").all()
    assert "1 pass, 1 fail, 1 not-checked" in ledger_markdown("default", root=tmp_path)


# ------------------------------------------- figures never overwrite the committed ones at ci scale
def test_ci_figures_go_under_runs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from compendium.core.figures import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = save_figure(fig, "f", "cobra", "ci", 0, root=tmp_path)
    assert (
        png == tmp_path / "runs/ci/cobra/seed-0/figures/f.png"
        and not (tmp_path / "figures").exists()
    )


# --------------------------------------------------------- the runner: skip, resume, fail, parallel
def test_runner_resumes_after_failure_and_skips_when_up_to_date(tmp_path):
    root = toy_compendium(tmp_path)
    logs = []
    r = run_chain("toy", "ci", root=root, out=root, log=logs.append)
    assert (
        r.status == "failed"
        and r.error.startswith("toy: 02_b.ipynb failed in cell")
        and "\n" not in r.error
    )
    (root / "nbs/toy/go").touch()
    r = run_chain("toy", "ci", root=root, out=root, log=logs.append)
    assert r.status == "ok" and r.ran == ["02_b"] and (root / "count_a.txt").read_text() == "1"
    assert run_chain("toy", "ci", root=root, out=root, log=logs.append).status == "skipped"
    # a changed notebook source changes the hash: the chain runs again from the start
    _toy_notebook(root / "nbs/toy/02_b.ipynb", "x = 1")
    r = run_chain("toy", "ci", root=root, out=root, log=logs.append)
    assert r.ran == ["01_a", "02_b"] and (root / "count_a.txt").read_text() == "2"
    # --force reruns an up-to-date chain; another seed is another chain state
    assert run_chain("toy", "ci", root=root, out=root, force=True, log=logs.append).ran == [
        "01_a",
        "02_b",
    ]


def test_runner_resumes_after_a_real_interrupt(tmp_path):
    "SIGINT during the second notebook; the rerun does not redo the first."
    root = toy_compendium(tmp_path)
    _toy_notebook(
        root / "nbs/toy/02_b.ipynb",
        "import pathlib, time\nwhile pathlib.Path('block').exists(): time.sleep(0.2)",
    )
    (root / "nbs/toy/block").touch()
    # a background job of a non-interactive shell inherits SIGINT
    # ignored, and Python then keeps ignoring it: restore Ctrl-C
    code = (
        "import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, "
        "all_threads=True)\nsignal.signal(signal.SIGINT, signal.default_int_handler)\nfrom "
        "compendium.core.runner import run_chain; run_chain('toy', 'ci', root=sys.argv[1], "
        "out=sys.argv[1])"
    )
    err = open(tmp_path / "runner-stderr.txt", "w")
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(root)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    try:
        for _ in range(600):
            st = read_status("toy", "ci", root)
            if st and st["notebooks"][1]["status"] == "running":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the runner never reached the second notebook")
        time.sleep(1.0)
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:  # say where the runner is, should it not stop
            os.kill(p.pid, signal.SIGUSR1)
            time.sleep(2)
            err.flush()
            pytest.fail(
                "the runner did not stop within 60 s of SIGINT; its threads:\n"
                + (tmp_path / "runner-stderr.txt").read_text()[-6000:]
            )
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        err.close()
    st = read_status("toy", "ci", root)
    assert (
        st["status"] != "ok"
        and st["notebooks"][0]["status"] == "ok"
        and st["notebooks"][1]["status"] != "ok"
    )
    (root / "nbs/toy/block").unlink()
    r = run_chain("toy", "ci", root=root, out=root, log=print)
    assert r.status == "ok" and r.ran == ["02_b"] and (root / "count_a.txt").read_text() == "1"


def test_parallel_jobs_and_failure_isolation(tmp_path):
    root = toy_compendium(tmp_path)
    ini = (
        root / "settings.ini"
    ).read_text() + "\n[paper:toy2]\ntitle = Toy 2\narxiv = 0\nnotebooks = 01_a\nbudget_ci_s = 60\n"
    (root / "settings.ini").write_text(ini)
    _toy_notebook(
        root / "nbs/toy2/01_a.ipynb",
        "import os, torch\nassert torch.get_num_threads() >= "
        "1\nprint(os.environ['COMPENDIUM_THREADS'])",
    )
    res = reproduce(["toy", "toy2"], "ci", jobs=2, root=root, out=root, log=print)
    assert [r.paper for r in res] == ["toy", "toy2"]
    # toy's 02_b fails; toy2 is not stopped by it
    assert res[0].status == "failed" and res[1].status == "ok"
    with pytest.raises(ConfigError):
        reproduce(["toy", "nope"], "ci", root=root)


def test_chain_hash_tracks_package_and_lock(tmp_path):
    p = get_paper("cobra", ROOT)
    assert chain_hash(p, "ci", 0, root=ROOT) != chain_hash(p, "ci", 0, {"T": 500}, root=ROOT)


# ---------------------------------------------------------------- the CLI
def _cli(*args, **kw):
    return subprocess.run(
        [str(BIN / "compendium"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        **kw,
    )


def test_cli_unknown_paper_and_scale_exit_2():
    r = _cli("reproduce", "alphafold", "--scale", "ci")
    assert r.returncode == 2 and r.stderr.strip().startswith(
        "compendium: error: unknown paper 'alphafold'"
    )
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli("reproduce", "cobra", "--scale", "huge")
    assert r.returncode == 2 and "unknown scale 'huge'" in r.stderr
    r = _cli("reproduce", "cobra", "--scale", "ci", "--set", "horizon=3")
    assert r.returncode != 0


def test_cli_list_and_claims():
    r = _cli("list")
    assert r.returncode == 0 and all(p.id in r.stdout for p in papers(ROOT))
    r = _cli("claims")
    assert r.returncode == 0 and "| paper" in r.stdout


def test_cli_reproduce_failing_chain_exit_1(tmp_path):
    root = toy_compendium(tmp_path)
    r = subprocess.run(
        [str(BIN / "compendium"), "reproduce", "toy", "--scale", "ci"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        env={**os.environ, "COMPENDIUM_ROOT": str(root)},
    )
    assert r.returncode == 1 and "FAILED toy: 02_b.ipynb failed in cell" in r.stdout


# ---------------------------------------------------------------- nothing reaches the network
def test_network_is_blocked_except_loopback():
    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("1.1.1.1", 80), timeout=2)
    socket.socket().bind(("127.0.0.1", 0))  # loopback stays usable (kernels, local servers)


def test_hub_loads_fail_fast_offline():
    from transformers import AutoConfig

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    t0 = time.time()
    with pytest.raises(OSError):
        AutoConfig.from_pretrained("bert-base-uncased")
    assert time.time() - t0 < 30


# -------------------------------------------------- nothing computed is lost (issue 13, helper H2):
# one atomic checkpoint (model + optimiser + schedule +
# losses), torn files, half-written model folders, exact resume
import torch  # noqa: E402
from compendium.core.text import train_tokenizer, tiny_lm, train_lm, save_model, load_model  # noqa: E402

_CORPUS = [f"agent {i} reports feature {i % 7} and reward {i % 3}." for i in range(64)]
_KW = dict(steps=20, batch_size=8, lr=1e-2, seed=3, progress=False)


@pytest.fixture(scope="module")
def small_tok():
    return train_tokenizer(_CORPUS, vocab_size=300)


def _small_lm(tok):
    return tiny_lm(len(tok), d_model=32, n_layers=1, n_heads=2, tok=tok, seed=1)


def _weights(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_checkpoint_holds_nested_optimiser_state(tmp_path):
    """An optimiser's state_dict (int keys, tuples, 0-d tensors)
    goes into the same safetensors file and comes back."""
    w = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(w.parameters(), lr=0.1, betas=(0.8, 0.9))
    w(torch.ones(1, 3)).sum().backward()
    opt.step()
    f = save_checkpoint(
        tmp_path / "s.safetensors",
        {"w": w.weight, "opt": opt.state_dict(), "rng": torch.get_rng_state()},
        {"step": 1},
    )
    st, meta = load_checkpoint(f)
    assert meta == {"step": 1} and [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]
    opt2 = torch.optim.AdamW(w.parameters(), lr=0.5)
    opt2.load_state_dict(st["opt"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"] and st["opt"]["param_groups"][0]["betas"] == (
        0.8,
        0.9,
    )
    for i in a["state"]:
        for k in a["state"][i]:
            torch.testing.assert_close(a["state"][i][k], b["state"][i][k], rtol=0, atol=0)


def test_crash_inside_a_checkpoint_save_cannot_resume_mismatched(tmp_path, monkeypatch, small_tok):
    """Killed while writing the step-10 checkpoint: the step-5
    one is intact, alone, and resumes to the straight run."""
    ref = _small_lm(small_tok)
    l_ref = train_lm(ref, small_tok, _CORPUS, **_KW)
    ck, real, calls = tmp_path / "lm.safetensors", os.replace, []

    def replace_dies_second_time(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace_dies_second_time)
    with pytest.raises(OSError, match="simulated"):
        train_lm(_small_lm(small_tok), small_tok, _CORPUS, ckpt=ck, ckpt_every=5, **_KW)
    monkeypatch.setattr(os, "replace", real)
    assert load_checkpoint(ck)[1]["step"] == 5
    # one file: no optimiser file from step 10
    assert [p.name for p in tmp_path.iterdir()] == ["lm.safetensors"]
    b = _small_lm(small_tok)
    l_res = train_lm(b, small_tok, _CORPUS, ckpt=ck, ckpt_every=5, **_KW)
    np.testing.assert_allclose(l_res, l_ref, rtol=1e-6)
    torch.testing.assert_close(_weights(b), _weights(ref), rtol=0, atol=1e-6)


def test_train_lm_interrupted_and_resumed_equals_straight_run(tmp_path, small_tok):
    ref = _small_lm(small_tok)
    l_ref = train_lm(ref, small_tok, _CORPUS, **_KW)

    def killed(step, loss):
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lm(
            _small_lm(small_tok),
            small_tok,
            _CORPUS,
            ckpt=tmp_path / "ck.safetensors",
            ckpt_every=5,
            callback=killed,
            **_KW,
        )
    b = _small_lm(small_tok)
    l_res = train_lm(b, small_tok, _CORPUS, ckpt=tmp_path / "ck.safetensors", ckpt_every=5, **_KW)
    np.testing.assert_allclose(l_res, l_ref, rtol=1e-6)
    torch.testing.assert_close(_weights(b), _weights(ref), rtol=0, atol=1e-6)


def test_torn_files_raise_corrupt_artifact_naming_the_file(tmp_path):
    """A truncated checkpoint, JSON, parquet or npy file:
    CorruptArtifact, one line, the file and what to do."""
    import pandas as pd
    from compendium.core.artifacts import save_json, save_table, save_array, load_array

    files = [
        (
            save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(64, 64)}, {"step": 1}),
            load_checkpoint,
        ),
        (
            save_checkpoint(tmp_path / "l.safetensors", {"w": torch.ones(64, 64)}, {"step": 1}),
            lambda f: Checkpointer(f).load(),
        ),
        (save_json({"a": list(range(50))}, tmp_path / "r.json"), load_json),
        (save_table(pd.DataFrame({"x": np.arange(100.0)}), tmp_path / "t.parquet"), load_table),
        (save_array(np.ones((32, 32)), tmp_path / "e.npy"), load_array),
    ]
    for f, load in files:
        b = f.read_bytes()
        f.write_bytes(b[: len(b) // 2])
        with pytest.raises(CorruptArtifact) as e:
            load(f)
        s = _one_line(e)
        assert str(f) in s and "delete it and rerun" in s, s


def test_half_written_model_folder_is_rebuilt(tmp_path, monkeypatch, small_tok):
    """save_pretrained killed half-way leaves nothing at the
    target; an old half-written folder raises MissingArtifact."""
    m, d = _small_lm(small_tok).eval(), tmp_path / "model"

    def cached():  # the callers' pattern: load, else build
        try:
            return load_model(d)[0]
        except MissingArtifact:
            save_model(m, small_tok, d)
            return load_model(d)[0]

    def dies(self, path, **kw):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "config.json").write_text(self.config.to_json_string())
        raise KeyboardInterrupt

    monkeypatch.setattr(type(m), "save_pretrained", dies)
    with pytest.raises(KeyboardInterrupt):
        save_model(m, small_tok, d)
    monkeypatch.undo()
    x = torch.tensor([[small_tok.bos_token_id, 5, 6, 7]])
    torch.testing.assert_close(cached()(x).logits, m(x).logits)  # rebuilt, not an error
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left behind
    for w in d.glob("model*.safetensors"):
        w.unlink()  # a folder an older version left half-written
    with pytest.raises(MissingArtifact) as e:
        load_model(d)
    assert str(d) in _one_line(e)
    torch.testing.assert_close(cached()(x).logits, m(x).logits)
