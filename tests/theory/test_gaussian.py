"""GaussianDenoiser and GMMDenoiser against linear-algebra and scipy references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from theory import GMMDenoiser, GaussianDenoiser


def _cov(d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T / (rank or d) + (0 if rank else 0.1) * torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("sigma", [1e-2, 0.5, 3.0])
def test_wiener_against_solve_and_scipy(sigma):
    g = torch.Generator().manual_seed(0)
    mean, cov = torch.randn(2, 3, generator=g, dtype=torch.float64), _cov(6, 1)
    den = GaussianDenoiser(mean, cov)
    x = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    xf, mf = x.reshape(5, 6), mean.reshape(6)
    k = cov + sigma ** 2 * torch.eye(6, dtype=torch.float64)
    expect = mf + torch.linalg.solve(k, (xf - mf).T).T @ cov
    torch.testing.assert_close(den(x, sigma).reshape(5, 6), expect, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(den.score(x, sigma).reshape(5, 6), -torch.linalg.solve(k, (xf - mf).T).T, rtol=1e-9, atol=1e-9)
    logp = multivariate_normal(mf.numpy(), k.numpy()).logpdf(xf.numpy())
    np.testing.assert_allclose(den.log_density(x, sigma).numpy(), logp, rtol=1e-10)
    post = cov - cov @ torch.linalg.solve(k, cov)
    torch.testing.assert_close(den.posterior_cov(sigma), post, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(den.posterior_cov(torch.tensor([sigma, 1.0]))[0], post, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(den.cov, cov)
    torch.testing.assert_close(den.mean, mean)


def test_fit_and_sample():
    g = torch.Generator().manual_seed(2)
    data = torch.randn(400, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    den = GaussianDenoiser.fit(data, ridge=0.5)
    np.testing.assert_allclose(den.cov.numpy(), np.cov(data.numpy().T, bias=True) + 0.5 * np.eye(4), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(den.mean.numpy(), data.numpy().mean(0), rtol=1e-12, atol=1e-12)
    s = den.sample(20000, torch.Generator().manual_seed(3))
    assert s.shape == (20000, 4) and s.dtype == torch.float64
    # Monte Carlo: sample covariance within ~5 standard errors of the truth.
    err = (torch.cov(s.T) - den.cov).abs().max() / den.cov.abs().max()
    assert err < 0.05
    torch.testing.assert_close(den.sample(3, torch.Generator().manual_seed(9)), den.sample(3, torch.Generator().manual_seed(9)))


def test_singular_cov_and_sigma_range():
    """Rank-2 covariance in d = 5: finite everywhere in both dtypes; D projects onto the mean + range."""
    cov = _cov(5, 4, rank=2)
    den = GaussianDenoiser(torch.zeros(5), cov)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 5, generator=torch.Generator().manual_seed(5)).to(dtype)
        for s in torch.logspace(-4, 4, 9).tolist():
            for v in (den(x, s), den.log_density(x, s), den.score(x, s)):
                assert v.dtype == dtype and bool(torch.isfinite(v).all())
    lam, vecs = torch.linalg.eigh(cov)
    null = vecs[:, lam < 1e-9]
    assert (den(torch.randn(4, 5, dtype=torch.float64), 1e-3) @ null).abs().max() < 1e-12


def _gmm(seed: int, k: int = 3, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return w / w.sum(), 2 * torch.randn(k, d, generator=g, dtype=torch.float64), torch.stack([_cov(d, seed + i) for i in range(k)])


@pytest.mark.parametrize("sigma", [1e-2, 0.7, 5.0])
def test_gmm_against_scipy_and_wiener(sigma):
    w, mu, covs = _gmm(6)
    den = GMMDenoiser(w, mu, covs)
    x = 2 * torch.randn(6, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    dens = np.stack([multivariate_normal(mu[k].numpy(), (covs[k] + sigma ** 2 * torch.eye(4, dtype=torch.float64)).numpy())
                     .logpdf(x.numpy()) for k in range(3)], 1) + np.log(w.numpy())
    resp = np.exp(dens - dens.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    np.testing.assert_allclose(den.responsibilities(x, sigma).numpy(), resp, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(den.log_density(x, sigma).numpy(), np.logaddexp.reduce(dens, axis=1), rtol=1e-10)
    expect = sum(torch.from_numpy(resp[:, k:k + 1]) * GaussianDenoiser(mu[k], covs[k])(x, sigma) for k in range(3))
    torch.testing.assert_close(den(x, sigma), expect, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(den.score(x, sigma), (den(x, sigma) - x) / sigma ** 2, rtol=1e-7, atol=1e-7)


def test_gmm_one_component_is_gaussian_and_sampling():
    w, mu, covs = _gmm(8)
    one = GMMDenoiser(torch.ones(1), mu[:1], covs[:1])
    x = torch.randn(4, 4, dtype=torch.float64)
    torch.testing.assert_close(one(x, 0.4), GaussianDenoiser(mu[0], covs[0])(x, 0.4))
    den = GMMDenoiser(w, mu, covs)
    s, labels = den.sample(30000, torch.Generator().manual_seed(10), return_labels=True)
    assert s.shape == (30000, 4) and labels.shape == (30000,)
    freq = torch.bincount(labels, minlength=3).double() / 30000
    assert (freq - w).abs().max() < 5 * math.sqrt(0.25 / 30000)
    for k in range(3):
        assert (s[labels == k].mean(0) - mu[k]).abs().max() < 0.1


def test_bad_input():
    cov = torch.eye(3)
    not_psd = torch.diag(torch.tensor([1.0, -0.5, 1.0]))
    not_sym = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    den = GaussianDenoiser(torch.zeros(3), cov)
    bad = [
        (lambda: GaussianDenoiser(torch.zeros(3), not_psd), "cov"),
        (lambda: GaussianDenoiser(torch.zeros(3), not_sym), "cov"),
        (lambda: GaussianDenoiser(torch.zeros(3), torch.eye(4)), "cov"),
        (lambda: GaussianDenoiser(torch.tensor([0.0, math.nan, 0.0]), cov), "mean"),
        (lambda: GaussianDenoiser(torch.zeros(3), cov * math.nan), "cov"),
        (lambda: GaussianDenoiser.fit(torch.empty(0, 3)), "data"),
        (lambda: GaussianDenoiser.fit(torch.randn(5, 3), ridge=-1.0), "ridge"),
        (lambda: den(torch.randn(2, 4), 1.0), "x"),
        (lambda: den(torch.randn(2, 3), 0.0), "sigma"),
        (lambda: den.posterior_cov(-1.0), "sigma"),
        (lambda: den.sample(0), "n"),
        (lambda: GMMDenoiser(torch.tensor([0.5, 0.6]), torch.zeros(2, 3), torch.stack([cov, cov])), "weights"),
        (lambda: GMMDenoiser(torch.tensor([1.5, -0.5]), torch.zeros(2, 3), torch.stack([cov, cov])), "weights"),
        (lambda: GMMDenoiser(torch.tensor([1.0]), torch.zeros(2, 3), torch.stack([cov, cov])), "weights"),
        (lambda: GMMDenoiser(torch.tensor([0.5, 0.5]), torch.zeros(2, 3), torch.stack([cov, not_psd])), "covs"),
        (lambda: GMMDenoiser(torch.tensor([0.5, 0.5]), torch.zeros(2, 3), cov), "covs"),
        (lambda: GMMDenoiser(torch.tensor([0.5, 0.5]), torch.zeros(2, 3), torch.stack([cov, cov]))(torch.randn(1, 2), 1.0), "x"),
    ]
    for call, name in bad:
        with pytest.raises(ValueError, match=name):
            call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gmm_finite_over_sigma_range(dtype):
    w, mu, covs = _gmm(12)
    den = GMMDenoiser(w, mu, covs)
    x = (3 * torch.randn(5, 4, generator=torch.Generator().manual_seed(13))).to(dtype)
    for s in torch.logspace(-4, 4, 9).tolist():
        for v in (den(x, s), den.log_density(x, s), den.score(x, s), den.responsibilities(x, s)):
            assert v.dtype == dtype and bool(torch.isfinite(v).all())
    ref = GMMDenoiser(w, mu, covs)(x.double(), 0.3)
    torch.testing.assert_close(den(x, 0.3).double(), ref, rtol=1e-6, atol=1e-6)
