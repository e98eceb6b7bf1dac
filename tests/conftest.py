"""Shared fixtures. Network: pytest-socket (see pyproject addopts) lets this process connect to
loopback only; every kernel and subprocess inherits the hub-offline variables that `compendium.core`
sets."""

import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("COMPENDIUM_OUT", None)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def tree_digest(path: Path) -> dict:
    "name -> (size, mtime_ns) of every file under `path` (to prove a run did not touch it)."
    return (
        {
            str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
        if path.exists()
        else {}
    )
