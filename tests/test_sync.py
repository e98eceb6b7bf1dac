"""The notebooks are the source: committed notebooks must be clean, the package exported from them
and formatted and linted with ruff; the citation and data/README.md are in the tree."""

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path


def _copy(root: Path, dst: Path):
    for f in ("pyproject.toml", "settings.ini"):
        shutil.copy(root / f, dst / f)
    ign = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "_proc", "_docs")
    shutil.copytree(root / "nbs", dst / "nbs", ignore=ign)
    shutil.copytree(root / "compendium", dst / "compendium", ignore=ign)


def _diff(a: Path, b: Path, pattern: str) -> list:
    fa = {p.relative_to(a) for p in a.rglob(pattern) if "__pycache__" not in p.parts}
    fb = {p.relative_to(b) for p in b.rglob(pattern) if "__pycache__" not in p.parts}
    return sorted(str(p) for p in fa ^ fb) + sorted(
        str(p) for p in fa & fb if not filecmp.cmp(a / p, b / p, shallow=False)
    )


def _bin(name):
    return str(Path(sys.executable).parent / name)


def test_nbdev_clean_leaves_no_diff(root, tmp_path):
    _copy(root, tmp_path)
    subprocess.run([_bin("nbdev-clean")], cwd=tmp_path, check=True, capture_output=True)
    changed = _diff(root / "nbs", tmp_path / "nbs", "*.ipynb")
    assert not changed, (
        f"nbdev-clean changes these notebooks (run nbdev-clean and commit): {changed}"
    )


def test_nbdev_export_leaves_no_diff(root, tmp_path):
    _copy(root, tmp_path)
    subprocess.run([_bin("nbdev-export")], cwd=tmp_path, check=True, capture_output=True)
    changed = _diff(root / "compendium", tmp_path / "compendium", "*.py")
    assert not changed, (
        f"the package is out of sync with the notebooks (run nbdev-export and commit): {changed}"
    )


def test_parameters_cells_survive_clean(root):
    "papermill finds each chain notebook's parameters cell by its tag: nbdev-clean must keep it."
    import json
    from compendium.core.config import papers

    for p in papers(root):
        for nb in p.notebook_paths(root):
            cells = json.loads(nb.read_text())["cells"]
            tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
            assert len(tagged) == 1, f"{nb}: needs exactly one cell tagged 'parameters'"
            src = "".join(tagged[0]["source"])
            assert "scale" in src and "seed" in src, (
                f"{nb}: the parameters cell must set scale and seed"
            )


def _ruff(root: Path, *args) -> subprocess.CompletedProcess:
    "`ruff` (a dev dependency; settings in pyproject.toml) on nbs, tests, docs and benchmarks."
    exe = _bin("ruff")
    assert Path(exe).exists(), (
        "ruff is not installed: run `make install` (it is in the dev dependencies)"
    )
    cmd = [exe, *args, "--no-cache", "nbs", "tests", "docs", "benchmarks"]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True)


def test_ruff_format_leaves_no_diff(root):
    "Notebooks (their code cells), tests and docs/ are as `ruff format` writes them."
    r = _ruff(root, "format", "--check", "--output-format", "concise")
    changed = sorted({ln.split(":")[0] for ln in r.stdout.splitlines() if "unformatted" in ln})
    assert r.returncode == 0, (
        f"ruff format would change {changed or r.stderr.strip()}: run `ruff format nbs tests "
        "docs benchmarks`, then nbdev-export and nbdev-clean"
    )


def test_ruff_check_passes(root):
    "No lint findings: pyflakes, pycodestyle errors, lines over 100 columns (see pyproject.toml)."
    r = _ruff(root, "check", "--output-format", "concise")
    found = "\n".join(r.stdout.splitlines()[:40])
    assert r.returncode == 0, f"ruff check finds (notebook cells counted from 1):\n{found}"


def test_exported_package_has_no_undefined_names(root):
    """The exported package uses no name it does not define or import. A notebook runs every
    cell, so a name imported only in a hidden cell works there but not in `compendium/` (ruff's
    notebook fixes can cause this)."""
    r = _ruff(
        root,
        "check",
        "--isolated",
        "--select",
        "F821,F822,F823",
        "--output-format",
        "concise",
        "compendium",
    )
    assert r.returncode == 0, "undefined names in the exported package:\n" + r.stdout[:3000]


def test_citation_cites_every_registered_paper(root):
    "CITATION.cff has CFF 1.2.0's required keys and cites every paper of settings.ini by arXiv id."
    import yaml
    from compendium.core.config import papers

    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert cff.get(key), f"CITATION.cff: missing {key}"
    refs = cff.get("references") or []
    for ref in refs:
        assert ref.get("type") and ref.get("title") and ref.get("authors"), (
            f"incomplete reference {ref}"
        )
    cited = {i["value"] for ref in refs for i in ref.get("identifiers", [])}
    missing = [p.id for p in papers(root) if f"arXiv:{p.arxiv}" not in cited]
    assert not missing, f"CITATION.cff does not cite these registered papers by arXiv id: {missing}"
    ids = [i["value"].removeprefix("arXiv:") for ref in refs for i in ref.get("identifiers", [])]
    assert all(i in ref["url"] for ref, i in zip(refs, ids)), (
        "each reference's url is its arXiv page"
    )


def test_data_readme_is_committed_and_data_is_not(root):
    "data/README.md is tracked (or at least not ignored); what the chains write under data/ is."
    assert (root / "data" / "README.md").is_file(), "data/README.md is missing"
    if not (root / ".git").exists():
        return
    git = ["git", "-C", str(root)]
    listed = subprocess.run(
        [*git, "ls-files", "--cached", "--others", "--exclude-standard", "data/README.md"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert listed == ["data/README.md"], (
        "data/README.md is ignored by .gitignore: a fresh clone would lack it"
    )
    probe = "data/cobra/ci/seed-0/instances/data.arrow"
    ignored = subprocess.run([*git, "check-ignore", "-q", "--no-index", probe]).returncode == 0
    assert ignored, f"generated data ({probe}) is not ignored by .gitignore"


def test_every_chain_has_a_verdict_shown_in_the_readme(root):
    """Each registered paper's committed claims.json carries a verdict on the paper's headline that
    its headline claims imply (not written by hand), and the README's papers table shows that
    verdict and the claim count beside it, as the claims say."""
    import json

    from compendium.core.claims import VERDICTS, claim_count, judge
    from compendium.core.config import papers

    readme = (root / "README.md").read_text()
    for p in papers(root):
        d = json.loads((root / "figures" / p.id / "claims.json").read_text())
        v = d.get("verdict")
        assert v, (
            f"figures/{p.id}/claims.json has no verdict (ClaimSet.judge in its results notebook)"
        )
        assert v["outcome"] in VERDICTS[:3], f"{p.id}: verdict {v['outcome']!r} at default scale"
        statuses = {c["id"]: c["status"] for c in d["claims"]}
        assert (
            judge(statuses, v["claims"], v.get("companions", []), v.get("caveat", ""))
            == v["outcome"]
        ), f"{p.id}: the verdict does not follow from its headline claims"
        assert v["headline"] and v["why"], f"{p.id}: a verdict needs its headline and evidence"
        rows = [ln for ln in readme.splitlines() if ln.startswith("|") and f"(nbs/{p.id})" in ln]
        assert len(rows) == 1, f"README: no single papers-table row for {p.id}"
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert any(c.startswith(claim_count(d["claims"])) for c in cells), (
            f"README: {p.id}'s row does not say {claim_count(d['claims'])!r}"
        )
        assert f"**{v['outcome']}**" in cells, (
            f"README: {p.id}'s row does not show **{v['outcome']}**"
        )
