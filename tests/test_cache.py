"""The core cache (compendium.core.cache): a key that covers the config, the source of every
compendium module a chain imports, the library versions and the files it reads, and changes with
each of them for exactly the caches that depend on it; entries that are complete or rebuilt;
provenance that survives being read back."""

import importlib.metadata
import shutil
import time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from compendium.core import cache as C
from compendium.core.cache import (
    Cache,
    cached,
    chain_key,
    imported_modules,
    key_inputs,
    cache_summary,
)
from compendium.core.config import ConfigError

COBRA, E2RAG = "compendium.cobra.experiments", "compendium.e2rag.experiments"


@pytest.fixture
def src(tmp_path):
    "A copy of the compendium package's sources, to edit without touching the real one."
    import compendium

    shutil.copytree(
        Path(compendium.__file__).parent,
        tmp_path / "compendium",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def keys(src=None, **kw):
    return {m: chain_key({"T": 10}, modules=m, src=src, **kw) for m in (COBRA, E2RAG)}


def edit(src, module, old, new):
    f = src / "compendium" / Path(*module.split(".")[1:]).with_suffix(".py")
    s = f.read_text()
    assert old in s, f"{old!r} not in {f}"
    f.write_text(s.replace(old, new, 1))


# ---------------------------------------------------------------- which modules a chain imports
def test_discovery_follows_imports():
    cobra = imported_modules("cobra")  # a paper id: its package, and what it imports
    assert {
        "compendium.cobra.experiments",
        "compendium.cobra.bandits",
        "compendium.core.artifacts",
        "compendium.core.config",
        "compendium.core.repro",
    } <= set(cobra)
    exp = imported_modules(COBRA)  # one module: only what it reaches
    assert "compendium.core.artifacts" in exp and "compendium.cobra.results" not in exp
    assert "compendium.core.embed" not in exp and not any(
        m.startswith("compendium.e2rag") for m in exp
    )
    e2 = imported_modules(E2RAG)
    assert {
        "compendium.core.embed",
        "compendium.e2rag.retrieval",
        "compendium.e2rag.graphs",
    } <= set(e2)
    assert "compendium.core.text" in imported_modules("compendium.waterdrum.unlearn")


def test_discovery_errors():
    with pytest.raises(ConfigError, match="no compendium module"):
        imported_modules("compendium.cobra.nope")
    with pytest.raises(ConfigError, match="no package"):
        imported_modules("alphafold")
    with pytest.raises(ConfigError, match="needs the chain's paper or its modules"):
        chain_key({"T": 1})


# ------------------------------------------------------------ what changes a key, and what does not
def test_config_and_ignored_fields():
    a = chain_key({"T": 10, "ckpt_every": 5}, modules=COBRA)
    assert chain_key({"T": 11, "ckpt_every": 5}, modules=COBRA) != a
    assert chain_key({"T": 10, "ckpt_every": 5}, "extra", modules=COBRA) != a
    assert chain_key({"T": 10, "ckpt_every": 5}, modules=COBRA, ignore=["ckpt_every"]) == chain_key(
        {"T": 10, "ckpt_every": 7}, modules=COBRA, ignore=["ckpt_every"]
    )


def test_core_module_change_invalidates_only_its_importers(src):
    k0 = keys(src)
    assert k0 == keys()  # the copy hashes like the real package
    edit(src, "compendium.core.embed", "def build_index(", "def _new(): pass\n\ndef build_index(")
    k1 = keys(src)
    assert k1[E2RAG] != k0[E2RAG] and k1[COBRA] == k0[COBRA]  # e2rag uses embed, cobra does not
    edit(src, "compendium.core.artifacts", "def save_json(", "def _new(): pass\n\ndef save_json(")
    k2 = keys(src)
    assert k2[E2RAG] != k1[E2RAG] and k2[COBRA] != k1[COBRA]  # both use artifacts
    edit(
        src, "compendium.cobra.experiments", "def to_frames(", "def _new(): pass\n\ndef to_frames("
    )
    k3 = keys(src)  # the chain's own experiments module counts
    assert k3[COBRA] != k2[COBRA] and k3[E2RAG] == k2[E2RAG]


def test_waterdrum_key_covers_core_text(src):
    k0 = chain_key({}, modules="compendium.waterdrum.unlearn", src=src)
    edit(src, "compendium.core.text", "def load_model(", "def _new(): pass\n\ndef load_model(")
    assert chain_key({}, modules="compendium.waterdrum.unlearn", src=src) != k0


def test_cell_markers_ignored(src):
    k0 = keys(src)
    f = src / "compendium/core/artifacts.py"
    s = f.read_text()
    assert "\n# %% ../../nbs/core/02_artifacts.ipynb #" in s
    f.write_text(
        s.replace(
            "\n# %% ../../nbs/core/02_artifacts.ipynb #",
            "\n# %% ../../nbs/core/02_artifacts.ipynb #ff",
            1,
        )
    )
    assert keys(src) == k0  # a rebuilt notebook's new cell ids change nothing


def test_library_version_invalidates_only_its_users(monkeypatch):
    k0 = keys()
    real = importlib.metadata.version
    for lib, changed in (
        ("faiss-cpu", {E2RAG}),
        ("sentence-transformers", {E2RAG}),
        ("torch", {COBRA, E2RAG}),
    ):
        monkeypatch.setattr(
            importlib.metadata, "version", lambda d, lib=lib: "99.0" if d == lib else real(d)
        )
        k = keys()
        assert {m for m in k if k[m] != k0[m]} == changed, lib
    monkeypatch.setattr(importlib.metadata, "version", real)
    assert keys() == k0
    assert {"waterfall", "rouge-score", "transformers"} <= set(
        key_inputs({}, modules="compendium.waterdrum.unlearn")["libs"]
    )


def test_files_invalidate_only_their_users(tmp_path, monkeypatch):
    data = tmp_path / "instances"
    data.mkdir()
    (data / "a.arrow").write_bytes(b"1234")
    k0 = chain_key({}, modules=COBRA, files=[data]), chain_key({}, modules=COBRA)
    (data / "a.arrow").write_bytes(b"12345")
    assert (
        chain_key({}, modules=COBRA, files=[data]) != k0[0]
        and chain_key({}, modules=COBRA) == k0[1]
    )
    # a model file that a module loads (embed: MiniLM)
    # enters the key of every chain that imports that module
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w1")
    import compendium.core.embed as E

    monkeypatch.setattr(E, "minilm_path", lambda: model)
    k1 = keys()
    (model / "model.safetensors").write_bytes(b"w22")
    k2 = keys()
    assert k2[E2RAG] != k1[E2RAG] and k2[COBRA] == k1[COBRA]
    with pytest.raises(C.MissingArtifact, match="missing"):
        chain_key({}, modules=COBRA, files=[tmp_path / "none"])


# ----------------------------------------------- entries: invalidated exactly, complete, provenance
def test_change_recomputes_exactly_the_dependent_entries(src, tmp_path):
    calls = []

    def entry(m):
        return cached(
            m.split(".")[1],
            lambda: calls.append(m) or pd.DataFrame({"x": [1]}),
            tmp_path / "c",
            chain_key({"T": 1}, modules=m, src=src),
        )[1]

    for m in (COBRA, E2RAG):
        entry(m)
    assert sorted(calls) == sorted([COBRA, E2RAG])
    edit(src, "compendium.core.embed", "def search(", "def _new(): pass\n\ndef search(")
    calls.clear()
    p = {m: entry(m) for m in (COBRA, E2RAG)}
    assert calls == [E2RAG] and p[COBRA]["from_cache"] and not p[E2RAG]["from_cache"]


def test_read_back_reports_the_original_seconds(tmp_path):
    def slow():
        time.sleep(0.3)
        return pd.DataFrame({"x": [1.0]})

    v, p = cached("run", slow, tmp_path, "k")
    assert (
        not p["from_cache"]
        and p["wall_s"] >= 0.3
        and p["device"] == "cpu"
        and {"commit", "created", "key"} <= set(p)
    )
    t0 = time.time()
    v2, p2 = cached("run", slow, tmp_path, "k")
    assert time.time() - t0 < 0.3 and p2["from_cache"] and p2["wall_s"] == p["wall_s"]
    pd.testing.assert_frame_equal(v, v2)
    s = cache_summary([p2])
    assert (
        s["from_cache"]
        and s["wall_s"] == round(p["wall_s"], 2)
        and s["cache_hits"] == s["cache_entries"] == 1
    )


def test_device_is_what_the_caller_says(tmp_path):
    _, p = cached("a", lambda: np.zeros(2), tmp_path, "k", "npy", device="cuda:0")
    assert (
        p["device"] == "cuda:0"
        and cached("a", lambda: None, tmp_path, "k", "npy")[1]["device"] == "cuda:0"
    )


def test_half_written_dir_is_rebuilt(tmp_path):
    def build(d):
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(b"w" * 8)

    # a save cut short: no sidecar
    (tmp_path / "lm-k").mkdir()
    (tmp_path / "lm-k/config.json").write_text("{")
    d, p = cached("lm", build, tmp_path, "k", "dir")
    assert (
        not p["from_cache"]
        and (d / "model.safetensors").read_bytes() == b"w" * 8
        and (d / "config.json").read_text() == "{}"
    )
    assert cached("lm", build, tmp_path, "k", "dir")[1]["from_cache"]
    shutil.rmtree(d)  # a sidecar without its folder: rebuilt too
    assert not cached("lm", build, tmp_path, "k", "dir")[1]["from_cache"] and d.is_dir()

    def killed(d):
        (d / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached("lm2", killed, tmp_path, "k", "dir")
    assert not (tmp_path / "lm2-k").exists() and not (tmp_path / "lm2-k.prov.json").exists()
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temporary folder left


def test_incomplete_tables_are_recomputed(tmp_path):
    calls = []

    def fn():
        return calls.append(1) or {"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"y": [2]})}

    cached("rep0", fn, tmp_path, "k", "tables")
    (tmp_path / "rep0-k.b.parquet").unlink()
    t, p = cached("rep0", fn, tmp_path, "k", "tables")
    assert len(calls) == 2 and not p["from_cache"] and t["b"].y.tolist() == [2]


def test_nested_entries_count_once(tmp_path):
    def inner():
        return cached("inner", lambda: (time.sleep(0.3), {"v": 1})[1], tmp_path, "k", "json")[0]

    n0 = len(C.cache_log())
    # computes inner inside a
    a = cached("a", lambda: {"w": inner()["v"]}, tmp_path, "k", "json")[1]
    b = cached("b", lambda: {"w": inner()["v"]}, tmp_path, "k", "json")[1]  # reads inner back
    # each: what it costs from scratch
    assert a["wall_s"] >= 0.3 and b["wall_s"] >= 0.3 and b["self_s"] < 0.3
    s = cache_summary(C.cache_log()[n0:])
    # inner counted once
    assert s["cache_entries"] == 2 and s["wall_s"] < a["wall_s"] + b["wall_s"] - 0.25


def test_chain_cache_lives_in_the_seed_folder(tmp_path):
    from compendium.cobra.data import CobraConfig

    c0, c1 = CobraConfig.for_scale("ci", seed=0), CobraConfig.for_scale("ci", seed=1)
    a, b = (Cache.for_chain("cobra", c, modules=COBRA, root=tmp_path) for c in (c0, c1))
    assert (
        a.folder == tmp_path / "runs/ci/cobra/seed-0/results"
        and b.folder == tmp_path / "runs/ci/cobra/seed-1/results"
    )
    assert a.key != b.key
    a("x", lambda: pd.DataFrame({"x": [1]}))
    assert a.path("x").exists() and a.log["x"]["from_cache"] is False


def test_embed_cache_covers_the_model(tmp_path):
    """embed's cache: other texts or other model weights
    are another entry; the same ones are read back."""
    import torch
    from compendium.core.embed import embed

    class Fake(torch.nn.Module):
        device = "cpu"

        def __init__(self, w):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([w]))
            self.calls = 0

        def encode(self, texts, **kw):
            self.calls += 1
            return np.full((len(texts), 2), float(self.w.detach()), dtype=np.float32)

    m = Fake(1.0)
    e = embed(["a", "b"], model=m, cache=tmp_path)
    embed(["a", "b"], model=m, cache=tmp_path)
    assert m.calls == 1 and e.shape == (2, 2)
    with torch.no_grad():
        m.w.fill_(2.0)
    assert embed(["a", "b"], model=m, cache=tmp_path)[0, 0] == 2.0 and m.calls == 2
    embed(["c"], model=m, cache=tmp_path)
    assert m.calls == 3
    assert (
        len(list(tmp_path.glob("emb-*.npy"))) == 3
        and len(list(tmp_path.glob("emb-*.prov.json"))) == 3
    )


def test_reading_a_dataset_leaves_its_digest_alone(tmp_path):
    """datasets writes cache-*.arrow files beside a saved dataset
    it filters: reading the data must not change its key."""
    import datasets
    from compendium.core.cache import file_digest

    d = tmp_path / "instances"
    datasets.Dataset.from_list([{"seed": i, "control": i % 2 == 0} for i in range(6)]).save_to_disk(
        str(d)
    )
    k0 = file_digest(d)
    datasets.load_from_disk(str(d)).filter(lambda r: r["control"]).with_format("numpy")["seed"]
    assert list(d.glob("cache-*.arrow")) and file_digest(d) == k0
    datasets.Dataset.from_list([{"seed": i, "control": True} for i in range(6)]).save_to_disk(
        str(tmp_path / "other")
    )
    assert file_digest(tmp_path / "other") != k0
