"""Every registered chain, run whole at ci scale through the runner (papermill) into a temporary
output root: status ok, figures with provenance, a valid claims.json; the committed figures/ are
never touched."""

import json
from pathlib import Path
import pytest
from compendium.core.config import papers
from compendium.core.runner import run_chain, read_status
from compendium.core.claims import OPS, STATUSES
from conftest import tree_digest

ROOT = Path(__file__).resolve().parents[1]
PAPERS = [p.id for p in papers(ROOT)]
# pid -> the out folder of its ci run (the determinism test reruns one chain beside it)
FIRST_RUN = {}
PROV_KEYS = {
    "paper",
    "figure",
    "notebook",
    "scale",
    "seed",
    "commit",
    "dirty",
    "created",
    "device",
    "versions",
    "params",
    "wall_s",
}


@pytest.mark.parametrize("pid", PAPERS)
def test_chain_at_ci_scale(pid, tmp_path):
    committed = tree_digest(ROOT / "figures")
    res = run_chain(pid, "ci", seed=0, root=ROOT, out=tmp_path, log=print)
    assert res.status == "ok", res.error
    run = tmp_path / "runs" / "ci" / pid / "seed-0"
    FIRST_RUN[pid] = run
    st = read_status(pid, "ci", tmp_path)
    assert st["status"] == "ok" and all(
        n["status"] == "ok" and n["wall_s"] > 0 for n in st["notebooks"]
    )
    # figures: PNG + SVG + provenance sidecar
    pngs = sorted((run / "figures").glob("*.png"))
    assert pngs, "the chain drew no figures"
    for png in pngs:
        assert png.stat().st_size > 2000 and png.with_suffix(".svg").exists()
        prov = json.loads(png.with_suffix(".json").read_text())
        assert PROV_KEYS <= prov.keys(), f"{png.name}: provenance lacks {PROV_KEYS - prov.keys()}"
        assert (prov["paper"], prov["scale"], prov["figure"]) == (pid, "ci", png.stem)
    # claims
    cl = json.loads((run / "figures" / "claims.json").read_text())
    assert (cl["paper"], cl["scale"], cl["seed"]) == (pid, "ci", 0) and cl["claims"]
    for c in cl["claims"]:
        assert c["op"] in OPS and c["status"] in STATUSES and isinstance(c["target"], (int, float))
        assert c["measured"] is None or isinstance(c["measured"], (int, float))
        if "ci" not in c["scales"]:
            assert c["status"] == "not-checked"
    # executed notebooks kept; the committed figures untouched
    for n in st["notebooks"]:
        assert (run / f"{n['name']}.ipynb").exists()
    assert tree_digest(ROOT / "figures") == committed
    # a second call finds the chain up to date
    assert run_chain(pid, "ci", seed=0, root=ROOT, out=tmp_path, log=print).status == "skipped"


@pytest.mark.parametrize("pid", PAPERS)
def test_committed_default_results(pid):
    "The default-scale figures and claims of every registered chain are committed, with provenance."
    d = ROOT / "figures" / pid
    cl = json.loads((d / "claims.json").read_text())
    assert cl["scale"] == "default" and cl["claims"]
    assert all(
        c["status"] in ("pass", "fail") or "default" not in c["scales"] for c in cl["claims"]
    )
    pngs = list(d.glob("*.png"))
    assert pngs and all(p.with_suffix(".json").exists() for p in pngs)


@pytest.mark.parametrize("pid", ["pied"])
def test_same_seed_same_numbers(pid, tmp_path):
    """A torch-heavy chain run twice at ci scale from scratch (separate output folders, no shared
    cache) gives identical claims.json `measured` values."""
    if pid not in FIRST_RUN:
        pytest.skip("runs after test_chain_at_ci_scale of the same chain")
    res = run_chain(pid, "ci", seed=0, root=ROOT, out=tmp_path, log=print)
    assert res.status == "ok", res.error
    a = json.loads((FIRST_RUN[pid] / "figures" / "claims.json").read_text())["claims"]
    b = json.loads(
        (tmp_path / "runs" / "ci" / pid / "seed-0" / "figures" / "claims.json").read_text()
    )["claims"]
    assert [(c["id"], c["measured"]) for c in a] == [(c["id"], c["measured"]) for c in b]
