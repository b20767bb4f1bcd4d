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

Numerics: on patches centred at the mean training patch, the logits drop the term
``-||P_m(x)||^2 / (2 sigma^2)`` common to all training patches at one query position, which the softmax does
not see: ``(P_m(x).p_j - ||p_j||^2 / 2) / sigma^2`` by float64 matmul, error about
``1e-16 ||P_m(x)|| max_j ||p_j|| / sigma^2`` nats, so far queries concentrate on the nearest patch as they
should (docs/THEORY.md §2.1.3, note); queries whose logits float64 cannot hold raise, as in
:func:`theory.empirical.check_logit_range`. Training patches are streamed in chunks with the online
log-sum-exp of :class:`theory.empirical.SoftmaxStats`, so memory is ``O(B M chunk_size)`` for ``M``
positions, whatever ``n``.

Theory: docs/THEORY.md §2.5."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from theory.denoiser import Sigma, check_batch, check_data, check_positive_int
from theory.empirical import SoftmaxStats, check_logit_range, sigma64


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

    ``chunk_size`` training patches (local: items) per step. Outputs in the query's dtype.
    """

    def __init__(self, data: Tensor, patch_size: int | tuple[int, ...], equivariant: bool = False,
                 chunk_size: int = 256) -> None:
        check_data(data)
        if data.ndim not in (2, 3, 4):
            raise ValueError(f"data must have shape (n, L), (n, C, L) or (n, C, H, W), got {tuple(data.shape)}")
        self.item_shape = tuple(data.shape[1:])
        self.items = (data[:, None] if data.ndim == 2 else data).to(torch.float64)  # (n, C, *spatial)
        self.channels, self.spatial = self.items.shape[1], tuple(self.items.shape[2:])
        self.sizes = _patch_sizes(patch_size, self.spatial)
        self.equivariant = bool(equivariant)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.n, self.m = data.shape[0], math.prod(self.spatial)
        mean_patch = sum(extract_patches(self.items[lo:lo + self.chunk_size], self.sizes).sum(0)
                         for lo in range(0, self.n, self.chunk_size)) / self.n  # (M, P), per position
        self.center = mean_patch.mean(0, keepdim=True) if self.equivariant else mean_patch
        self.radius = max(self._patches(lo, lo + self.chunk_size).square().sum(-1).max().item()
                          for lo in range(0, self.n, self.chunk_size)) ** 0.5  # max ||p_j|| (centred)

    def _patches(self, lo: int, hi: int) -> Tensor:
        """Centred patches of items ``lo:hi``, (hi - lo, M, P)."""
        return extract_patches(self.items[lo:hi], self.sizes) - self.center

    def _centres(self, lo: int, hi: int) -> Tensor:
        """Centre values of the patches of items ``lo:hi``: (hi - lo, M, C)."""
        return self.items[lo:hi].flatten(2).transpose(1, 2)

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        check_batch(x, self.item_shape)
        s = sigma64(sigma, x)
        xi = x.to(torch.float64)
        q = extract_patches(xi[:, None] if xi.ndim == 2 else xi, self.sizes) - self.center  # (B, M, P)
        b = x.shape[0]
        check_logit_range(q.square().sum(-1).amax(1).sqrt(), self.radius, s)
        inv_s2 = (1.0 / s.square()).repeat_interleave(self.m)  # rows are (b, m) pairs
        chunks = self._equivariant_chunks(q, inv_s2) if self.equivariant else self._local_chunks(q, inv_s2)
        total: SoftmaxStats | None = None
        for stats in chunks:
            total = stats.merge(total)
        out = total.mean().reshape(b, *self.spatial, self.channels)
        out = out.movedim(-1, 1)
        return (out[:, 0] if x.ndim == 2 else out).to(x.dtype)

    def _local_chunks(self, q: Tensor, inv_s2: Tensor):
        b = q.shape[0]
        for lo in range(0, self.n, self.chunk_size):
            hi = min(lo + self.chunk_size, self.n)
            t = self._patches(lo, hi)  # (c, M, P)
            dot = torch.einsum("bmp,imp->bmi", q, t)
            logits = (dot - 0.5 * t.square().sum(-1).T[None]).reshape(b * self.m, hi - lo) * inv_s2[:, None]
            centres = self._centres(lo, hi)
            index = torch.arange(lo, hi, device=q.device).expand(b * self.m, -1)
            yield self._stats(logits, lambda w: torch.einsum("bmi,imc->bmc", w.reshape(b, self.m, -1), centres)
                              .reshape(b * self.m, -1), index)

    def _equivariant_chunks(self, q: Tensor, inv_s2: Tensor):
        b = q.shape[0]
        per_item = max(1, self.chunk_size // self.m)
        flat_q = q.reshape(b * self.m, -1)
        for lo in range(0, self.n, per_item):
            hi = min(lo + per_item, self.n)
            t = self._patches(lo, hi).reshape((hi - lo) * self.m, -1)
            logits = (flat_q @ t.T - 0.5 * t.square().sum(-1)[None]) * inv_s2[:, None]
            centres = self._centres(lo, hi).reshape((hi - lo) * self.m, -1)
            index = torch.arange(lo * self.m, hi * self.m, device=q.device).expand(b * self.m, -1)
            yield self._stats(logits, lambda w: w @ centres, index)

    @staticmethod
    def _stats(logits: Tensor, weighted_sum, index: Tensor) -> SoftmaxStats:
        shift = logits.max(1).values.detach()
        return SoftmaxStats.from_logits(logits - shift[:, None], shift, weighted_sum, index)
