"""Run every benchmark (`make bench`): one JSON row per loop and size in benchmarks/results/
<cpu|gpu>.jsonl (the latest run per device) and the table in benchmarks/RESULTS.md.

    python benchmarks/run.py                      # default and paper sizes, every loop
    python benchmarks/run.py --sizes ci --only pied_train --no-write
    python benchmarks/run.py --check              # ci sizes: exit 1 if an optimised path disagrees
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from harness import SIZES, device, machine  # noqa: E402

LOOPS = ("pied_train", "text_lm_step", "neural_adb_round", "cobra_round")


def commit() -> str:
    "The checkout's commit (with -dirty when it has changes), for the table's provenance."
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def _read(f: Path) -> list[dict]:
    "The rows of a results file (none if it is missing)."
    return [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()] if f.exists() else []


def table(rows: list[dict], info: dict) -> str:
    "The markdown table of `rows`."
    head = (
        f"Measured {info['date']} at {info['commit']} on {info['name']} ({info['device']}, "
        f"{info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads; fp32 "
        f"matmul peak {info['matmul_fp32_flops'] / 1e9:.0f} GFLOP/s).\n\n"
        "| loop | size | plain /s | optimised /s | ratio | same result | how |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        same = "—"
        if r["same"] is not None:
            cmp = f"{r['max_diff']:.1e} {'≤' if r['same'] else '>'} {r['tol']:g}"
            same = f"yes ({cmp})" if r["same"] else f"**no** ({cmp})"
        fast = "—" if r["fast_per_s"] is None else f"{r['fast_per_s']:,.4g}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        extra = ""
        if "fast_flops" in r:
            peak = info["matmul_fp32_flops"]
            extra = (
                f"; 6N rule: {r['plain_flops'] / 1e9:.1f} -> {r['fast_flops'] / 1e9:.1f} GFLOP/s "
                f"({r['plain_flops'] / peak:.0%} -> {r['fast_flops'] / peak:.0%} of the peak)"
            )
        if "compile_s" in r:
            extra += f"; compiling took {r['compile_s']} s"
        lines.append(
            f"| {r['loop']} | {r['size']} | {r['plain_per_s']:,.4g} {r['unit']} | {fast} | "
            f"{ratio} | {same} | {r['how']}{extra} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="default,paper", help="comma-separated: ci, default, paper")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated loops (default: all of " + ", ".join(LOOPS) + ")",
    )
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument(
        "--check",
        action="store_true",
        help="ci sizes, nothing written; exit 1 where an optimised path disagrees with the plain",
    )
    a = ap.parse_args(argv)
    sizes = ["ci"] if a.check else [s.strip() for s in a.sizes.split(",") if s.strip()]
    only = [s.strip() for s in a.only.split(",") if s.strip()] or list(LOOPS)
    bad = [s for s in sizes if s not in SIZES] + [o for o in only if o not in LOOPS]
    if bad:
        ap.error(
            f"unknown size or loop {bad[0]!r}: sizes {', '.join(SIZES)}; loops {', '.join(LOOPS)}"
        )
    harness.QUICK = a.check
    dev = device()
    info = {**machine(dev), "commit": commit(), "date": datetime.date.today().isoformat()}
    # the row's own provenance too: a partial run keeps other rows, each with its machine and commit
    rows = []
    for name in only:
        mod = importlib.import_module(name)
        for size in sizes:
            print(f"{name} at {size} ...", file=sys.stderr, flush=True)
            rows += mod.run(size, dev)
    extra = [
        n
        for name in only
        for n in getattr(importlib.import_module(name), "notes", lambda _: [])(rows)
    ]
    text = table(rows, info) + "".join(f"\n{n}\n" for n in extra)
    print(text)
    if not (a.no_write or a.check):
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        stem = "gpu" if dev.type == "cuda" else "cpu"
        f = out / f"{stem}.jsonl"
        kept = {(r["loop"], r["size"]): r for r in _read(f)}  # a partial run keeps the others
        kept.update({(r["loop"], r["size"]): {**r, "machine": info} for r in rows})
        body = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept.values())
        f.write_text(body)
        old = [r for k, r in kept.items() if k not in {(x["loop"], x["size"]) for x in rows}]
        if old:  # the file's table shows every kept row; these came from earlier runs
            text = table(list(kept.values()), info) + "".join(f"\n{n}\n" for n in extra)
            text += (
                "\nFrom earlier runs (machine and commit in the .jsonl): "
                + ", ".join(
                    f"{r['loop']} @ {r['size']} ({r['machine']['date']}, {r['machine']['commit']})"
                    for r in old
                )
                + ".\n"
            )
        (HERE / "RESULTS.md").write_text(f"# Benchmarks ({stem})\n\n" + text)
        print(f"wrote {out / (stem + '.jsonl')} and {HERE / 'RESULTS.md'}", file=sys.stderr)
    disagree = [r["loop"] + " @ " + r["size"] for r in rows if r["same"] is False]
    if disagree:
        print(
            "optimised path disagrees with the plain one: " + ", ".join(disagree), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
