"""Gaussian mixtures in closed form: the exact population denoiser of a GMM prior.

For ``x0 ~ sum_k pi_k N(mu_k, Sigma_k)`` the noisy marginal is ``sum_k pi_k N(mu_k, Sigma_k + sigma^2 I)``;
with responsibilities ``r_k(x) = softmax_k(log pi_k + log N(x; mu_k, Sigma_k + sigma^2 I))`` (log space)

    D(x) = sum_k r_k(x) D_k(x),     score(x) = sum_k r_k(x) score_k(x),

``D_k``, ``score_k`` the per-component Wiener forms of :mod:`theory.gaussian`.

Theory: docs/THEORY.md §2.3."""
from __future__ import annotations

import torch
from torch import Tensor

from theory.denoiser import Sigma, check_positive_int
from theory.gaussian import Gaussians, check_cov, check_mean, flat_query


class GMMDenoiser:
    """Exact denoiser for ``sum_k weights[k] N(means[k], covs[k])``: ``weights`` (K,), ``means`` (K, *item_shape),
    ``covs`` (K, d, d) full covariances. Outputs in the query's dtype; samples in ``means``' dtype."""

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor) -> None:
        check_mean(means, "means")
        if means.ndim < 2:
            raise ValueError(f"means must have shape (K, *item_shape), got {tuple(means.shape)}")
        k = means.shape[0]
        w = torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or not bool(torch.isfinite(w).all()) or not bool((w > 0).all()) \
                or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be a ({k},) tensor of positive values summing to 1 (to 1e-6), got {weights!r}")
        self.item_shape = tuple(means.shape[1:])
        self.d = means[0].numel()
        self.dtype = means.dtype
        if not torch.is_tensor(covs) or covs.ndim != 3 or covs.shape[0] != k:
            raise ValueError(f"covs must have shape ({k}, {self.d}, {self.d}), got "
                             f"{tuple(covs.shape) if torch.is_tensor(covs) else type(covs).__name__}")
        lam, vecs = check_cov(covs, self.d, "covs")
        self.log_weights = torch.log(w / w.sum())
        self.gaussians = Gaussians(means.reshape(k, -1).to(torch.float64), lam, vecs)

    @property
    def weights(self) -> Tensor:
        return self.log_weights.exp()

    def _log_joint(self, x: Tensor, sigma: Sigma) -> tuple[Tensor, Tensor, Tensor]:
        """``(log pi_k + log N_k(x), coordinates, sigma^2)`` in float64."""
        x64, s2 = flat_query(x, sigma, self.item_shape)
        g = self.gaussians.to(x.device)
        c = g.coords(x64)
        return self.log_weights.to(x.device) + g.log_prob(c, s2), c, s2

    def responsibilities(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``P(component k | x)``, shape (B, K)."""
        return torch.softmax(self._log_joint(x, sigma)[0], dim=1).to(x.dtype)

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        lj, c, s2 = self._log_joint(x, sigma)
        d = torch.einsum("bk,bkd->bd", torch.softmax(lj, dim=1), self.gaussians.to(x.device).mean_of(c, s2))
        return d.to(x.dtype).reshape(x.shape)

    def log_density(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``log sum_k pi_k N(x; mu_k, Sigma_k + sigma^2 I)``, shape (B,)."""
        return torch.logsumexp(self._log_joint(x, sigma)[0], dim=1).to(x.dtype)

    def score(self, x: Tensor, sigma: Sigma) -> Tensor:
        lj, c, s2 = self._log_joint(x, sigma)
        g = torch.einsum("bk,bkd->bd", torch.softmax(lj, dim=1), self.gaussians.to(x.device).score_of(c, s2))
        return g.to(x.dtype).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """``n`` draws ``(n, *item_shape)`` (and their component labels (n,) if ``return_labels``)."""
        labels = torch.multinomial(self.weights, check_positive_int(n, "n"), replacement=True, generator=generator)
        x = self.gaussians.sample(labels, generator).to(self.dtype).reshape(n, *self.item_shape)
        return (x, labels) if return_labels else x
