"""The notebooks are the source: committed notebooks must be clean and the package exported from them."""
import filecmp, shutil, subprocess, sys
from pathlib import Path


def _copy(root: Path, dst: Path):
    for f in ("pyproject.toml", "settings.ini"): shutil.copy(root/f, dst/f)
    ign = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "_proc", "_docs")
    shutil.copytree(root/"nbs", dst/"nbs", ignore=ign); shutil.copytree(root/"compendium", dst/"compendium", ignore=ign)


def _diff(a: Path, b: Path, pattern: str) -> list:
    fa = {p.relative_to(a) for p in a.rglob(pattern) if "__pycache__" not in p.parts}
    fb = {p.relative_to(b) for p in b.rglob(pattern) if "__pycache__" not in p.parts}
    return sorted(str(p) for p in fa ^ fb) + sorted(str(p) for p in fa & fb if not filecmp.cmp(a/p, b/p, shallow=False))


def _bin(name): return str(Path(sys.executable).parent/name)


def test_nbdev_clean_leaves_no_diff(root, tmp_path):
    _copy(root, tmp_path)
    subprocess.run([_bin("nbdev-clean")], cwd=tmp_path, check=True, capture_output=True)
    changed = _diff(root/"nbs", tmp_path/"nbs", "*.ipynb")
    assert not changed, f"nbdev-clean changes these notebooks (run nbdev-clean and commit): {changed}"


def test_nbdev_export_leaves_no_diff(root, tmp_path):
    _copy(root, tmp_path)
    subprocess.run([_bin("nbdev-export")], cwd=tmp_path, check=True, capture_output=True)
    changed = _diff(root/"compendium", tmp_path/"compendium", "*.py")
    assert not changed, f"the package is out of sync with the notebooks (run nbdev-export and commit): {changed}"


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
            assert "scale" in src and "seed" in src, f"{nb}: the parameters cell must set scale and seed"
