"""The notebooks' own inline tests, run by nbdev's test runner (one pytest test per notebook, each in its own process).
Core notebooks run whole; of each chain, the first two notebooks (data and method) run here at the parameters cell's
defaults (ci scale) with outputs sent to a temporary folder; the later ones run in test_chains.py through the runner."""
import os, subprocess, sys
from pathlib import Path
import pytest
from compendium.core.config import papers

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted((ROOT/"nbs"/"core").glob("*.ipynb"))
CHAIN = [nb for p in papers(ROOT) for nb in p.notebook_paths(ROOT)[:2]]
NBS = CORE + CHAIN


@pytest.fixture(scope="module")
def out(tmp_path_factory): return tmp_path_factory.mktemp("nb-out")


@pytest.mark.parametrize("nb", NBS, ids=[str(p.relative_to(ROOT/"nbs")) for p in NBS])
def test_notebook(nb, out):
    env = {**os.environ, "COMPENDIUM_OUT": str(out)}
    r = subprocess.run([str(Path(sys.executable).parent/"nbdev-test"), str(nb)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{nb.name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"


def test_every_notebook_is_tested_somewhere():
    "No notebook escapes: each is a core notebook, or belongs to a registered chain (its later notebooks run in test_chains)."
    chained = {nb for p in papers(ROOT) for nb in p.notebook_paths(ROOT)}
    others = {p for p in (ROOT/"nbs").rglob("*.ipynb") if "core" not in p.parts and p.parent != ROOT/"nbs" and ".ipynb_checkpoints" not in p.parts}
    assert others <= chained, f"notebooks in no registered chain: {sorted(map(str, others - chained))}"
