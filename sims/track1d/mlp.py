"""A plain residual MLP ``F(x_in, c_noise)`` on flattened signals: the fast CPU alternative to ``UNet1d``.

``h = W_in flatten(x_in) + E(c_noise)``; ``depth`` residual blocks ``h += W_2 SiLU(W_1 SiLU(h))``; output
``W_out SiLU(h)`` (zero-initialised, so ``EDMPrecond`` starts as ``c_skip x``). It has no locality bias,
so, unlike a small conv net, it memorizes a small training set within a CPU budget (see memdiff.bench_sim).
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from sims.track1d.unet import FourierEmbedding
from theory.denoiser import per_item


class MLP1d(nn.Module):
    """``F(x_in, c_noise)`` for ``x_in`` of shape ``(B, *item_shape)``; returns the same shape."""

    def __init__(self, item_shape: tuple[int, ...], width: int = 256, depth: int = 2, emb_dim: int = 64):
        super().__init__()
        self.item_shape = tuple(int(s) for s in item_shape)
        if not self.item_shape or min(self.item_shape) < 1 or width < 1 or depth < 0:
            raise ValueError(f"item_shape must be non-empty positive, width >= 1, depth >= 0; got {item_shape}, {width}, {depth}")
        d = math.prod(self.item_shape)
        self.embed = nn.Sequential(FourierEmbedding(emb_dim), nn.Linear(emb_dim, width))
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.out = nn.Linear(width, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_in: Tensor, c_noise: float | Tensor) -> Tensor:
        if tuple(x_in.shape[1:]) != self.item_shape or x_in.shape[0] < 1:
            raise ValueError(f"x_in must have shape (B, {', '.join(map(str, self.item_shape))}), got {tuple(x_in.shape)}")
        c = per_item(c_noise, x_in, "c_noise")
        h = self.inp(x_in.flatten(1)) + self.embed(c)
        for blk in self.blocks:
            h = h + blk(h)
        return self.out(F.silu(h)).reshape(x_in.shape)
