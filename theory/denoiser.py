"""The one interface shared by every track: a denoiser ``D(x, sigma) = E[x0 | x0 + sigma z = x]``.

``x`` is a batch of shape ``(B, *item_shape)`` (float32 or float64), ``sigma`` a positive float or a
``(B,)`` tensor. Closed-form denoisers (``theory``) and trained networks (``sims``, ``image_track``)
both satisfy it, so samplers, metrics and diagnostics work on either. The helpers here validate input
once, with errors that name the argument and the expected value.
"""
from __future__ import annotations

from typing import Protocol, Union, runtime_checkable

import torch
from torch import Tensor

Sigma = Union[float, Tensor]


@runtime_checkable
class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor: ...


def check_finite(t: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` naming ``name`` if ``t`` holds NaN or inf."""
    if not torch.is_tensor(t):
        raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return t


def check_batch(x: Tensor, item_shape: tuple[int, ...], name: str = "x") -> Tensor:
    """Check ``x`` has shape ``(B, *item_shape)`` with ``B >= 1`` and finite floating values."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch tensor of shape (B, {', '.join(map(str, item_shape))})")
    if tuple(x.shape[1:]) != tuple(item_shape) or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (B, {', '.join(map(str, item_shape))}) with B >= 1, got {tuple(x.shape)}")
    return check_finite(x, name)


def sigma_per_item(sigma: Sigma, x: Tensor, name: str = "sigma") -> Tensor:
    """Return ``sigma`` as a validated ``(B,)`` tensor in ``x``'s dtype and device (every entry > 0, finite)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a float or a tensor of shape ({x.shape[0]},), got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"{name} must be finite and > 0, got min {s.min().item():.3g}")
    return s


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-item ``(B,)`` tensor to ``(B, 1, ..., 1)`` so it broadcasts against ``x``."""
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))
