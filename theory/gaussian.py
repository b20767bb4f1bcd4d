"""Gaussian priors in closed form: the Wiener denoiser and the shared eigenbasis machinery.

For ``x0 ~ N(mu, Sigma)`` and ``x = x0 + sigma z``, with ``Sigma = U diag(lam) U^T`` and coordinates
``c = U^T (x - mu)``:

    D(x)         = mu + U (lam / (lam + sigma^2) * c)                 (Wiener filter)
    log p_sigma  = -1/2 sum_j [log(2 pi (lam_j + sigma^2)) + c_j^2 / (lam_j + sigma^2)]
    score        = -U (c / (lam + sigma^2))                            (= (D - x) / sigma^2)
    Cov[x0 | x]  = U diag(lam sigma^2 / (lam + sigma^2)) U^T            (= sigma^2 dD/dx)

One eigendecomposition (float64) at construction makes every ``sigma`` cheap, and these forms have no
cancellation for ``sigma`` anywhere in [1e-4, 1e4] (``lam = 0`` directions included).

Theory: docs/THEORY.md §2.2, §1.3."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from theory.denoiser import Sigma, check_batch, check_data, check_finite, check_positive_int
from theory.empirical import sigma64


def check_cov(cov: Tensor, d: int, name: str = "cov") -> tuple[Tensor, Tensor]:
    """Validate a batch ``(..., d, d)`` of symmetric PSD matrices; return float64 ``(eigenvalues, eigenvectors)``.

    Symmetry is checked to ``1e-8`` relative; eigenvalues must be ``>= -1e-10 * max|lam|``, and those with
    ``|lam| <= 1e-10 * max|lam|`` (rounding noise of a singular matrix) are set to 0.
    """
    if not torch.is_tensor(cov) or not cov.is_floating_point() or cov.shape[-2:] != (d, d):
        raise ValueError(f"{name} must be a floating-point tensor of shape (..., {d}, {d}), got "
                         f"{tuple(cov.shape) if torch.is_tensor(cov) else type(cov).__name__}")
    check_finite(cov, name)
    c = cov.to(torch.float64)
    scale = c.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)
    if not bool(((c - c.transpose(-2, -1)).abs() <= 1e-8 * scale).all()):
        raise ValueError(f"{name} must be symmetric (to 1e-8 relative)")
    lam, vecs = torch.linalg.eigh(0.5 * (c + c.transpose(-2, -1)))
    band = 1e-10 * lam.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    if not bool((lam >= -band).all()):
        raise ValueError(f"{name} must be positive semi-definite, smallest eigenvalue {lam.min().item():.3g}")
    return torch.where(lam.abs() <= band, torch.zeros_like(lam), lam), vecs


@dataclass(frozen=True)
class Gaussians:
    """``K`` Gaussians ``N(mean_k, U_k diag(lam_k) U_k^T)`` in float64: ``mean`` (K, d), ``lam`` (K, d), ``vecs`` (K, d, d)."""

    mean: Tensor
    lam: Tensor
    vecs: Tensor

    def coords(self, x: Tensor) -> Tensor:
        """``c[b, k] = U_k^T (x_b - mean_k)`` for flat float64 ``x`` (B, d); shape (B, K, d)."""
        return torch.einsum("kdj,bkd->bkj", self.vecs, x[:, None, :] - self.mean)

    def log_prob(self, c: Tensor, s2: Tensor) -> Tensor:
        """``log N(x; mean_k, Sigma_k + s2 I)`` (B, K) from coordinates ``c`` and per-item ``s2`` (B,)."""
        v = self.lam + s2[:, None, None]
        return -0.5 * (torch.log(2 * math.pi * v) + c.square() / v).sum(-1)

    def mean_of(self, c: Tensor, s2: Tensor) -> Tensor:
        """Per-component posterior means ``mean_k + U_k (lam / (lam + s2) c)``, shape (B, K, d)."""
        shrunk = self.lam / (self.lam + s2[:, None, None]) * c
        return self.mean + torch.einsum("kdj,bkj->bkd", self.vecs, shrunk)

    def score_of(self, c: Tensor, s2: Tensor) -> Tensor:
        """Per-component scores ``-U_k (c / (lam + s2))``, shape (B, K, d)."""
        return -torch.einsum("kdj,bkj->bkd", self.vecs, c / (self.lam + s2[:, None, None]))

    def to(self, device: torch.device) -> Gaussians:
        """The same Gaussians on ``device`` (self if already there; copies are cached)."""
        if self.mean.device == device:
            return self
        moved = self.__dict__.setdefault("_moved", {})
        if device not in moved:
            moved[device] = Gaussians(self.mean.to(device), self.lam.to(device), self.vecs.to(device))
        return moved[device]

    def sample(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        """One draw per entry of ``labels`` (n,) from component ``labels[i]``; float64 (n, d)."""
        z = torch.randn(labels.shape[0], self.lam.shape[1], generator=generator, dtype=torch.float64)
        return self.mean[labels] + torch.einsum("ndj,nj->nd", self.vecs[labels], self.lam[labels].sqrt() * z)


def flat_query(x: Tensor, sigma: Sigma, item_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Validate ``x``, ``sigma``; return flat float64 ``x`` (B, d) and ``sigma^2`` (B,) float64 on ``x``'s device."""
    check_batch(x, item_shape)
    s = sigma64(sigma, x)
    return x.reshape(x.shape[0], -1).to(torch.float64), s.square()


def check_mean(mean: Tensor, name: str = "mean") -> Tensor:
    if not torch.is_tensor(mean) or not mean.is_floating_point() or mean.numel() < 1:
        raise ValueError(f"{name} must be a non-empty floating-point tensor of the item shape")
    return check_finite(mean, name)


class GaussianDenoiser:
    """Exact denoiser for the prior ``N(mean, cov)``; ``mean`` has the item shape, ``cov`` is (d, d).

    Outputs come back in the query's dtype; samples in ``mean``'s dtype.
    """

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        check_mean(mean)
        self.item_shape = tuple(mean.shape)
        self.d = mean.numel()
        self.dtype = mean.dtype
        lam, vecs = check_cov(cov, self.d)
        self.gaussians = Gaussians(mean.reshape(1, -1).to(torch.float64), lam[None], vecs[None])

    @classmethod
    def fit(cls, data: Tensor, ridge: float = 0.0) -> GaussianDenoiser:
        """Maximum-likelihood fit: sample mean and ``(1/n) sum (x_i - mu)(x_i - mu)^T + ridge I``."""
        check_data(data)
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be a finite float >= 0, got {ridge!r}")
        flat = data.reshape(data.shape[0], -1).to(torch.float64)
        mu = flat.mean(0)
        cov = (flat - mu).T @ (flat - mu) / flat.shape[0] + ridge * torch.eye(flat.shape[1], dtype=torch.float64, device=flat.device)
        return cls(mu.reshape(data.shape[1:]).to(data.dtype), cov)

    @property
    def mean(self) -> Tensor:
        return self.gaussians.mean[0].reshape(self.item_shape)

    @property
    def cov(self) -> Tensor:
        g = self.gaussians
        return (g.vecs[0] * g.lam[0]) @ g.vecs[0].T

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        x64, s2 = flat_query(x, sigma, self.item_shape)
        g = self.gaussians.to(x.device)
        return g.mean_of(g.coords(x64), s2)[:, 0].to(x.dtype).reshape(x.shape)

    def log_density(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``log N(x; mean, cov + sigma^2 I)``, shape (B,)."""
        x64, s2 = flat_query(x, sigma, self.item_shape)
        g = self.gaussians.to(x.device)
        return g.log_prob(g.coords(x64), s2)[:, 0].to(x.dtype)

    def score(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``grad log p_sigma(x) = -(cov + sigma^2 I)^{-1} (x - mean)``."""
        x64, s2 = flat_query(x, sigma, self.item_shape)
        g = self.gaussians.to(x.device)
        return g.score_of(g.coords(x64), s2)[:, 0].to(x.dtype).reshape(x.shape)

    def posterior_cov(self, sigma: Sigma) -> Tensor:
        """``Cov[x0 | x] = U diag(lam sigma^2 / (lam + sigma^2)) U^T``: (d, d) for a float, (B, d, d) for (B,)."""
        s = torch.as_tensor(sigma, dtype=torch.float64)
        if s.ndim > 1 or not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
            raise ValueError(f"sigma must be a finite float > 0 or a (B,) tensor of them, got {sigma!r}")
        s2 = s.reshape(-1, 1).square()
        lam, vecs = self.gaussians.lam[0], self.gaussians.vecs[0]
        cov = torch.einsum("ij,bj,kj->bik", vecs, lam * s2 / (lam + s2), vecs)
        return cov[0] if s.ndim == 0 else cov

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``(n, *item_shape)`` from the prior."""
        labels = torch.zeros(check_positive_int(n, "n"), dtype=torch.long, device=self.gaussians.mean.device)
        return self.gaussians.sample(labels, generator).to(self.dtype).reshape(n, *self.item_shape)
