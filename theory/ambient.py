"""The ambient-loss optimum on fixed noisy items (docs/THEORY.md §2.4; Shah et al., arXiv 2502.21278): what
ambient training can learn at best.

Training items are seen only as ``y_i = x0_i + sigma_n eps_i``. At ``sigma > sigma_n`` the ambient loss
``|| a D(x_t) + (1 - a) x_t - y ||^2`` with ``x_t = y + tau z``, ``tau^2 = sigma^2 - sigma_n^2``,
``a = tau^2 / sigma^2`` is minimised pointwise by

    D(x, sigma) = (E[y | x_t = x] - (1 - a) x) / a = x + (sigma^2 / tau^2) (E[y | x] - x),

where ``E[y | x]`` is the empirical denoiser of the ``y``'s at noise ``tau``. It is evaluated as
``E[y | x] + (sigma_n^2 / tau^2) (E[y | x] - x)`` (the same, since ``sigma^2 / tau^2 = 1 + sigma_n^2 / tau^2``),
whose rounding error is relative to its two terms: for a far query and ``sigma >> sigma_n`` the first form
would cancel ``x`` against ``(sigma^2 / tau^2) x`` and leave ``D`` with an absolute error ``~1e-16 ||x||``.
Below ``sigma_n`` the loss is undefined, so every method raises for ``sigma <= sigma_n``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from theory.denoiser import Sigma, check_batch, expand_like
from theory.empirical import EmpiricalDenoiser, Posterior, sigma64


class AmbientDenoiser:
    """Ambient optimum for noisy items ``noisy_data`` (n, *item_shape) at corruption level ``sigma_n``.

    The noisy-item posterior is an :class:`EmpiricalDenoiser` (``**empirical_options`` go to it).
    """

    def __init__(self, noisy_data: Tensor, sigma_n: float, **empirical_options) -> None:
        if isinstance(sigma_n, bool) or not isinstance(sigma_n, (int, float)) or not math.isfinite(sigma_n) or sigma_n <= 0:
            raise ValueError(f"sigma_n must be a finite float > 0, got {sigma_n!r}")
        self.sigma_n = float(sigma_n)
        self.noisy = EmpiricalDenoiser(noisy_data, **empirical_options)
        self.item_shape = self.noisy.item_shape

    def tau(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``tau = sqrt(sigma^2 - sigma_n^2)`` per item (B,) float64; raises unless ``sigma > sigma_n``."""
        check_batch(x, self.item_shape)
        s = sigma64(sigma, x)
        if not bool((s > self.sigma_n).all()):
            raise ValueError(f"sigma must be > sigma_n = {self.sigma_n:g} for the ambient denoiser, got min {s.min().item():.6g}")
        return torch.sqrt((s - self.sigma_n) * (s + self.sigma_n))

    def posterior(self, x: Tensor, sigma: Sigma) -> Posterior:
        """Posterior over the noisy items at noise ``tau``; ``mean`` is the ambient ``D(x, sigma)``."""
        tau = self.tau(x, sigma)
        p = self.noisy.posterior64(x, tau)
        gain = expand_like(self.sigma_n ** 2 / tau.square(), x)
        mean = p.mean + gain * (p.mean - x.to(torch.float64))
        return Posterior(mean.to(x.dtype), p.max_weight.to(x.dtype), p.argmax, p.entropy.to(x.dtype),
                         p.log_normalizer.to(x.dtype))

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        return self.posterior(x, sigma).mean

    def noisy_mean(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``E[y | x_t = x]``: the empirical denoiser of the noisy items at ``tau``."""
        return self.noisy(x, self.tau(x, sigma))

    def weights(self, x: Tensor, sigma: Sigma) -> Tensor:
        """Dense posterior weights over the noisy items, (B, n)."""
        return self.noisy.weights(x, self.tau(x, sigma))

    def log_density(self, x: Tensor, sigma: Sigma) -> Tensor:
        """Log density of ``x_t = y + tau z`` (the model's noisy marginal at ``sigma``), (B,)."""
        return self.noisy.log_density(x, self.tau(x, sigma))

    def score(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``grad log p(x) = (E[y | x] - x) / tau^2 = (D(x) - x) / sigma^2``."""
        tau = self.tau(x, sigma)
        p = self.noisy.posterior64(x, tau)
        return ((p.mean - x.to(torch.float64)) / expand_like(tau.square(), x)).to(x.dtype)
