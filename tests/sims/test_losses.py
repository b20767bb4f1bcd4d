"""Losses: the EDM weight gives unit loss at initialisation, every loss is minimised by the Wiener filter on
Gaussian data, and the ambient loss equals ``a^2 E||D - E[x0 | x]||^2`` plus a constant (Monte Carlo)."""
from __future__ import annotations

import math

import pytest
import torch

from sims.losses import AmbientLoss, EDMLoss, EpsilonLoss, HybridAmbientLoss, edm_weight
from sims.noise_levels import EDMLogNormal, NoiseLevels

MEAN, SD = 0.5, 1.0  # the Gaussian data x0 ~ N(MEAN, SD^2) per coordinate


class Fixed:
    """Every draw at one level (a noise-level distribution for tests)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def sample(self, n, generator=None, device=None):
        return NoiseLevels(sigma=torch.full((n,), self.sigma, dtype=torch.float64, device=device))


def data(n: int, d: int = 1, seed: int = 0, sigma_n: float | None = None):
    g = torch.Generator().manual_seed(seed)
    x0 = MEAN + SD * torch.randn(n, d, generator=g, dtype=torch.float64)
    y = None if sigma_n is None else x0 + sigma_n * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x0, y


def wiener(sigma: float):
    """``E[x0 | x]`` for ``x0 ~ N(MEAN, SD^2)``, ``x = x0 + sigma z``."""
    return lambda x, s: (SD**2 * x + sigma**2 * MEAN) / (SD**2 + sigma**2)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 5.0, 100.0])
def test_edm_loss_is_one_at_initialisation(sigma):
    """With ``F = 0`` the preconditioned denoiser is ``c_skip x`` and ``lambda E||c_skip x - x0||^2 = 1``."""
    x0 = SD * torch.randn(100_000, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    c_skip = lambda x, s: SD**2 / (s[:, None] ** 2 + SD**2) * x  # noqa: E731
    loss = EDMLoss(Fixed(sigma), sigma_data=SD)(c_skip, x0, generator=torch.Generator().manual_seed(2))
    assert float(loss.mean()) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("alpha, beta", [(0.5, 0.2), (1.0, 0.0), (-0.3, 1.0)])
@pytest.mark.parametrize("weighting", ["edm", "x0"])
def test_ambient_loss_is_the_clean_error_scaled_by_a_squared(alpha, beta, weighting):
    """``E[w ||a D + (1 - a) x - y||^2] = w a^2 E||D - E[x0|x]||^2 + C``: compare two denoisers on common noise."""
    sigma, sigma_n, n = 1.5, 0.8, 400_000
    x0, y = data(n, sigma_n=sigma_n, seed=3)
    loss = HybridAmbientLoss(Fixed(sigma), sigma_n=sigma_n, sigma_data=SD, weighting=weighting)
    candidate = lambda x, s: alpha * x + beta  # noqa: E731
    diff = loss(candidate, x0, y, torch.Generator().manual_seed(4)) - loss(wiener(sigma), x0, y, torch.Generator().manual_seed(4))
    a = (sigma**2 - sigma_n**2) / sigma**2
    w = edm_weight(torch.tensor(sigma), SD).item() / (a**2 if weighting == "x0" else 1)
    # D - E[x0|x] = k (x - MEAN) + beta + (alpha - 1) MEAN ... as a function of x ~ N(MEAN, SD^2 + sigma^2)
    k, var_x = alpha - SD**2 / (SD**2 + sigma**2), SD**2 + sigma**2
    offset = alpha * MEAN + beta - MEAN
    expected = w * a**2 * (k**2 * var_x + offset**2)
    se = float(diff.std()) / math.sqrt(n)
    assert float(diff.mean()) == pytest.approx(expected, abs=5 * se + 1e-9)


def _fit_affine(loss, x0, y, seed: int) -> tuple[float, float]:
    """Minimise the mean loss over ``D(x) = alpha x + beta`` on fixed draws (the loss is quadratic)."""
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss(lambda x, s: theta[0] * x + theta[1], x0, y, torch.Generator().manual_seed(seed)).mean()
        value.backward()
        return value

    opt.step(closure)
    alpha, beta = theta.detach().tolist()
    return alpha, beta


@pytest.mark.parametrize("make_loss, sigma", [
    (lambda s: EDMLoss(Fixed(s), sigma_data=SD), 0.7),
    (lambda s: EpsilonLoss(Fixed(s)), 0.7),
    (lambda s: HybridAmbientLoss(Fixed(s), sigma_n=1.0, sigma_data=SD), 0.7),  # below sigma_n: clean branch
    (lambda s: HybridAmbientLoss(Fixed(s), sigma_n=1.0, sigma_data=SD), 2.0),  # above: ambient branch
    (lambda s: HybridAmbientLoss(Fixed(s), sigma_n=1.0, sigma_data=SD, weighting="x0"), 2.0),
    (lambda s: AmbientLoss(Fixed(s), sigma_n=1.0, sigma_data=SD), 3.0),
])
def test_every_loss_is_minimised_by_the_wiener_filter(make_loss, sigma):
    x0, y = data(200_000, sigma_n=1.0, seed=5)
    alpha, beta = _fit_affine(make_loss(sigma), x0, y, seed=6)
    assert alpha == pytest.approx(SD**2 / (SD**2 + sigma**2), abs=0.02)
    assert beta == pytest.approx(sigma**2 * MEAN / (SD**2 + sigma**2), abs=0.03)


def test_hybrid_is_the_edm_loss_at_or_below_sigma_n():
    x0, y = data(64, d=3, sigma_n=1.0)
    d = lambda x, s: 0.5 * x  # noqa: E731
    hybrid = HybridAmbientLoss(Fixed(0.4), sigma_n=1.0, sigma_data=SD)(d, x0, y, torch.Generator().manual_seed(0))
    edm = EDMLoss(Fixed(0.4), sigma_data=SD)(d, x0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hybrid, edm, rtol=0, atol=0)


def test_epsilon_loss_is_the_noise_prediction_error():
    x0, _ = data(32, d=5)
    d = lambda x, s: 0.3 * x + 0.1  # noqa: E731
    loss = EpsilonLoss(Fixed(2.0))(d, x0, generator=torch.Generator().manual_seed(9))
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9), dtype=x0.dtype)
    x = x0 + 2.0 * z
    torch.testing.assert_close(loss, ((x - d(x, None)) / 2.0 - z).square().mean(1))


def test_ambient_loss_trains_only_above_sigma_n_and_stays_finite():
    seen = []

    def d(x, s):
        seen.append(s)
        return torch.zeros_like(x)

    x0, y = data(4096, d=2, sigma_n=0.5)
    out = AmbientLoss(EDMLogNormal(), sigma_n=0.5)(d, x0.float(), y.float(), torch.Generator().manual_seed(0))
    assert out.shape == (4096,) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert bool((seen[0] > 0.5).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-4, 1.0, 1e4])
def test_losses_are_finite_over_the_sigma_range(dtype, sigma):
    x0, y = data(16, d=3, sigma_n=1e-5)
    x0, y = x0.to(dtype), y.to(dtype)
    d = lambda x, s: x / (1 + s[:, None] ** 2)  # noqa: E731
    for loss in [EDMLoss(Fixed(sigma)), EpsilonLoss(Fixed(sigma)), HybridAmbientLoss(Fixed(sigma), sigma_n=1e-5)]:
        assert bool(torch.isfinite(loss(d, x0, y)).all())


@pytest.mark.parametrize("call, match", [
    (lambda: HybridAmbientLoss(sigma_n=0.0), "sigma_n"),
    (lambda: HybridAmbientLoss(sigma_n=1.0, weighting="snr"), "weighting"),
    (lambda: HybridAmbientLoss(sigma_n=1.0)(lambda x, s: x, torch.zeros(4, 2)), "y .*must have x0's shape"),
    (lambda: HybridAmbientLoss(sigma_n=1.0)(lambda x, s: x, torch.zeros(4, 2), torch.zeros(4, 3)), "y .*must have"),
    (lambda: AmbientLoss(Fixed(0.5), sigma_n=1.0)(lambda x, s: x, torch.zeros(4, 2), torch.zeros(4, 2)), "sigma > sigma_n"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
