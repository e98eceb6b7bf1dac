"""What every benchmark shares: timing a loop, the machine's fp32 matmul peak, a result row.

A benchmark measures the plain loop (the reference, as the chain ran it before) and the optimised
one side by side in one process on the same inputs, checks that both give the same result within a
stated tolerance, and returns one row per loop. On these shared 2-core machines a ratio is what
can be measured; absolute rates mean something on a dedicated machine (a GPU) only."""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from compendium.core.repro import get_device

SIZES = ("ci", "default", "paper")
QUICK = False  # `run.py --check`: every timed loop runs once (the checks need no timing)


def device() -> torch.device:
    "The device a benchmark runs on: the GPU when there is one (as the chains), else the CPU."
    return torch.device(get_device())


def sync(dev: torch.device):
    "Wait for the device's queued work (a GPU runs asynchronously)."
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def per_second(fn, dev: torch.device, min_s: float = 2.0, min_calls: int = 3) -> float:
    """Calls of `fn` per second: one warm-up call, then calls until both `min_calls` and
    `min_s` seconds are reached (one call when QUICK)."""
    if QUICK:
        min_s, min_calls = 0.0, 1
    fn()
    sync(dev)
    n, t0 = 0, time.perf_counter()
    while n < min_calls or time.perf_counter() - t0 < min_s:
        fn()
        n += 1
    sync(dev)
    return n / (time.perf_counter() - t0)


def graphs() -> int:
    "How many graphs torch.compile has compiled in this process so far."
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def side_by_side(plain, fast, dev: torch.device, rounds: int = 2) -> tuple[float, float]:
    """The best rate of `plain` and of `fast` (calls per second) over `rounds` alternating blocks,
    so that a change of load on a shared machine hits both. `fast` must be compiled already: a
    timed call that compiles again raises (dynamo would fall back to eager after a few)."""
    n0, p, f = graphs(), 0.0, 0.0
    for _ in range(1 if QUICK else rounds):
        p, f = max(p, per_second(plain, dev)), max(f, per_second(fast, dev))
    if graphs() != n0:
        raise RuntimeError(f"the optimised loop compiled {graphs() - n0} new graph(s) while timed")
    return p, f


def seconds(fn, dev: torch.device) -> tuple[float, object]:
    "Wall seconds of one call of `fn` and its result (for a first call that compiles)."
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t0, out


def matmul_peak(dev: torch.device, n: int = 1024, reps: int = 10) -> float:
    "The measured fp32 matmul rate in FLOP/s (best of three runs of `reps` n x n products)."
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    best = 0.0
    for _ in range(3):
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(dev)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


def max_diff(a, b) -> float:
    "The largest absolute difference of two results (tensors, arrays, dicts / lists of them)."
    if isinstance(a, dict):
        if set(a) != set(b):
            raise ValueError(f"the results have different keys: {sorted(set(a) ^ set(b))}")
        return max(max_diff(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise ValueError(f"the results have different lengths: {len(a)} and {len(b)}")
        return max(max_diff(x, y) for x, y in zip(a, b))
    return float(
        np.max(
            np.abs(
                np.asarray(
                    torch.as_tensor(a).detach().cpu().double()
                    - torch.as_tensor(b).detach().cpu().double()
                )
            )
        )
    )


def row(
    loop: str,
    size: str,
    dev: torch.device,
    unit: str,
    plain: float,
    fast: float | None = None,
    diff: float | None = None,
    tol: float | None = None,
    how: str = "",
    **extra,
) -> dict:
    """One benchmark result: the plain and optimised rates in `unit` per second, their ratio, and
    the equivalence check (`diff` <= `tol`; `same` is None where there is no optimised path yet)."""
    if (fast is None) != (diff is None):
        raise ValueError(f"{loop}: give both the optimised rate and its check, or neither")
    return dict(
        loop=loop,
        size=size,
        device=str(dev),
        unit=unit,
        plain_per_s=float(f"{plain:.4g}"),
        fast_per_s=None if fast is None else float(f"{fast:.4g}"),
        ratio=None if fast is None else round(fast / plain, 2),
        max_diff=diff,
        tol=tol,
        same=None if diff is None else bool(diff <= tol),
        how=how,
        **extra,
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(dev: torch.device) -> dict:
    "What the numbers were measured on."
    return dict(
        device=str(dev),
        name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        matmul_fp32_flops=matmul_peak(dev),
    )
