"""Distributions of training noise levels: where, along the noise axis, a diffusion model learns.

Each distribution has ``sample(n, generator=None, device=None) -> NoiseLevels`` (the VE ``sigma`` of every
draw and, for the discrete DDPM ones, the step ``t``) and an exact law: ``pmf()`` over the ``T`` DDPM steps
for discrete ones, ``cdf_log_sigma`` / ``pdf_log_sigma`` over ``ln sigma`` for continuous ones.

The confidence-interval Gaussian (Vu et al., arXiv 2601.21348, no public code) is a reconstruction; its
choices are explicit options (see :class:`ConfidenceIntervalGaussian`).

Theory: docs/THEORY.md §4.5-4.6."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sims.schedules import DDPMSchedule
from theory.denoiser import check_positive_int

TAILS = ("truncate", "clip", "redraw")
SPACES = ("t", "log_sigma")


@dataclass(frozen=True)
class NoiseLevels:
    """Per-draw VE noise levels ``sigma`` (float64, ``(n,)``) and DDPM steps ``t`` (long) where discrete."""

    sigma: Tensor
    t: Tensor | None = None


def _device(generator: torch.Generator | None, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def _normal_cdf(x: Tensor) -> Tensor:
    return torch.special.ndtr(torch.as_tensor(x, dtype=torch.float64))


class _StepDistribution:
    """A law over the ``T`` steps of a DDPM schedule, given by its exact ``pmf()``; sampled by ``multinomial``."""

    schedule: DDPMSchedule

    def pmf(self) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> NoiseLevels:
        dev = _device(generator, device)
        t = torch.multinomial(self.pmf().to(dev), check_positive_int(n, "n"), replacement=True, generator=generator)
        return NoiseLevels(sigma=self.schedule.sigmas.to(dev)[t], t=t)


class UniformSteps(_StepDistribution):
    """``t ~ Uniform{0, ..., T-1}`` (DDPM training, Ho et al.)."""

    def __init__(self, schedule: DDPMSchedule | None = None) -> None:
        self.schedule = schedule or DDPMSchedule()

    def __repr__(self) -> str:
        return f"UniformSteps({self.schedule!r})"

    def pmf(self) -> Tensor:
        return torch.full((self.schedule.T,), 1 / self.schedule.T, dtype=torch.float64)


class ConfidenceIntervalGaussian(_StepDistribution):
    """Vu et al.'s confidence-interval Gaussian: a normal whose central ``confidence`` mass is ``[c_l, c_h]``,
    ``mu = (c_l + c_h) / 2``, ``std = (c_h - c_l) / (2 z)``, ``z = Phi^-1((1 + confidence) / 2)``.

    ``space="t"`` (the paper's DDPM form): the normal is over normalised time ``u = t / T`` on ``[0, 1]`` and
    ``t = min(floor(u T), T - 1)``, so ``pmf(t)`` is the normal mass of ``[t/T, (t+1)/T)``. Small ``u`` is low
    noise (the *last* reverse steps), large ``u`` high noise: "later denoising steps" is ``[0, w]`` in the
    reverse-time reading and ``[1 - w, 1]`` in the forward-time one; both are plain intervals here.
    ``space="log_sigma"`` (the EDM form): the normal is over ``ln sigma`` on ``[ln sigma_min, ln sigma_max]``.

    Mass outside the domain (``tails``): ``"truncate"`` renormalises the normal to the domain (default, the
    paper's "truncated and redistributed"), ``"clip"`` moves it onto the nearest end, ``"redraw"`` redraws it
    uniformly over the domain.
    """

    def __init__(self, c_l: float, c_h: float, confidence: float = 0.95, tails: str = "truncate", space: str = "t",
                 schedule: DDPMSchedule | None = None, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if tails not in TAILS:
            raise ValueError(f"tails must be one of {TAILS}, got {tails!r}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        if not 0 < sigma_min < sigma_max < math.inf:
            raise ValueError(f"sigma_min, sigma_max must satisfy 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.lo, self.hi = (0.0, 1.0) if space == "t" else (math.log(sigma_min), math.log(sigma_max))
        if not (math.isfinite(c_l) and math.isfinite(c_h) and c_l < c_h):
            raise ValueError(f"interval [c_l, c_h] must have c_l < c_h, got [{c_l}, {c_h}]")
        if not self.lo <= c_l < c_h <= self.hi:
            raise ValueError(f"interval [c_l, c_h] must lie in [{self.lo:g}, {self.hi:g}] ({space} space), got [{c_l}, {c_h}]")
        self.c_l, self.c_h, self.confidence, self.tails, self.space = float(c_l), float(c_h), confidence, tails, space
        self.schedule = schedule or DDPMSchedule()
        z = float(torch.special.ndtri(torch.tensor((1 + confidence) / 2, dtype=torch.float64)))
        self.mu, self.std = (c_l + c_h) / 2, (c_h - c_l) / (2 * z)

    def __repr__(self) -> str:
        return (f"ConfidenceIntervalGaussian([{self.c_l:g}, {self.c_h:g}], confidence={self.confidence:g}, "
                f"tails={self.tails!r}, space={self.space!r})")

    def _phi(self, x) -> Tensor:
        return _normal_cdf((torch.as_tensor(x, dtype=torch.float64) - self.mu) / self.std)

    def inside_mass(self) -> float:
        """Mass of the untruncated normal on the domain."""
        return float(self._phi(self.hi) - self._phi(self.lo))

    def pmf(self) -> Tensor:
        """Exact law of ``t`` (``space="t"`` only)."""
        if self.space != "t":
            raise ValueError("pmf() needs space='t'; use cdf_log_sigma / pdf_log_sigma for space='log_sigma'")
        T = self.schedule.T
        cells = torch.diff(self._phi(torch.arange(T + 1, dtype=torch.float64) / T))
        if self.tails == "truncate":
            return cells / cells.sum()
        if self.tails == "redraw":
            return cells + (1 - cells.sum()) / T
        cells[0] += self._phi(0.0)
        cells[-1] += 1 - self._phi(1.0)
        return cells

    def cdf_log_sigma(self, x: Tensor) -> Tensor:
        """Exact CDF of ``ln sigma`` (``space="log_sigma"``), atoms at the ends included for ``"clip"``."""
        self._need_log_sigma()
        x = torch.as_tensor(x, dtype=torch.float64)
        xc = x.clamp(self.lo, self.hi)
        inside = self._phi(xc) - self._phi(self.lo)
        if self.tails == "truncate":
            body = inside / self.inside_mass()
        elif self.tails == "redraw":
            body = inside + (1 - self.inside_mass()) * (xc - self.lo) / (self.hi - self.lo)
        else:
            body = self._phi(xc)
        return torch.where(x < self.lo, torch.zeros_like(x), torch.where(x >= self.hi, torch.ones_like(x), body))

    def pdf_log_sigma(self, x: Tensor) -> Tensor:
        """Density of ``ln sigma`` on the open domain (for ``"clip"``, the atoms at the ends are left out)."""
        self._need_log_sigma()
        x = torch.as_tensor(x, dtype=torch.float64)
        normal = torch.exp(-0.5 * ((x - self.mu) / self.std) ** 2) / (self.std * math.sqrt(2 * math.pi))
        if self.tails == "truncate":
            normal = normal / self.inside_mass()
        elif self.tails == "redraw":
            normal = normal + (1 - self.inside_mass()) / (self.hi - self.lo)
        return torch.where((x > self.lo) & (x < self.hi), normal, torch.zeros_like(normal))

    def _need_log_sigma(self) -> None:
        if self.space != "log_sigma":
            raise ValueError("this law is over ln sigma: it needs space='log_sigma'; use pmf() for space='t'")

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> NoiseLevels:
        if self.space == "t":
            return super().sample(n, generator, device)
        dev = _device(generator, device)
        n = check_positive_int(n, "n")
        if self.tails == "truncate":  # inverse CDF of the normal restricted to [lo, hi]
            a, b = self._phi(self.lo).item(), self._phi(self.hi).item()
            p = a + (b - a) * torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
            x = (self.mu + self.std * torch.special.ndtri(p)).clamp(self.lo, self.hi)
        else:
            x = self.mu + self.std * torch.randn(n, generator=generator, device=dev, dtype=torch.float64)
            out = (x < self.lo) | (x > self.hi)
            if self.tails == "clip":
                x = x.clamp(self.lo, self.hi)
            else:
                u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
                x = torch.where(out, self.lo + (self.hi - self.lo) * u, x)
        return NoiseLevels(sigma=x.exp())


class EDMLogNormal:
    """``ln sigma ~ N(P_mean, P_std^2)`` (Karras et al. 2022; defaults -1.2, 1.2)."""

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2) -> None:  # noqa: N803 (the paper's names)
        if not (math.isfinite(P_mean) and math.isfinite(P_std) and P_std > 0):
            raise ValueError(f"P_mean must be finite and P_std > 0, got {P_mean}, {P_std}")
        self.P_mean, self.P_std = float(P_mean), float(P_std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.P_mean:g}, {self.P_std:g})"

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> NoiseLevels:
        z = torch.randn(check_positive_int(n, "n"), generator=generator, device=_device(generator, device), dtype=torch.float64)
        return NoiseLevels(sigma=(self.P_mean + self.P_std * z).exp())

    def cdf_log_sigma(self, x: Tensor) -> Tensor:
        return _normal_cdf((torch.as_tensor(x, dtype=torch.float64) - self.P_mean) / self.P_std)

    def pdf_log_sigma(self, x: Tensor) -> Tensor:
        z = (torch.as_tensor(x, dtype=torch.float64) - self.P_mean) / self.P_std
        return torch.exp(-0.5 * z**2) / (self.P_std * math.sqrt(2 * math.pi))


class LogitNormal(EDMLogNormal):
    """SD3's logit-normal time ``u = sigmoid(m + s z)`` for the rectified flow ``x_u = (1 - u) x0 + u eps``.
    Divided by ``1 - u`` this is VE with ``sigma = u / (1 - u)``, so ``ln sigma = logit u ~ N(m, s^2)``: the
    same law over sigma as ``EDMLogNormal(m, s)``, centred at sigma = 1 by default."""

    def __init__(self, loc: float = 0.0, scale: float = 1.0) -> None:
        super().__init__(loc, scale)

    def pdf_u(self, u: Tensor) -> Tensor:
        """Density of ``u`` on ``(0, 1)``: ``pdf_log_sigma(logit u) / (u (1 - u))``."""
        u = torch.as_tensor(u, dtype=torch.float64)
        return self.pdf_log_sigma(torch.logit(u)) / (u * (1 - u))
