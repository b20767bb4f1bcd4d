"""Property tests of the identities of docs/THEORY.md §1 (Tweedie, Jacobian, error, tower, limits, equivariance,
convex hull) and §2.4 (ambient) on random small problems (float64).

Sigma is drawn log-uniformly over [1e-3, 1e3]; data are standard normal, so both the memorizing and the
averaging regimes are visited.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import AmbientDenoiser, EmpiricalDenoiser, GMMDenoiser, GaussianDenoiser

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)
log_sigma = st.floats(math.log(1e-3), math.log(1e3))
seeds = st.integers(0, 2 ** 31 - 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spd(d: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=g, dtype=F64)
    return a @ a.T / d + 0.3 * torch.eye(d, dtype=F64)


def _problem(kind: str, seed: int, n: int, d: int):
    """A denoiser of the given kind on random parameters, and its training items (or component means)."""
    g = _gen(seed)
    if kind == "empirical":
        data = torch.randn(n, d, generator=g, dtype=F64)
        return EmpiricalDenoiser(data, chunk_size=3, exact_top=2), data
    if kind == "gaussian":
        mu = torch.randn(d, generator=g, dtype=F64)
        return GaussianDenoiser(mu, _spd(d, g)), mu[None]
    k = min(n, 3)
    w = torch.rand(k, generator=g, dtype=F64) + 0.1
    means = 2 * torch.randn(k, d, generator=g, dtype=F64)
    return GMMDenoiser(w / w.sum(), means, torch.stack([_spd(d, g) for _ in range(k)])), means


def _query(data: torch.Tensor, sigma: float, g: torch.Generator, b: int = 3) -> torch.Tensor:
    idx = torch.randint(0, data.shape[0], (b,), generator=g)
    return data[idx] + sigma * torch.randn(b, data.shape[1], generator=g, dtype=F64)


def _posterior_cov(den, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``Cov[x0 | x]`` for one query ``x`` (1, d), computed without autograd."""
    if isinstance(den, EmpiricalDenoiser):
        w, data = den.weights(x, sigma)[0], den.data
        m = w @ data
        return (w[:, None] * data).T @ data - torch.outer(m, m)
    if isinstance(den, GaussianDenoiser):
        return den.posterior_cov(sigma)
    r = den.responsibilities(x, sigma)[0]
    parts = [GaussianDenoiser(mu, cov) for mu, cov in zip(den.gaussians.mean, _covs(den))]
    means = torch.stack([p(x, sigma)[0] for p in parts])
    second = sum(r[k] * (parts[k].posterior_cov(sigma) + torch.outer(means[k], means[k])) for k in range(len(parts)))
    m = r @ means
    return second - torch.outer(m, m)


def _covs(den: GMMDenoiser) -> torch.Tensor:
    g = den.gaussians
    return torch.einsum("kij,kj,klj->kil", g.vecs, g.lam, g.vecs)


KINDS = ["empirical", "gaussian", "gmm"]


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(seed=seeds, n=st.integers(1, 7), d=st.integers(1, 4), ls=log_sigma)
def test_tweedie_autograd_and_finite_differences(kind, seed, n, d, ls):
    sigma = math.exp(ls)
    den, data = _problem(kind, seed, n, d)
    x = _query(data, sigma, _gen(seed + 1)).requires_grad_(True)
    score = den.score(x.detach(), sigma)
    grad, = torch.autograd.grad(den.log_density(x, sigma).sum(), x)
    scale = score.abs().max() + 1.0 / sigma
    assert (grad - score).abs().max() <= 1e-8 * scale
    torch.testing.assert_close(score, (den(x.detach(), sigma) - x.detach()) / sigma ** 2, rtol=1e-8, atol=1e-8 * float(scale))
    # Fourth-order central differences of log p along each coordinate.
    h = 1e-3 * sigma
    fd = torch.empty_like(score)
    for j in range(d):
        e = torch.zeros_like(x)
        e[:, j] = h
        f = [den.log_density(x.detach() + c * e, sigma) for c in (-2, -1, 1, 2)]
        fd[:, j] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    assert (fd - score).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(seed=seeds, n=st.integers(1, 7), d=st.integers(1, 4), ls=log_sigma)
def test_jacobian_is_posterior_covariance(kind, seed, n, d, ls):
    sigma = math.exp(ls)
    den, data = _problem(kind, seed, n, d)
    x = _query(data, sigma, _gen(seed + 2), b=1)
    jac = torch.autograd.functional.jacobian(lambda v: den(v, sigma), x).reshape(d, d)
    cov = _posterior_cov(den, x, sigma)
    scale = cov.abs().max() / sigma ** 2 + 1e-12
    assert (jac - cov / sigma ** 2).abs().max() <= 1e-7 * scale + 1e-10
    assert (jac - jac.T).abs().max() <= 1e-7 * scale + 1e-10
    assert torch.linalg.eigvalsh(0.5 * (jac + jac.T)).min() >= -1e-7 * scale - 1e-10


def test_mse_equals_sigma2_trace_jacobian_monte_carlo():
    """E||D - x0||^2 = sigma^2 E tr J: Gaussian prior (tr J exact, constant) and empirical prior (tr J from
    the posterior covariance), the left side by Monte Carlo within 4 standard errors."""
    g = _gen(11)
    sigma, m = 0.8, 20000
    gauss = GaussianDenoiser(torch.zeros(3, dtype=F64), _spd(3, g))
    x0 = gauss.sample(m, g)
    err = ((gauss(x0 + sigma * torch.randn(m, 3, generator=g, dtype=F64), sigma) - x0) ** 2).sum(1)
    tr = torch.trace(torch.autograd.functional.jacobian(lambda v: gauss(v, sigma), x0[:1]).reshape(3, 3))
    assert abs(err.mean() - sigma ** 2 * tr) < 4 * err.std() / math.sqrt(m)
    data = torch.randn(6, 2, generator=g, dtype=F64)
    emp = EmpiricalDenoiser(data)
    x0 = data[torch.randint(0, 6, (m,), generator=g)]
    x = x0 + sigma * torch.randn(m, 2, generator=g, dtype=F64)
    err = ((emp(x, sigma) - x0) ** 2).sum(1)
    w = emp.weights(x, sigma)
    tr_cov = w @ (data ** 2).sum(1) - (emp(x, sigma) ** 2).sum(1)
    diff = err - tr_cov
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(m)


@SETTINGS
@given(seed=seeds, n=st.integers(1, 7), d=st.integers(1, 4), ls=log_sigma, frac=st.floats(0.05, 0.95))
def test_ambient_identity(seed, n, d, ls, frac):
    sigma = math.exp(ls)
    sigma_n = frac * sigma
    g = _gen(seed)
    y = torch.randn(n, d, generator=g, dtype=F64)
    x = _query(y, sigma, g)
    den = AmbientDenoiser(y, sigma_n)
    a = 1 - (sigma_n / sigma) ** 2
    expect = EmpiricalDenoiser(y)(x, math.sqrt(sigma ** 2 - sigma_n ** 2))
    assert (a * den(x, sigma) + (1 - a) * x - expect).abs().max() <= 1e-9 * (1 + x.abs().max())


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), ls=log_sigma, ratio=st.floats(0.05, 0.95))
def test_tower_property_gaussian(seed, d, ls, ratio):
    """D(x_s, s) = E[D(x_s', s') | x_s] for s' < s: D is affine, and x_s' | x_s is the Wiener posterior of
    the prior N(mu, Sigma + s'^2 I) at noise sqrt(s^2 - s'^2)."""
    s = math.exp(ls)
    s_small = ratio * s
    g = _gen(seed)
    mu, cov = torch.randn(d, generator=g, dtype=F64), _spd(d, g)
    x = mu + s * torch.randn(3, d, generator=g, dtype=F64)
    inner = GaussianDenoiser(mu, cov + s_small ** 2 * torch.eye(d, dtype=F64))(x, math.sqrt(s ** 2 - s_small ** 2))
    lhs, rhs = GaussianDenoiser(mu, cov)(x, s), GaussianDenoiser(mu, cov)(inner, s_small)
    assert (lhs - rhs).abs().max() <= 1e-9 * (1 + x.abs().max())


def test_tower_property_empirical_monte_carlo():
    """Sample x_s' from its posterior given x_s under the empirical prior (item i with weight w_i, then
    N(x_i + (s'^2/s^2)(x_s - x_i), s'^2 (1 - s'^2/s^2) I)) and average D(x_s', s')."""
    g = _gen(12)
    data = torch.randn(5, 2, generator=g, dtype=F64)
    den = EmpiricalDenoiser(data)
    s, s_small, m = 0.9, 0.5, 40000
    x = data[:2] + s * torch.randn(2, 2, generator=g, dtype=F64)
    r = s_small ** 2 / s ** 2
    for b in range(2):
        items = data[torch.multinomial(den.weights(x[b:b + 1], s)[0], m, replacement=True, generator=g)]
        xs = items + r * (x[b] - items) + s_small * math.sqrt(1 - r) * torch.randn(m, 2, generator=g, dtype=F64)
        inner = den(xs, s_small)
        se = inner.std(0) / math.sqrt(m)
        assert bool(((inner.mean(0) - den(x[b:b + 1], s)[0]).abs() < 4 * se + 1e-12).all())


@SETTINGS
@given(seed=seeds, n=st.integers(2, 7), d=st.integers(1, 4))
def test_limits_empirical(seed, n, d):
    g = _gen(seed)
    data = torch.randn(n, d, generator=g, dtype=F64)
    x = 2 * torch.randn(4, d, generator=g, dtype=F64)
    den = EmpiricalDenoiser(data)
    sq = torch.cdist(x, data) ** 2
    two = sq.topk(2, dim=1, largest=False).values
    sigma = 1e-3
    clear = (two[:, 1] - two[:, 0]) / (2 * sigma ** 2) > 60  # nearest item unique by e^-60
    torch.testing.assert_close(den(x, sigma)[clear], data[sq.argmin(1)][clear], rtol=0, atol=1e-12)
    _assert_converges_to_mean(den, x, data.mean(0))


def _assert_converges_to_mean(den, x: torch.Tensor, mean: torch.Tensor) -> None:
    """sigma -> inf: ||D - mean|| = c(x) / sigma^2 + O(sigma^-4), so it shrinks 100-fold from 1e3 to 1e4."""
    e3, e4 = ((den(x, s) - mean).norm(dim=1) for s in (1e3, 1e4))
    assert bool((e3 < 1e-4 * (1 + x.norm(dim=1))).all())
    assert bool((e4 <= 0.0102 * e3 + 1e-13).all())


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4))
def test_limits_gaussian_and_gmm(seed, d):
    g = _gen(seed)
    gauss, _ = _problem("gaussian", seed, 1, d)
    gmm, means = _problem("gmm", seed, 3, d)
    x = 2 * torch.randn(4, d, generator=g, dtype=F64)
    torch.testing.assert_close(gauss(x, 1e-4), x, rtol=0, atol=1e-6)
    torch.testing.assert_close(gmm(x, 1e-4), x, rtol=0, atol=1e-6)
    _assert_converges_to_mean(gauss, x, gauss.mean)
    _assert_converges_to_mean(gmm, x, gmm.weights @ means)


def _transform(den, kind: str, q: torch.Tensor, b: torch.Tensor, c: float):
    """The same denoiser for the data mapped by v -> c Q v + b."""
    if kind == "empirical":
        return EmpiricalDenoiser(c * den.data @ q.T + b)
    if kind == "gaussian":
        return GaussianDenoiser(c * q @ den.mean + b, c ** 2 * q @ den.cov @ q.T)
    return GMMDenoiser(den.weights, c * den.gaussians.mean @ q.T + b, c ** 2 * q @ _covs(den) @ q.T)


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(seed=seeds, n=st.integers(1, 7), d=st.integers(1, 4), ls=log_sigma, lc=st.floats(math.log(0.1), math.log(10)))
def test_isometry_and_scaling_equivariance(kind, seed, n, d, ls, lc):
    sigma, c = math.exp(ls), math.exp(lc)
    den, data = _problem(kind, seed, n, d)
    g = _gen(seed + 3)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))[0]
    b = torch.randn(d, generator=g, dtype=F64)
    x = _query(data, sigma, g)
    moved = _transform(den, kind, q, b, 1.0)
    scale = 1 + x.abs().max() + data.abs().max()
    assert (moved(x @ q.T + b, sigma) - (den(x, sigma) @ q.T + b)).abs().max() <= 1e-8 * scale
    scaled = _transform(den, kind, torch.eye(d, dtype=F64), torch.zeros(d, dtype=F64), c)
    assert (scaled(c * x, c * sigma) - c * den(x, sigma)).abs().max() <= 1e-8 * c * scale


@SETTINGS
@given(seed=seeds, n=st.integers(1, 9), d=st.integers(1, 4), ls=log_sigma)
def test_empirical_in_convex_hull(seed, n, d, ls):
    sigma = math.exp(ls)
    g = _gen(seed)
    data = torch.randn(n, d, generator=g, dtype=F64)
    den = EmpiricalDenoiser(data, chunk_size=2, exact_top=1)
    x = 3 * torch.randn(5, d, generator=g, dtype=F64)
    w = den.weights(x, sigma)
    assert bool((w >= 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(5, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(den(x, sigma), w @ data, rtol=1e-9, atol=1e-9)
    post = den.posterior(x, sigma)
    assert bool((post.entropy >= 0).all()) and bool((post.entropy <= math.log(n) + 1e-9).all())


@pytest.mark.parametrize("d", [16, 64])
def test_collapse_at_sigma_c(d, capsys):
    """Isotropic unit-variance data, n = 1000: sigma_C^2 = 1 / (n^(2/d) - 1). For x = x_i + sigma z the mean
    weight on the generating item is ~1 at sigma_C / 2, between 0.4 and 0.75 at sigma_C, < 0.2 at 2 sigma_C."""
    n, b = 1000, 400
    g = _gen(d)
    data = torch.randn(n, d, generator=g, dtype=F64)
    den = EmpiricalDenoiser(data)
    sigma_c = math.sqrt(1 / (n ** (2 / d) - 1))
    idx = torch.arange(b)
    measured = {}
    for f in (0.5, 1.0, 2.0):
        sigma = f * sigma_c
        x = data[idx] + sigma * torch.randn(b, d, generator=g, dtype=F64)
        measured[f] = den.weights(x, sigma)[idx, idx].mean().item()
    with capsys.disabled():
        print(f"\ncollapse d={d} n={n} sigma_C={sigma_c:.4f}: mean weight on generating item "
              + ", ".join(f"{f:g} sigma_C -> {v:.4f}" for f, v in measured.items()))
    assert measured[0.5] > 0.95
    assert 0.4 < measured[1.0] < 0.75
    assert measured[2.0] < 0.2
