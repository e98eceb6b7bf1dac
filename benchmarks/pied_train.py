"""PIED's hot loops: one Adam step of the forward ensemble, one step of the evaluation's stack of
inverse PINNs (eager, as the chain ran before, against `torch.compile`d: `cfg.compile`), and one
FIST design iteration (a criterion and its gradient through r unrolled inverse steps; eager)."""

from __future__ import annotations

import torch

from compendium.pied.pied import FIXED, METHODS, fist, init_params, train
from compendium.pied.problems import PiedConfig

from harness import max_diff, per_second, row, seconds, side_by_side

STEPS = 50  # steps per timed call
# The check: every member's forward loss over the first CHECK steps, the largest difference relative
# to the largest loss. Rounding differs between the paths and training amplifies it (at the paper
# size parameters differ by ~0.05 after 200 steps and losses by ~1e-2 after 100: the runs diverge
# the way two seeds of one float do), so the check stops early, where rounding leaves ~1e-5 and an
# algorithmic change (a wrong step size, a missing term) leaves far more.
CHECK = 20
TOL = 1e-4


def stack_size(cfg) -> int:
    "The evaluation's inverse PINNs: every test problem under every design (Early, Grid: one each)."
    return cfg.n_test * ((len(METHODS) - len(FIXED)) * cfg.n_designs + len(FIXED))


def _train_rows(cfg, dev, size, name, B, inverse: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    beta = (cfg.beta_lo + (cfg.beta_hi - cfg.beta_lo) * torch.rand(B, 2, generator=g)).to(dev)
    kw = {}
    if inverse:
        kw = dict(
            s_X=torch.rand(B, cfg.n_obs, generator=g).to(dev),
            y=torch.randn(B, cfg.n_obs, generator=g).to(dev),
            train_beta=True,
            log_pde=False,
        )
    p0 = init_params(B, cfg, 0, dev)

    def run(n, compile):
        return train(p0, beta, cfg, n, compile=compile, **kw)

    compile_s, _ = seconds(lambda: run(STEPS, True), dev)  # the first call compiles
    plain, fast = side_by_side(lambda: run(STEPS, False), lambda: run(STEPS, True), dev)
    plain, fast = plain * STEPS, fast * STEPS
    a, b = (
        train(p0, beta, cfg, CHECK, compile=c, **{**kw, "log_pde": True})[2][..., 0]
        for c in (False, True)
    )
    diff = max_diff(a, b) / float(a.abs().max())
    return row(
        name,
        size,
        dev,
        "steps",
        plain,
        fast,
        diff,
        TOL,
        how="eager vs torch.compile of the step; check: every member's loss over the first "
        f"{CHECK} steps (relative)",
        members=B,
        compile_s=round(compile_s, 1),
    )


def run(size: str, dev) -> list[dict]:
    cfg = PiedConfig.for_scale(size)
    out = [
        _train_rows(cfg, dev, size, "pied: forward-ensemble step", cfg.E, inverse=False),
        _train_rows(
            cfg,
            dev,
            size,
            "pied: inverse-PINN stack step",
            stack_size(cfg),
            inverse=True,
        ),
    ]
    theta_E = init_params(cfg.E, cfg, 1, dev)
    beta_E = torch.full((cfg.E, 2), 2.0, device=dev)
    s = torch.rand(
        cfg.restarts * cfg.n_designs, cfg.n_obs, generator=torch.Generator().manual_seed(2)
    )
    s = s.to(dev).requires_grad_()

    def iteration():
        (g,) = torch.autograd.grad(fist(s, theta_E, beta_E, cfg).sum(), s)
        return g

    out.append(
        row(
            "pied: FIST design iteration",
            size,
            dev,
            "iterations",
            per_second(iteration, dev),
            how=f"eager only: criterion and gradient through r = {cfg.fist_r} unrolled Adam steps "
            "(a double backward; no compiled path yet)",
            designs=int(s.shape[0]),
            members=cfg.E,
        )
    )
    return out


def notes(rows: list[dict]) -> list[str]:
    """The oscillator's `paper` preset estimated from the paper-size rows: per repetition, the
    Reptile rounds, the forward ensemble and the random-init comparison at the forward-ensemble
    rate, the inverse PINNs at the stack rate, FIST's design iterations at its rate; MoTE, MI and
    the C4 study are not counted (a lower bound)."""
    at = {r["loop"]: r for r in rows if r["size"] == "paper" and r["loop"].startswith("pied")}
    if len(at) < 3:
        return []
    c = PiedConfig.for_scale("paper")
    fwd, inv = at["pied: forward-ensemble step"], at["pied: inverse-PINN stack step"]
    fist_rate = at["pied: FIST design iteration"]["plain_per_s"]
    if not (fist_rate > 0 and fwd["plain_per_s"] > 0 and inv["plain_per_s"] > 0):
        return []
    n_fwd = c.meta_rounds * c.meta_steps + c.fwd_steps + c.c3_steps

    def hours(f, i):
        return c.reps * (n_fwd / f + c.inv_steps / i + c.design_iters / fist_rate) / 3600

    eager = hours(fwd["plain_per_s"], inv["plain_per_s"])
    fast = hours(fwd["fast_per_s"], inv["fast_per_s"])
    return [
        f"PIED's oscillator `paper` preset ({c.reps} repetitions of {n_fwd:,} forward-ensemble "
        f"steps, {c.inv_steps:,} inverse steps, {c.design_iters} FIST iterations), estimated from "
        f"the paper-size rows on {fwd['device']}: {eager:.1f} h eager, {fast:.1f} h compiled (a "
        "lower bound: MoTE, MI and the C4 study are not counted; FIST runs eager in both)."
    ]
