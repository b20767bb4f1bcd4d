"""AmbientDenoiser: pointwise minimizer of the ambient loss, population limit, errors below sigma_n."""
from __future__ import annotations

import math

import pytest
import torch

from theory import AmbientDenoiser, EmpiricalDenoiser, GaussianDenoiser
from theory.diagnostics import diagnose


@pytest.mark.parametrize("sigma", [0.31, 0.5, 2.0, 40.0])
def test_minimises_the_ambient_loss_pointwise(sigma):
    """D(x) = argmin_f sum_i w_i ||a f + (1 - a) x - y_i||^2, w_i the posterior of y_i given x_t = x,
    from the normal equations with an independent brute-force posterior."""
    g = torch.Generator().manual_seed(0)
    sigma_n = 0.3
    y = torch.randn(12, 3, generator=g, dtype=torch.float64)
    x = y[:5] + sigma * torch.randn(5, 3, generator=g, dtype=torch.float64)
    tau2 = sigma ** 2 - sigma_n ** 2
    a = tau2 / sigma ** 2
    logits = -((x[:, None] - y[None]) ** 2).sum(-1) / (2 * tau2)
    w = torch.softmax(logits, 1)
    # Normal equations of the weighted least squares in f: a^2 f = a sum_i w_i (y_i - (1 - a) x).
    f = (w @ y - (1 - a) * x) / a
    den = AmbientDenoiser(y, sigma_n)
    torch.testing.assert_close(den(x, sigma), f, rtol=1e-9, atol=1e-9)
    # The loss at D is no larger than at nearby perturbations (it is the minimizer).
    def loss(v):
        return (w[..., None] * (a * v[:, None] + (1 - a) * x[:, None] - y[None]) ** 2).sum((1, 2))
    base = loss(den(x, sigma))
    for _ in range(5):
        assert bool((loss(den(x, sigma) + 1e-3 * torch.randn(5, 3, generator=g, dtype=torch.float64)) > base).all())
    post = den.posterior(x, sigma)
    torch.testing.assert_close(den.weights(x, sigma), w, rtol=1e-9, atol=1e-12)
    assert torch.equal(post.argmax, w.argmax(1))
    torch.testing.assert_close(den.noisy_mean(x, sigma), w @ y, rtol=1e-10, atol=1e-12)
    # Ambient identity E[y | x] = a D + (1 - a) x, and Tweedie for the ambient marginal.
    torch.testing.assert_close(a * den(x, sigma) + (1 - a) * x, w @ y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(den.score(x, sigma), (den(x, sigma) - x) / sigma ** 2, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(den.log_density(x, sigma), EmpiricalDenoiser(y).log_density(x, math.sqrt(tau2)))


def test_population_limit_is_the_clean_denoiser():
    """Noisy items from N(mu, Sigma + sigma_n^2 I): with many items the ambient optimum approaches the
    clean Gaussian denoiser at sigma (the whole point of the double-Tweedie loss), within Monte Carlo error."""
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    sigma_n, sigma = 0.5, 1.2
    clean = GaussianDenoiser(mu, cov)
    y = clean.sample(40000, g) + sigma_n * torch.randn(40000, 2, generator=g, dtype=torch.float64)
    x = clean.sample(16, g) + sigma * torch.randn(16, 2, generator=g, dtype=torch.float64)
    err = (AmbientDenoiser(y, sigma_n)(x, sigma) - clean(x, sigma)).abs().max()
    noisy_only = (EmpiricalDenoiser(y)(x, sigma) - clean(x, sigma)).abs().max()
    assert err < 0.06 < noisy_only


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_and_dtype(dtype):
    g = torch.Generator().manual_seed(2)
    y = torch.randn(30, 2, 2, generator=g).to(dtype)
    den = AmbientDenoiser(y, 1e-4)
    for s in torch.logspace(-3.9, 4, 8).tolist():
        x = y[:3] + s * torch.randn(3, 2, 2, generator=g).to(dtype)
        for v in (den(x, s), den.score(x, s), den.log_density(x, s)):
            assert v.dtype == dtype and bool(torch.isfinite(v).all())


def test_bad_input():
    y = torch.randn(4, 3)
    den = AmbientDenoiser(y, 0.5)
    bad = [
        (lambda: AmbientDenoiser(y, 0.0), "sigma_n"),
        (lambda: AmbientDenoiser(y, math.nan), "sigma_n"),
        (lambda: AmbientDenoiser(torch.empty(0, 3), 0.5), "data"),
        (lambda: den(torch.randn(2, 3), 0.5), "sigma"),
        (lambda: den(torch.randn(2, 3), 0.2), "sigma"),
        (lambda: den.posterior(torch.randn(2, 3), torch.tensor([1.0, 0.4])), "sigma"),
        (lambda: den(torch.randn(2, 4), 1.0), "x"),
        (lambda: den.weights(torch.randn(2, 3), -1.0), "sigma"),
    ]
    for call, name in bad:
        with pytest.raises(ValueError, match=name):
            call()


def test_necessity_is_negative_and_diverges_just_above_sigma_n():
    """What the demo report says of M_ambient (§2.4, §3.2): the ambient optimum sees only noisy copies, and
    D = E[y | x] + (sigma_n^2 / tau^2)(E[y | x] - x) overshoots by a gain ~ 1 / (sigma - sigma_n), so its
    training loss on the clean items exceeds the generalizer's (M < 0) and grows without bound as
    sigma -> sigma_n+ (about 100x per 10x closer: loss ~ gain^2)."""
    g = torch.Generator().manual_seed(3)
    pop = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    train, test = pop.sample(50, g), pop.sample(50, g)
    ambient = AmbientDenoiser(train + torch.randn(train.shape, generator=g, dtype=torch.float64), 1.0)
    diag = diagnose(train, test, pop, [1.001, 1.01, 1.1], ambient=ambient, num_items=50)
    amb = diag[diag.denoiser == "ambient"].set_index("sigma")
    gen = diag[diag.denoiser == "generalizing"].set_index("sigma")
    assert bool((amb.loss_train > gen.loss_train).all()) and bool((amb.necessity < 0).all())
    assert amb.necessity.is_monotonic_increasing  # in sigma: ever more negative towards sigma_n
    assert 30 < amb.loss_train[1.001] / amb.loss_train[1.01] < 300
