"""Samplers over exact denoisers: Heun converges at second order to the exact probability-flow map, every
sampler reproduces a Gaussian's moments, and the empirical denoiser's samples land on training items."""
from __future__ import annotations

import math

import pytest
import torch

from sims.samplers import ddpm_ancestral, edm_euler, edm_heun, edm_stochastic
from sims.schedules import DDPMSchedule, karras_sigmas
from theory import EmpiricalDenoiser, GaussianDenoiser

S0 = 0.7  # prior N(0, S0^2) of the 1D flow test


def _flow_error(sampler, steps: int) -> float:
    """Largest error against the exact PF-ODE map of N(0, S0^2): ``x(0) = x(s_max) S0 / sqrt(S0^2 + s_max^2)``."""
    noise = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
    sigmas = karras_sigmas(steps, sigma_min=0.002, sigma_max=80.0)
    out = sampler(lambda x, s: S0**2 * x / (S0**2 + torch.as_tensor(s) ** 2), noise, sigmas)
    # the last step returns D(x, sigma_min) (EDM), so compare with the exact map to sigma_min, then denoised
    s_min, s_max = float(sigmas[-2]), float(sigmas[0])
    exact_at_min = noise * s_max * math.sqrt((S0**2 + s_min**2) / (S0**2 + s_max**2))
    exact = S0**2 * exact_at_min / (S0**2 + s_min**2)
    return float((out - exact).abs().max())


def test_heun_converges_at_second_order_and_euler_at_first():
    heun = [_flow_error(edm_heun, n) for n in (32, 64, 128)]
    euler = [_flow_error(edm_euler, n) for n in (64, 128, 256)]
    assert heun[2] < 2e-3  # outputs span +-2.1
    assert all(3.5 < a / b < 4.8 for a, b in zip(heun, heun[1:])), heun
    assert all(1.6 < a / b < 2.6 for a, b in zip(euler, euler[1:])), euler


@pytest.fixture(scope="module")
def gaussian():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = a @ a.T / 4 + 0.05 * torch.eye(4, dtype=torch.float64)
    mean = torch.tensor([1.0, -0.5, 0.0, 2.0], dtype=torch.float64)
    return mean, cov, GaussianDenoiser(mean, cov)


N_SAMPLES = 20_000


@pytest.mark.parametrize("name", ["heun", "stochastic", "ancestral"])
def test_samplers_reproduce_gaussian_moments(gaussian, name):
    mean, cov, denoiser = gaussian
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(N_SAMPLES, 4, generator=g, dtype=torch.float64)
    if name == "heun":
        x = edm_heun(denoiser, noise, karras_sigmas(64))
    elif name == "stochastic":
        x = edm_stochastic(denoiser, noise, karras_sigmas(64), generator=g)
    else:  # Ho et al.'s sampler step for step over the full chain, from its own sigma_max ~ 157
        x = ddpm_ancestral(denoiser, noise, DDPMSchedule().sampling_sigmas(), generator=g)
    sd = cov.diagonal().sqrt()
    assert float(((x.mean(0) - mean) / sd).abs().max()) < 5 / math.sqrt(N_SAMPLES) + 0.01
    rel = torch.linalg.matrix_norm(torch.cov(x.T) - cov) / torch.linalg.matrix_norm(cov)
    assert float(rel) < 0.04


def test_empirical_samples_land_on_training_items():
    train = torch.randn(20, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    noise = torch.randn(200, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = edm_heun(EmpiricalDenoiser(train), noise, karras_sigmas(18))
    d = torch.cdist(x, train).sort(dim=1).values
    assert float(d[:, 0].max()) < 1e-2
    assert bool((d[:, 0] / d[:, 1] < 1 / 3).all())
    assert len(set(torch.cdist(x, train).argmin(1).tolist())) > 10  # many items, not one


def test_trajectory_and_reproducibility():
    denoiser = lambda x, s: 0.5 * x  # noqa: E731
    noise = torch.randn(3, 2, 5)
    sigmas = karras_sigmas(6)
    for sampler in (edm_euler, edm_heun):
        x, traj = sampler(denoiser, noise, sigmas, return_trajectory=True)
        assert traj.shape == (7, 3, 2, 5) and torch.equal(traj[-1], x)
        torch.testing.assert_close(traj[0], noise * 80.0)
    a = edm_stochastic(denoiser, noise, sigmas, generator=torch.Generator().manual_seed(0))
    b = edm_stochastic(denoiser, noise, sigmas, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    torch.testing.assert_close(edm_stochastic(denoiser, noise, sigmas, churn=0.0), edm_heun(denoiser, noise, sigmas))


@pytest.mark.parametrize("noise, sigmas, match", [
    (torch.zeros(2, 3), torch.tensor([1.0, 0.5]), "ending with 0"),
    (torch.zeros(2, 3), torch.tensor([0.5, 1.0, 0.0]), "strictly decreasing"),
    (torch.zeros(2, 3), torch.tensor([0.0]), "sigmas"),
    (torch.full((2, 3), float("nan")), torch.tensor([1.0, 0.0]), "noise"),
    (torch.zeros(3), torch.tensor([1.0, 0.0]), "noise must have shape"),
])
def test_bad_input_names_the_argument(noise, sigmas, match):
    with pytest.raises(ValueError, match=match):
        edm_heun(lambda x, s: x, noise, sigmas)


def test_generate_is_batch_invariant():
    from sims.samplers import generate

    class Shrink(torch.nn.Module):
        def forward(self, x, sigma):
            return x / (1 + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) ** 2)

    a = generate(Shrink(), 6, (1, 4, 4), steps=4, batch=6, seed=3)
    b = generate(Shrink(), 4, (1, 4, 4), steps=4, batch=3, seed=3)
    assert a.shape == (6, 1, 4, 4) and torch.isfinite(a).all()
    torch.testing.assert_close(a[:4], b)  # independent of batch and of num
    assert not torch.allclose(generate(Shrink(), 4, (1, 4, 4), steps=4, seed=4), b)
