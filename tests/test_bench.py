"""The benchmarks' equivalence checks at ci size (`benchmarks/run.py --check`): every optimised path
gives its plain path's result within the tolerance the benchmark states. No speed is asserted (the
machines are shared); `make bench` measures it."""

import subprocess
import sys

import pytest


def test_optimised_paths_agree(root):
    r = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "run.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| pied: forward-ensemble step | ci |" in r.stdout and "**no**" not in r.stdout


def test_check_catches_a_wrong_fast_path(root, monkeypatch):
    "The check fails when the compiled step is not the plain one (here: twice the step size)."
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import harness
    import pied_train
    from compendium.pied import pied
    from compendium.pied.problems import PiedConfig

    monkeypatch.setattr(harness, "QUICK", True)  # the check needs no timing
    plain = pied.fused_step
    monkeypatch.setattr(pied, "fused_step", lambda loss_fn, lr: plain(loss_fn, 2 * lr))
    cfg = PiedConfig.for_scale("ci")
    r = pied_train._train_rows(cfg, harness.device(), "ci", "forward", cfg.E, inverse=False)
    assert r["same"] is False and r["max_diff"] > r["tol"]


def test_row_needs_its_check(root, monkeypatch):
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import harness

    with pytest.raises(ValueError, match="its check"):
        harness.row("x", "ci", "cpu", "steps", 1.0, fast=2.0)
    with pytest.raises(ValueError, match="different keys"):
        harness.max_diff({"a": 1.0}, {"a": 1.0, "b": 2.0})
    test = harness.row("x", "ci", "cpu", "steps", 1.0, fast=2.0, diff=0.5, tol=0.1)
    assert test["same"] is False and test["ratio"] == 2.0


@pytest.mark.parametrize("problem", ["oscillator", "wave"])
def test_compiled_step_is_one_graph(root, problem):
    """In a fresh process, the first training step compiled is one graph with no break. Built inside
    the compiled step, the network's meta-device template broke the graph and the "compiled" step
    ran 8x slower than eager, with every check of the numbers still passing."""
    code = (
        "import torch\n"
        "from torch._dynamo.utils import counters\n"
        "from compendium.pied.problems import PiedConfig, WaveConfig\n"
        "from compendium.pied import pied, wave\n"
        "if PROBLEM == 'oscillator':\n"
        "    cfg = PiedConfig.for_scale('ci', compile=True)\n"
        "    pied.train(pied.init_params(2, cfg, 0), torch.ones(2, 2), cfg, 3)\n"
        "else:\n"
        "    cfg = WaveConfig.for_scale('ci', compile=True)\n"
        "    wave.train_wave(wave.init_wave_params(2, cfg, 0), torch.ones(2, 2),\n"
        "                    wave.wave_points(cfg), cfg, 3)\n"
        "assert not counters['graph_break'], list(counters['graph_break'])[0][:300]\n"
        "assert counters['stats']['unique_graphs'] == 1, dict(counters['stats'])\n"
    ).replace("PROBLEM", repr(problem))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
