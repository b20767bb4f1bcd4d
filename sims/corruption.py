"""The fixed corruption of ambient training: ``y_i = x_i + sigma_n eps_i``, drawn once per item.

``eps_i`` is a pure function of the item's index ``i`` in its full dataset and a seed, so an item gets the
same noise in every epoch, run, process, resume and training subset. Fresh noise each epoch would average
back to the clean data and lose the protection against memorization (Shah et al., arXiv 2502.21278).

Theory: docs/THEORY.md §4.8."""
from __future__ import annotations

import torch
from torch import Tensor

from theory.denoiser import check_finite
from theory.seeding import seeded_generator

_CORRUPTION = 5  # domain tag: these seeds never collide with the trainer's


def fixed_noise(indices: Tensor, item_shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal ``eps_i`` of shape ``item_shape`` for each index, seeded by ``(seed, i)``."""
    idx = torch.as_tensor(indices)
    if idx.ndim != 1 or idx.is_floating_point() or bool((idx < 0).any()):
        raise ValueError(f"indices must be a 1D tensor of non-negative integers, got {idx}")
    out = torch.empty(idx.shape[0], *item_shape, dtype=torch.float64)
    for row, i in zip(out, idx.tolist()):
        row.copy_(torch.randn(item_shape, generator=seeded_generator(_CORRUPTION, seed, i),
                              dtype=torch.float64))
    return out.to(dtype)


def corrupt(x0: Tensor, indices: Tensor, sigma_n: float, seed: int) -> Tensor:
    """``y = x0 + sigma_n * fixed_noise(indices, seed)`` (on ``x0``'s device and dtype)."""
    check_finite(x0, "x0")
    if x0.ndim < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (n, *item_shape) with n >= 1, got {tuple(x0.shape)}")
    if len(indices) != x0.shape[0]:
        raise ValueError(f"indices must have one entry per item ({x0.shape[0]}), got {len(indices)}")
    if not (isinstance(sigma_n, (int, float)) and 0 < sigma_n < float("inf")):
        raise ValueError(f"sigma_n must be a finite float > 0, got {sigma_n!r}")
    eps = fixed_noise(torch.as_tensor(indices).cpu(), tuple(x0.shape[1:]), seed, dtype=x0.dtype)
    return x0 + sigma_n * eps.to(x0.device)
