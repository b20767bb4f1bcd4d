"""Noise schedules: the maps between DDPM step ``t``, normalised time ``u = t / T`` and the VE level ``sigma``.

A DDPM chain ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` rescaled by ``1 / sqrt(abar_t)`` is the
variance-exploding ``x0 + sigma_t eps`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)``, so every DDPM
quantity is read in the VE form the rest of memdiff uses. Steps are 0-based: ``t = 0`` is the first
(least noisy) forward step, ``abar_t = prod_{s <= t} (1 - beta_s)``.

Theory: docs/THEORY.md §4.4 and §5.2."""
from __future__ import annotations

import math

import torch
from torch import Tensor

KINDS = ("linear", "cosine")


class DDPMSchedule:
    """DDPM noise schedule of ``T`` steps: ``linear`` (betas from ``beta_start`` to ``beta_end``, Ho et al.)
    or ``cosine`` (``abar(u) = cos^2((u + s) / (1 + s) * pi / 2) / cos^2(s / (1 + s) * pi / 2)``, s = 0.008,
    betas capped at 0.999, Nichol & Dhariwal). ``sigmas`` is the increasing float64 ``(T,)`` VE table."""

    def __init__(self, kind: str = "linear", T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(T, int) or T < 2:
            raise ValueError(f"T must be an integer >= 2, got {T!r}")
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"betas must satisfy 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        self.kind, self.T = kind, T
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        else:
            s = 0.008
            f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def __repr__(self) -> str:
        return f"DDPMSchedule(kind={self.kind!r}, T={self.T})"

    def sigma(self, t: Tensor | int) -> Tensor:
        """``sigma_t`` for integer steps ``t`` in ``[0, T)``."""
        t = torch.as_tensor(t)
        if t.is_floating_point() or bool(((t < 0) | (t >= self.T)).any()):
            raise ValueError(f"t must hold integer steps in [0, {self.T - 1}], got {t}")
        return self.sigmas[t]

    def t_from_u(self, u: Tensor) -> Tensor:
        """``t = min(floor(u T), T - 1)`` for normalised times ``u`` in ``[0, 1]``."""
        u = torch.as_tensor(u, dtype=torch.float64)
        if bool(((u < 0) | (u > 1)).any()) or not bool(torch.isfinite(u).all()):
            raise ValueError(f"u must lie in [0, 1], got min {u.min().item():.3g}, max {u.max().item():.3g}")
        return (u * self.T).floor().long().clamp(max=self.T - 1)

    def t_from_sigma(self, sigma: Tensor | float) -> Tensor:
        """The step whose ``sigma_t`` is nearest to ``sigma`` in log scale."""
        log_s = torch.as_tensor(sigma, dtype=torch.float64).log()
        if not bool(torch.isfinite(log_s).all()):
            raise ValueError("sigma must be finite and > 0")
        table = self.sigmas.log()
        right = torch.searchsorted(table, log_s.reshape(-1)).clamp(1, self.T - 1)
        left = right - 1
        pick = torch.where((log_s.reshape(-1) - table[left]).abs() <= (table[right] - log_s.reshape(-1)).abs(), left, right)
        return pick.reshape(log_s.shape)

    def sampling_sigmas(self, num_steps: int | None = None) -> Tensor:
        """Decreasing sigmas for a reverse DDPM pass over ``num_steps`` evenly strided steps (all ``T`` by
        default), ending with 0: the grid ``sims.samplers.ddpm_ancestral`` walks."""
        num_steps = self.T if num_steps is None else num_steps
        if not isinstance(num_steps, int) or not 1 <= num_steps <= self.T:
            raise ValueError(f"num_steps must be an integer in [1, {self.T}], got {num_steps!r}")
        t = torch.linspace(self.T - 1, 0, num_steps, dtype=torch.float64).round().long()
        return torch.cat([self.sigmas[t], self.sigmas.new_zeros(1)])


def karras_sigmas(num_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """EDM sampling levels ``(sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``,
    ``i = 0..N-1``, followed by 0: a decreasing float64 tensor of ``num_steps + 1`` entries."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ValueError(f"sigma_min, sigma_max must satisfy 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if num_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])
