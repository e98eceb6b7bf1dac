"""The notebooks' own inline tests, run by nbdev's test runner (one pytest test per notebook, each
in its own process). Core notebooks run whole; of each chain, the first two notebooks (data and
method) run here at the parameters cell's defaults (ci scale, seed 0) with outputs sent to a
temporary folder, and again through papermill on a second, non-zero seed (an asserting example must
hold for every seed); the later ones run in test_chains.py through the runner."""

import os
import subprocess
import sys
from pathlib import Path
import pytest
from compendium.core.config import papers
from compendium.core.runner import _ipc_kernel_manager, _error_line

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted((ROOT / "nbs" / "core").glob("*.ipynb"))
CHAIN = [nb for p in papers(ROOT) for nb in p.notebook_paths(ROOT)[:2]]
NBS = CORE + CHAIN
OTHER_SEED = 31337  # not the committed seed: an example that holds only for seed 0 fails here


def _id(nb: Path) -> str:
    return str(nb.relative_to(ROOT / "nbs"))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("nb-out")


@pytest.mark.parametrize("nb", NBS, ids=[_id(p) for p in NBS])
def test_notebook(nb, out):
    env = {**os.environ, "COMPENDIUM_OUT": str(out)}
    r = subprocess.run(
        [str(Path(sys.executable).parent / "nbdev-test"), str(nb)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"{nb.name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """Runs chain notebooks with papermill at ci scale on OTHER_SEED
    into one temporary output root, each at most once."""
    import papermill as pm

    out, done = tmp_path_factory.mktemp("nb-seed"), {}

    def run(nb: Path):
        if nb not in done:
            env_old = os.environ.get("COMPENDIUM_OUT")
            os.environ["COMPENDIUM_OUT"] = str(out)
            try:
                pm.execute_notebook(
                    str(nb),
                    str(out / f"{nb.parent.name}-{nb.name}"),
                    cwd=str(nb.parent),
                    parameters=dict(scale="ci", seed=OTHER_SEED, overrides={}),
                    kernel_name="python3",
                    progress_bar=False,
                    execution_timeout=600,
                    kernel_manager_class=_ipc_kernel_manager(),
                )
                done[nb] = ""
            except Exception as e:
                done[nb] = (
                    f"{_error_line(nb.parent.name, nb, e)}\n{str(getattr(e, 'evalue', ''))[:3000]}"
                )
            finally:
                if env_old is None:
                    os.environ.pop("COMPENDIUM_OUT", None)
                else:
                    os.environ["COMPENDIUM_OUT"] = env_old
        return done[nb]

    return run


@pytest.mark.parametrize("nb", CHAIN, ids=[_id(p) for p in CHAIN])
def test_notebook_other_seed(nb, seed_run):
    """A chain's data and method notebooks also pass on a non-zero
    seed (the notebooks before it in its chain run first)."""
    chain = next(p for p in papers(ROOT) if nb in p.notebook_paths(ROOT)).notebook_paths(ROOT)
    for prev in chain[: chain.index(nb)]:
        err = seed_run(prev)
        assert not err, f"an earlier notebook failed on seed {OTHER_SEED}: {err}"
    err = seed_run(nb)
    assert not err, f"seed {OTHER_SEED}: {err}"


def test_every_notebook_is_tested_somewhere():
    """No notebook escapes: each is a core notebook, or belongs to
    a registered chain (its later notebooks run in test_chains)."""
    chained = {nb for p in papers(ROOT) for nb in p.notebook_paths(ROOT)}
    others = {
        p
        for p in (ROOT / "nbs").rglob("*.ipynb")
        if "core" not in p.parts
        and p.parent != ROOT / "nbs"
        and ".ipynb_checkpoints" not in p.parts
    }
    assert others <= chained, (
        f"notebooks in no registered chain: {sorted(map(str, others - chained))}"
    )
