"""Patch-posterior denoisers: the closed forms behind locality-limited optimal denoisers.

Each output position ``m`` is the posterior mean of the centre value (all ``C`` channels) given only the
patch ``P_m(x)`` of the input around it, under an empirical prior of training patches:

    D(x)_m = sum_j softmax_j(-||P_m(x) - p_j||^2 / (2 sigma^2)) centre(p_j),

with ``p_j`` the patches of the training items at the same position ``m`` (``equivariant=False``, the
local denoiser) or at every position (``equivariant=True``, the translation-equivariant ELS machine of
Kamb & Ganguli 2024; Niedoba et al.'s patch composites). Padding is **circular**, so every position has a
full patch, the equivariant denoiser commutes with circular shifts, and a patch the size of the item
(odd sizes) gives back the empirical denoiser (local) or the empirical denoiser of all circular shifts
(equivariant).

The sum is the empirical posterior of §2.1 with the patches as items, read at the centre coordinates:
``D(x)_m = centre(D_m(P_m(x), sigma))`` with ``D_m`` the :class:`theory.empirical.EmpiricalDenoiser` of the
training patches at position ``m`` (local; the ``M`` positions are ``M`` such denoisers, each queried with the
``B`` query patches at its position) or of all ``n M`` training patches (equivariant; queried with all ``B M``
query patches). So the patch denoisers get its matmul logits, its exactness to ``logit_tol`` nats at every
``sigma`` (anchor-relative logits, exact top-k, float64 matmuls only where the query's dtype could not hold
the logits; far queries concentrate on the nearest patch, and queries whose logits float64 cannot hold
raise), and its skipping of the patches that carry no weight. Memory: up to ``2 n M C prod(patch)`` values
(the training patches centred, and as given).

Theory: docs/THEORY.md §2.5."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from theory.denoiser import Sigma, check_batch, check_data, check_positive_int
from theory.empirical import EmpiricalDenoiser, sigma64


def _patch_sizes(patch_size: int | tuple[int, ...], spatial: tuple[int, ...]) -> tuple[int, ...]:
    sizes = (patch_size,) * len(spatial) if isinstance(patch_size, int) else tuple(patch_size)
    if len(sizes) != len(spatial) or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 and p % 2 == 1
                                             and p <= s for p, s in zip(sizes, spatial)):
        raise ValueError(f"patch_size must be an odd int (or {len(spatial)} odd ints) between 1 and the item's "
                         f"spatial size {spatial}, got {patch_size!r}")
    return sizes


def extract_patches(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """Circularly padded patches ``(N, M, C * prod(sizes))`` of ``x`` (N, C, L) or (N, C, H, W), row-major positions."""
    pads = [r for p in reversed(sizes) for r in ((p - 1) // 2,) * 2]
    padded = F.pad(x, pads, mode="circular") if any(pads) else x
    for axis, p in enumerate(sizes):
        padded = padded.unfold(2 + axis, p, 1)
    # (N, C, *spatial, *sizes) -> (N, *spatial, C, *sizes)
    k = len(sizes)
    order = (0, *range(2, 2 + k), 1, *range(2 + k, 2 + 2 * k))
    return padded.permute(order).reshape(x.shape[0], math.prod(x.shape[2:]), -1)


class LocalPatchDenoiser:
    """Patch-posterior denoiser on items ``(n, L)``, ``(n, C, L)`` or ``(n, C, H, W)``; see the module docstring.

    ``chunk_size`` training patches per chunk of the empirical posterior (its ``chunk_size``). Outputs in the
    query's dtype.
    """

    def __init__(self, data: Tensor, patch_size: int | tuple[int, ...], equivariant: bool = False,
                 chunk_size: int = 16384) -> None:
        check_data(data)
        if data.ndim not in (2, 3, 4):
            raise ValueError(f"data must have shape (n, L), (n, C, L) or (n, C, H, W), got {tuple(data.shape)}")
        self.item_shape = tuple(data.shape[1:])
        items = data[:, None] if data.ndim == 2 else data  # (n, C, *spatial)
        self.channels, self.spatial = items.shape[1], tuple(items.shape[2:])
        self.sizes = _patch_sizes(patch_size, self.spatial)
        self.equivariant = bool(equivariant)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.n, self.m = data.shape[0], math.prod(self.spatial)
        # patch coordinates are (C, *sizes) row-major: the centre of channel c is c * prod(sizes) + the centre offset
        area = math.prod(self.sizes)
        offset = sum(((p - 1) // 2) * math.prod(self.sizes[i + 1:]) for i, p in enumerate(self.sizes))
        self.centre = torch.arange(self.channels, device=data.device) * area + offset
        patches = extract_patches(items, self.sizes)  # (n, M, C * area)
        self.posteriors = ([EmpiricalDenoiser(patches.reshape(self.n * self.m, -1), chunk_size)] if self.equivariant
                           else [EmpiricalDenoiser(patches[:, m], chunk_size) for m in range(self.m)])

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        check_batch(x, self.item_shape)
        s = sigma64(sigma, x)
        q = extract_patches(x[:, None] if x.ndim == 2 else x, self.sizes)  # (B, M, C * area)
        b = x.shape[0]
        if self.equivariant:
            mean = self.posteriors[0](q.reshape(b * self.m, -1), s.repeat_interleave(self.m))[:, self.centre]
        else:
            mean = torch.stack([den(q[:, m], s)[:, self.centre] for m, den in enumerate(self.posteriors)], 1)
        out = mean.reshape(b, *self.spatial, self.channels).movedim(-1, 1)
        return out[:, 0] if x.ndim == 2 else out
