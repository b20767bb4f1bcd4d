"""The one interface shared by every track: a denoiser ``D(x, sigma) = E[x0 | x0 + sigma z = x]``.

``x`` is a batch of shape ``(B, *item_shape)`` (float32 or float64), ``sigma`` a positive float or a
``(B,)`` tensor. Closed-form denoisers (``theory``) and trained networks (``sims``, ``image_track``)
both satisfy it, so samplers, metrics and diagnostics work on either. The helpers here validate input
once, with errors that name the argument and the expected value; ``check_sigmas`` and ``log_sigma_grid``
are the one check and the one grid of noise levels for every layer.

Theory: docs/THEORY.md §1.1."""
from __future__ import annotations

import math
from typing import Iterable, Protocol, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor

Sigma = Union[float, Tensor]


@runtime_checkable
class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor: ...


FINITE_CHUNK = 1 << 22  # elements per block of the finiteness check: its mask never exceeds 4 MiB


def check_finite(t: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` naming ``name`` if ``t`` holds NaN or inf. Checked over blocks of leading-axis rows of
    about ``FINITE_CHUNK`` elements, so the boolean mask stays small however large ``t`` is (a whole-tensor mask
    was most of the streamed nearest-neighbour search's peak memory)."""
    if not torch.is_tensor(t):
        raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.is_floating_point():
        blocks = t.split(max(1, FINITE_CHUNK // max(1, math.prod(t.shape[1:]))), 0) if t.ndim else (t,)
        if not all(bool(torch.isfinite(b).all()) for b in blocks):
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


def per_item(v: float | Tensor, x: Tensor, name: str) -> Tensor:
    """``v`` (a float or a ``(B,)`` tensor) as a ``(B,)`` tensor in ``x``'s dtype and device. Checks the shape
    only, never the values, so it costs no host sync: the network-side form of ``sigma_per_item``."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    v = v.expand(x.shape[0]) if v.ndim == 0 else v
    if v.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a float or a tensor of shape ({x.shape[0]},), got shape {tuple(v.shape)}")
    return v


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-item ``(B,)`` tensor to ``(B, 1, ..., 1)`` so it broadcasts against ``x``."""
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def check_sigmas(sigmas: Iterable[float] | float, name: str = "sigmas") -> np.ndarray:
    """A non-empty 1D float64 array of finite noise levels > 0 (else ``ValueError`` naming ``name``)."""
    try:
        s = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-empty sequence of finite floats > 0, got {sigmas!r}") from None
    if s.size < 1 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{name} must be a non-empty sequence of finite floats > 0, got {sigmas!r}")
    return s


def log_sigma_grid(lo: float, hi: float, num: int) -> np.ndarray:
    """``num`` noise levels spaced evenly in ``log sigma`` from ``lo`` to ``hi``."""
    check_sigmas([lo, hi], "lo, hi")
    if not lo < hi:
        raise ValueError(f"lo, hi must satisfy lo < hi, got [{lo}, {hi}]")
    return np.geomspace(lo, hi, check_positive_int(num, "num"))


def check_data(data: Tensor, name: str = "data") -> Tensor:
    """Validate a training set ``(n, *item_shape)``: floating, ``n >= 1``, at least one coordinate, finite."""
    if not torch.is_tensor(data) or not data.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch tensor of shape (n, *item_shape)")
    if data.ndim < 2 or data.shape[0] < 1 or data[0].numel() < 1:
        raise ValueError(f"{name} must have shape (n, *item_shape) with n >= 1 and a non-empty item, got {tuple(data.shape)}")
    return check_finite(data, name)


def check_positive_int(value: int, name: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
