"""The sympy derivations against the numeric denoisers (independent routes to the same closed forms)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from theory import AmbientDenoiser, EmpiricalDenoiser, GMMDenoiser, GaussianDenoiser, symbolic

RNG = np.random.default_rng(0)
POINTS = [(float(x), float(s)) for x, s in zip(RNG.normal(0, 2, 6), np.exp(RNG.uniform(np.log(1e-2), np.log(1e2), 6)))]
# The symbolic empirical forms are plain ratios of exponentials (no log-sum-exp): keep them off underflow.
COARSE = [(x, max(s, 0.2)) for x, s in POINTS]


@pytest.mark.parametrize("x,sigma", POINTS)
def test_gaussian_1d(x, sigma):
    f = symbolic.gaussian_posterior_mean_1d()
    den = GaussianDenoiser(torch.tensor([0.7], dtype=torch.float64), torch.tensor([[2.5]], dtype=torch.float64))
    assert f(x, sigma, 0.7, 2.5) == pytest.approx(den(torch.tensor([[x]], dtype=torch.float64), sigma).item(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_gaussian_small_d(d):
    f = symbolic.gaussian_posterior_mean(d)
    g = torch.Generator().manual_seed(d)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.2 * torch.eye(d, dtype=torch.float64)
    mu, x = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(3, d, generator=g, dtype=torch.float64)
    den = GaussianDenoiser(mu, cov)
    for sigma in (0.05, 1.0, 20.0):
        expect = den(x, sigma)
        for i in range(3):
            got = np.array(f(x[i].tolist(), mu.tolist(), cov.tolist(), sigma), dtype=float)
            np.testing.assert_allclose(got, expect[i].numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("x,sigma", POINTS)
def test_mixture_1d_integration_tweedie_and_gmm(x, sigma):
    params = (0.35, -1.5, 0.4, 2.0, 1.3)
    by_bayes = symbolic.mixture_posterior_mean_1d()(x, sigma, *params)
    by_tweedie = symbolic.tweedie_mixture_1d()(x, sigma, *params)
    p, m1, v1, m2, v2 = params
    den = GMMDenoiser(torch.tensor([p, 1 - p], dtype=torch.float64), torch.tensor([[m1], [m2]], dtype=torch.float64),
                      torch.tensor([[[v1]], [[v2]]], dtype=torch.float64))
    numeric = den(torch.tensor([[x]], dtype=torch.float64), sigma).item()
    assert by_bayes == pytest.approx(numeric, rel=1e-9, abs=1e-10)
    assert by_tweedie == pytest.approx(numeric, rel=1e-9, abs=1e-10)


@pytest.mark.parametrize("x,sigma", COARSE)
def test_tweedie_empirical(x, sigma):
    ys = [-1.0, 0.2, 1.7]
    den = EmpiricalDenoiser(torch.tensor(ys, dtype=torch.float64)[:, None])
    expect = den(torch.tensor([[x]], dtype=torch.float64), sigma).item()
    assert symbolic.tweedie_empirical_1d(3)(x, sigma, ys) == pytest.approx(expect, rel=1e-9, abs=1e-10)


@pytest.mark.parametrize("x,sigma", [(x, 0.5 + s) for x, s in COARSE])
def test_ambient_minimizer_empirical(x, sigma):
    ys = [-0.8, 0.3, 1.1]
    f = symbolic.ambient_minimizer_empirical_1d(3)
    den = AmbientDenoiser(torch.tensor(ys, dtype=torch.float64)[:, None], 0.5)
    expect = den(torch.tensor([[x]], dtype=torch.float64), sigma).item()
    assert f(x, sigma, 0.5, ys) == pytest.approx(expect, rel=1e-8, abs=1e-9)


def test_ambient_minimizer_gaussian_is_clean_posterior_mean():
    f, residual = symbolic.ambient_minimizer_gaussian()
    assert residual == 0
    clean = symbolic.gaussian_posterior_mean_1d()
    for x, tau in POINTS:
        sigma = float(np.hypot(tau, 0.4))
        assert f(x, tau, 0.4, 0.2, 1.7) == pytest.approx(clean(x, sigma, 0.2, 1.7), rel=1e-10, abs=1e-12)
