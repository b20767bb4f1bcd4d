"""Training losses. Each is a small class ``loss(denoiser, x0, y=None, generator=None) -> (B,)`` that draws one
noise level per sample from any noise-level distribution (``sims.noise_levels``) and returns per-sample
losses, each the mean over the item's coordinates. ``y`` holds the fixed noisy copies ``x0 + sigma_n eps``
(``sims.corruption``) for the ambient losses.

- EDM:       ``lambda(s) ||D(x0 + s z, s) - x0||^2``, ``lambda(s) = (s^2 + sd^2) / (s sd)^2``.
- epsilon:   DDPM's ``||eps_hat - z||^2`` in VE form, ``eps_hat = (x - D(x, s)) / s``, i.e. ``||D - x0||^2 / s^2``.
- ambient:   for ``s > sigma_n`` on ``y`` only: ``x = y + sqrt(s^2 - sigma_n^2) z``, ``a = (s^2 - sigma_n^2) / s^2``,
             ``w(s) ||a D(x, s) + (1 - a) x - y||^2``; since ``E[y | x] = a E[x0 | x] + (1 - a) x`` its minimiser
             is the clean denoiser. ``w = lambda`` (``weighting="edm"``, the released code) or ``lambda / a^2``
             (``weighting="x0"``, the x0-space weight of later ambient code).
- hybrid:    Shah et al.: clean EDM loss where ``s <= sigma_n``, ambient where ``s > sigma_n``, branch per
             sample, one network call.

Theory: docs/THEORY.md §4.2-4.3 and §4.7."""
from __future__ import annotations

import torch
from torch import Tensor

from sims.noise_levels import EDMLogNormal, NoiseLevels, UniformSteps
from theory.denoiser import expand_like

WEIGHTINGS = ("edm", "x0")


def edm_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (unit loss at initialisation)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def _per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).square().flatten(1).mean(dim=1)


def _draw(levels, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``(sigma, z)``: one level per sample (in ``x0``'s dtype) and standard normal noise like ``x0``."""
    s = levels.sample(x0.shape[0], generator=generator, device=x0.device).sigma.to(x0.dtype)
    return s, torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)


def _check_sigma_n(sigma_n: float) -> float:
    if not (isinstance(sigma_n, (int, float)) and 0 < sigma_n < float("inf")):
        raise ValueError(f"sigma_n must be a finite float > 0, got {sigma_n!r}")
    return float(sigma_n)


def _check_weighting(weighting: str) -> str:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return weighting


def _check_y(y: Tensor | None, x0: Tensor) -> Tensor:
    if y is None or y.shape != x0.shape:
        raise ValueError(f"y (the fixed noisy copies) must have x0's shape {tuple(x0.shape)}, got "
                         f"{None if y is None else tuple(y.shape)}")
    return y


class EDMLoss:
    """``lambda(s) ||D(x0 + s z, s) - x0||^2`` with ``s`` from ``levels`` (default: EDM log-normal)."""

    def __init__(self, levels=None, sigma_data: float = 0.5) -> None:
        self.levels, self.sigma_data = levels or EDMLogNormal(), float(sigma_data)

    def __call__(self, denoiser, x0: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        s, z = _draw(self.levels, x0, generator)
        d = denoiser(x0 + expand_like(s, x0) * z, s)
        return edm_weight(s, self.sigma_data) * _per_sample_mse(d, x0)


class EpsilonLoss:
    """DDPM epsilon prediction in VE form, ``||(x - D(x, s)) / s - z||^2 = ||D - x0||^2 / s^2`` (default: uniform steps)."""

    def __init__(self, levels=None) -> None:
        self.levels = levels or UniformSteps()

    def __call__(self, denoiser, x0: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        s, z = _draw(self.levels, x0, generator)
        d = denoiser(x0 + expand_like(s, x0) * z, s)
        return _per_sample_mse(d, x0) / s**2


class HybridAmbientLoss:
    """Clean EDM loss for ``s <= sigma_n``, ambient loss on the fixed noisy ``y`` for ``s > sigma_n``."""

    def __init__(self, levels=None, sigma_n: float = 1.0, sigma_data: float = 0.5, weighting: str = "edm") -> None:
        self.levels, self.sigma_n, self.sigma_data = levels or EDMLogNormal(), _check_sigma_n(sigma_n), float(sigma_data)
        self.weighting = _check_weighting(weighting)

    def _levels(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return _draw(self.levels, x0, generator)

    def __call__(self, denoiser, x0: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        y = _check_y(y, x0)
        s, z = self._levels(x0, generator)
        ambient = s > self.sigma_n
        extra = (s**2 - self.sigma_n**2).clamp(min=0)  # variance added on top of y's sigma_n
        a = torch.where(ambient, extra / s**2, torch.ones_like(s))
        e = lambda v: expand_like(v, x0)  # noqa: E731
        x = torch.where(e(ambient), y + e(extra.sqrt()) * z, x0 + e(s) * z)
        d = denoiser(x, s)
        pred, target = e(a) * d + (1 - e(a)) * x, torch.where(e(ambient), y, x0)
        w = edm_weight(s, self.sigma_data) / (a**2 if self.weighting == "x0" else 1)
        return w * _per_sample_mse(pred, target)


class AmbientLoss(HybridAmbientLoss):
    """The ambient loss alone: levels are drawn from ``levels`` conditioned on ``s > sigma_n`` (by redrawing)."""

    max_rounds = 100

    def _levels(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        n, kept = x0.shape[0], []
        for _ in range(self.max_rounds):
            draw: NoiseLevels = self.levels.sample(2 * n, generator=generator, device=x0.device)
            kept.append(draw.sigma[draw.sigma > self.sigma_n])
            if sum(k.numel() for k in kept) >= n:
                s = torch.cat(kept)[:n].to(x0.dtype)
                return s, torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        raise ValueError(f"levels put almost no mass above sigma_n={self.sigma_n}: the ambient loss needs sigma > sigma_n")
