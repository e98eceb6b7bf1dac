"""The tiny causal LM of `compendium.core.text`: one AdamW training step as `train_loop` runs it
(plain), against fused AdamW with the loss `torch.compile`d (fast); tokens per second, and the
achieved FLOP/s by the 6N rule (6 x parameters x tokens per step) against the matmul peak."""

from __future__ import annotations

import torch

from compendium.core.text import lm_loss, n_params, tiny_lm

from harness import max_diff, row, seconds, side_by_side

SIZES = {  # (vocab, d_model, layers, heads, batch, sequence): the chains' simulator/rewriter LMs
    "ci": (512, 64, 2, 4, 16, 32),
    "default": (1024, 128, 4, 4, 32, 64),
}  # the paper scales load hub models: no row
CHECK = 10  # steps of the equivalence check
TOL = 1e-3  # largest difference of the per-step losses


def _setup(size, dev, fast: bool):
    V, d, L, H, B, T = SIZES[size]
    model = tiny_lm(V, d_model=d, n_layers=L, n_heads=H, max_len=T, seed=0).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fast or None)
    loss = torch.compile(lm_loss) if fast else lm_loss
    g = torch.Generator().manual_seed(1)
    x = torch.randint(3, V, (B, T), generator=g).to(dev)
    m = torch.ones_like(x)

    def step():
        out = loss(model, x, m)
        opt.zero_grad()
        out.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return out.detach()

    return model, step, B * T


def run(size: str, dev) -> list[dict]:
    if size not in SIZES:
        return []
    model, plain_step, tokens = _setup(size, dev, fast=False)
    N = n_params(model)
    _, fast_step, _ = _setup(size, dev, fast=True)
    compile_s, _ = seconds(fast_step, dev)
    plain, fast = (r * tokens for r in side_by_side(plain_step, fast_step, dev))
    _, a, _ = _setup(size, dev, fast=False)
    _, b, _ = _setup(size, dev, fast=True)
    la, lb = [a() for _ in range(CHECK)], [b() for _ in range(CHECK)]
    return [
        row(
            "core.text: tiny-LM training step",
            size,
            dev,
            "tokens",
            plain,
            fast,
            max_diff(la, lb),
            TOL,
            how="train_loop's step (AdamW, clipping; its scheduler and loss.item() left out of "
            f"both) vs fused AdamW + compiled loss; check: the losses of {CHECK} steps",
            params=N,
            attention=model.config._attn_implementation,
            compile_s=round(compile_s, 1),
            plain_flops=round(6 * N * plain),
            fast_flops=round(6 * N * fast),
        )
    ]
