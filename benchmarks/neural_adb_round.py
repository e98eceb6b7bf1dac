"""Neural-ADB's round: choose a context and an arm pair, observe the preference, update V^-1 by
Sherman-Morrison, and every `retrain_every` rounds retrain the networks (`steps` full-batch Adam
steps) and refresh the features; all `seeds` environments side by side. Plain only for now."""

from __future__ import annotations

import torch

from compendium.neural_adb.algorithm import play_round, start
from compendium.neural_adb.data import NeuralADBConfig, latent_reward, make_instances

from harness import per_second, row

ROUNDS = 50  # rounds per timed call from a fresh start (5 retrainings)


def run(size: str, dev) -> list[dict]:
    if size == "paper":
        return []  # the chain's paper scale is its default problem with more rounds: same round
    cfg = NeuralADBConfig.for_scale(size)
    ins = make_instances(cfg.seed, cfg.seeds, cfg.C, cfg.K, cfg.d)
    X = torch.tensor(ins["X"], dtype=torch.float32, device=dev)
    F = torch.tensor(
        latent_reward(ins["X"], ins["theta"], "square", cfg), dtype=torch.float64, device=dev
    )
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)

    def rounds():  # the first ROUNDS rounds of a fresh run: the same work every call
        r = start("Neural-ADB-UCB", cfg, "square", X, F, seeds)
        for t in range(ROUNDS):
            play_round(r, t)

    return [
        row(
            "neural_adb: round (UCB, square reward)",
            size,
            dev,
            "rounds",
            per_second(rounds, dev) * ROUNDS,
            how=f"plain only (no optimised path yet); {cfg.seeds} environment(s), retraining "
            f"every {cfg.retrain_every} rounds with {cfg.steps} Adam steps",
            environments=cfg.seeds,
        )
    ]
