"""COBRA's round: every (seed, lie size) environment picks an arm by UCB on the pooled estimate,
updates V^-1 by Sherman-Morrison and runs the leave-one-out misreport test (COBRA-UCB, linear
reward, NumPy). Plain only for now."""

from __future__ import annotations

from compendium.cobra.bandits import simulate
from compendium.cobra.data import CobraConfig, make_instances

from harness import per_second, row


def run(size: str, dev) -> list[dict]:
    if size == "paper":
        return []
    cfg = CobraConfig.for_scale(size)
    T = 2 * cfg.block
    ins = make_instances(cfg.seed, cfg.seeds, cfg.d)

    def rounds():
        simulate("COBRA-UCB", cfg, ins["theta"], ins["u"], T=T, progress=False)

    envs = cfg.seeds * len(cfg.deltas)
    return [
        row(
            "cobra: round (COBRA-UCB)",
            size,
            "cpu",
            "rounds",
            per_second(rounds, dev, min_calls=2) * T,
            how=f"plain only (no optimised path yet); {envs} environments (seeds x lie sizes) "
            "side by side, NumPy",
            environments=envs,
        )
    ]
