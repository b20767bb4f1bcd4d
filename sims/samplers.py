"""Samplers as plain functions over any denoiser ``D(x, sigma)`` (closed-form or trained).

Each takes ``noise`` (standard normal, the output's shape) and a decreasing grid ``sigmas`` ending with 0
(``sims.schedules.karras_sigmas`` or ``DDPMSchedule.sampling_sigmas``), starts from ``x = sigmas[0] noise``
and integrates the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (Karras et al. 2022) or,
for ``ddpm_ancestral``, draws from the exact Gaussian bridge. ``return_trajectory=True`` also returns the
states at every grid level, stacked as ``(len(sigmas), *noise.shape)``.

Theory: docs/THEORY.md §5."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from sims.schedules import karras_sigmas
from theory.denoiser import check_finite, check_positive_int, check_sigmas
from theory.seeding import seeded_generator


def _check_grid(noise: Tensor, sigmas: Tensor) -> list[float]:
    check_finite(noise, "noise")
    if noise.ndim < 2 or noise.shape[0] < 1:
        raise ValueError(f"noise must have shape (B, *item_shape) with B >= 1, got {tuple(noise.shape)}")
    s = torch.as_tensor(sigmas, dtype=torch.float64).cpu()
    if s.ndim != 1 or s.numel() < 2 or s[-1] != 0 or not bool((s[:-1] > 0).all()) or not bool((s[1:] < s[:-1]).all()):
        raise ValueError("sigmas must be a strictly decreasing 1D grid of positive levels ending with 0, "
                         f"got {s.tolist() if s.numel() < 8 else tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("sigmas must be finite")
    return s.tolist()


def _result(x: Tensor, trajectory: list[Tensor] | None):
    return (x, torch.stack(trajectory)) if trajectory is not None else x


@torch.no_grad()
def edm_euler(denoiser, noise: Tensor, sigmas: Tensor, return_trajectory: bool = False):
    """First-order steps ``x <- x + (s' - s) (x - D(x, s)) / s``."""
    grid = _check_grid(noise, sigmas)
    x = noise * grid[0]
    traj = [x] if return_trajectory else None
    for s, s_next in zip(grid[:-1], grid[1:]):
        x = x + (s_next - s) * (x - denoiser(x, s)) / s
        if traj is not None:
            traj.append(x)
    return _result(x, traj)


def _heun_step(denoiser, x: Tensor, s: float, s_next: float) -> Tensor:
    d = (x - denoiser(x, s)) / s
    x_next = x + (s_next - s) * d
    if s_next > 0:  # second-order correction (skipped on the last step to sigma = 0)
        x_next = x + (s_next - s) * (d + (x_next - denoiser(x_next, s_next)) / s_next) / 2
    return x_next


@torch.no_grad()
def edm_heun(denoiser, noise: Tensor, sigmas: Tensor, return_trajectory: bool = False):
    """EDM Algorithm 1: Heun's method, ``2 N - 1`` denoiser calls for ``N`` positive levels."""
    grid = _check_grid(noise, sigmas)
    x = noise * grid[0]
    traj = [x] if return_trajectory else None
    for s, s_next in zip(grid[:-1], grid[1:]):
        x = _heun_step(denoiser, x, s, s_next)
        if traj is not None:
            traj.append(x)
    return _result(x, traj)


@torch.no_grad()
def edm_stochastic(denoiser, noise: Tensor, sigmas: Tensor, churn: float = 40.0, s_tmin: float = 0.05,
                   s_tmax: float = 50.0, s_noise: float = 1.003, generator: torch.Generator | None = None,
                   return_trajectory: bool = False):
    """EDM Algorithm 2: before each Heun step with ``s`` in ``[s_tmin, s_tmax]``, raise the level to
    ``s_hat = s (1 + gamma)``, ``gamma = min(churn / N, sqrt 2 - 1)``, by adding noise of variance
    ``s_hat^2 - s^2`` (times ``s_noise^2``); ``churn = 0`` is ``edm_heun``."""
    grid = _check_grid(noise, sigmas)
    if not churn >= 0 or not s_noise > 0:
        raise ValueError(f"churn must be >= 0 and s_noise > 0, got {churn}, {s_noise}")
    gamma = min(churn / (len(grid) - 1), math.sqrt(2) - 1)
    x = noise * grid[0]
    traj = [x] if return_trajectory else None
    for s, s_next in zip(grid[:-1], grid[1:]):
        s_hat = s * (1 + gamma) if s_tmin <= s <= s_tmax else s
        if s_hat > s:
            fresh = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + math.sqrt(s_hat**2 - s**2) * s_noise * fresh
        x = _heun_step(denoiser, x, s_hat, s_next)
        if traj is not None:
            traj.append(x)
    return _result(x, traj)


@torch.no_grad()
def ddpm_ancestral(denoiser, noise: Tensor, sigmas: Tensor, generator: torch.Generator | None = None,
                   return_trajectory: bool = False):
    """DDPM ancestral sampling in VE form. A DDPM chain divided by ``sqrt(abar_t)`` has independent Gaussian
    increments, so the step ``s -> s'`` draws from the exact bridge with ``x0`` replaced by ``D(x, s)``:
    ``x' = D + (s'/s)^2 (x - D) + s' sqrt(1 - (s'/s)^2) z`` (Ho et al.'s posterior ``q(x_{t-1} | x_t, x0)``).
    On ``DDPMSchedule.sampling_sigmas()`` it is Ho et al.'s sampler step for step; the last step returns ``D``."""
    grid = _check_grid(noise, sigmas)
    x = noise * grid[0]
    traj = [x] if return_trajectory else None
    for s, s_next in zip(grid[:-1], grid[1:]):
        d, r2 = denoiser(x, s), (s_next / s) ** 2
        x = d + r2 * (x - d)
        if s_next > 0:
            x = x + s_next * math.sqrt(1 - r2) * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if traj is not None:
            traj.append(x)
    return _result(x, traj)


DETERMINISTIC = {"edm_heun": edm_heun, "edm_euler": edm_euler}
_SAMPLING = 11  # domain tag: sampling noise never shares a stream with data draws or corruption


@torch.no_grad()
def generate(denoiser, num: int, item_shape: tuple[int, ...], *, seed: int = 0, steps: int = 18,
             sigma_min: float = 0.002, sigma_max: float = 80.0, sampler: str = "edm_heun", batch: int | None = None,
             device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, bf16: bool = False) -> Tensor:
    """``num`` samples of ``denoiser``: sample ``i`` starts from standard-normal noise drawn by
    ``seeded_generator(11, seed, i)`` (a tagged stream) and is integrated by ``sampler`` (``edm_heun``: EDM
    Algorithm 1) over ``steps`` Karras levels from ``sigma_max`` to ``sigma_min`` then 0, ``batch`` samples
    at a time (default: all) on ``device``. The samples therefore do not depend on ``batch`` or ``num``.
    Returned on the CPU in ``dtype``; ``bf16`` runs the denoiser under bfloat16 autocast."""
    if sampler not in DETERMINISTIC:
        raise ValueError(f"sampler must be one of {sorted(DETERMINISTIC)}, got {sampler!r}")
    check_sigmas([sigma_min, sigma_max], "sigma_min, sigma_max")
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min, sigma_max must satisfy sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    num = check_positive_int(num, "num")
    batch = num if batch is None else check_positive_int(batch, "batch")
    sigmas = karras_sigmas(check_positive_int(steps, "steps"), sigma_min=sigma_min, sigma_max=sigma_max)
    out = []
    for start in range(0, num, batch):
        noise = torch.stack([torch.randn(item_shape, generator=seeded_generator(_SAMPLING, seed, i), dtype=dtype)
                             for i in range(start, min(start + batch, num))]).to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            x = DETERMINISTIC[sampler](denoiser, noise, sigmas)
        out.append(x.to("cpu", dtype))
    return torch.cat(out)
