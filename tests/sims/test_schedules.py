"""DDPM schedules against Ho et al. / Nichol & Dhariwal written out independently in numpy; EDM grids."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.schedules import DDPMSchedule, karras_sigmas


def test_linear_schedule_matches_ho_et_al():
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - betas)
    sched = DDPMSchedule("linear")
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), abar, rtol=1e-12)
    np.testing.assert_allclose(sched.sigmas.numpy(), np.sqrt((1 - abar) / abar), rtol=1e-12)
    assert sched.sigmas[0] == pytest.approx(0.01, rel=1e-3)  # sqrt(beta_0 / (1 - beta_0))
    assert 150 < float(sched.sigmas[-1]) < 160  # the linear schedule ends at sigma ~ 157


def test_cosine_schedule_follows_its_abar_where_betas_are_not_capped():
    sched = DDPMSchedule("cosine")
    s, T = 0.008, 1000
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    u = np.arange(1, T + 1) / T
    target = np.array([f(v) / f(0) for v in u])
    uncapped = sched.betas.numpy() < 0.999
    np.testing.assert_allclose(sched.alphas_cumprod.numpy()[uncapped], target[uncapped], rtol=1e-9)
    assert bool((sched.betas <= 0.999).all())


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_sigmas_increase_and_step_maps_invert(kind):
    sched = DDPMSchedule(kind)
    assert bool((torch.diff(sched.sigmas) > 0).all())
    t = torch.arange(sched.T)
    assert torch.equal(sched.t_from_sigma(sched.sigma(t)), t)
    assert torch.equal(sched.t_from_u((t.double() + 0.5) / sched.T), t)
    assert int(sched.t_from_u(torch.tensor(1.0))) == sched.T - 1


@given(st.integers(1, 1000))
@settings(max_examples=40, deadline=None)
def test_sampling_sigmas_are_a_decreasing_grid_ending_in_zero(num_steps):
    grid = DDPMSchedule().sampling_sigmas(num_steps)
    assert grid.shape == (num_steps + 1,) and grid[-1] == 0
    assert bool((torch.diff(grid) < 0).all())
    assert grid[0] == DDPMSchedule().sigmas[-1]


@given(st.integers(1, 200), st.floats(1e-4, 1.0), st.floats(2.0, 1e4), st.floats(1.0, 10.0))
@settings(max_examples=60, deadline=None)
def test_karras_sigmas_endpoints_and_monotone(n, sigma_min, sigma_max, rho):
    grid = karras_sigmas(n, sigma_min, sigma_max, rho)
    assert grid.shape == (n + 1,) and grid[-1] == 0
    assert float(grid[0]) == pytest.approx(sigma_max, rel=1e-12)
    if n > 1:
        assert float(grid[-2]) == pytest.approx(sigma_min, rel=1e-9)
    assert bool((torch.diff(grid) < 0).all())


@pytest.mark.parametrize("call, match", [
    (lambda: DDPMSchedule("quadratic"), "kind"),
    (lambda: DDPMSchedule(T=1), "T must"),
    (lambda: DDPMSchedule(beta_start=0.1, beta_end=0.01), "betas"),
    (lambda: DDPMSchedule().sigma(1000), "t must"),
    (lambda: DDPMSchedule().t_from_u(torch.tensor([1.5])), "u must"),
    (lambda: DDPMSchedule().t_from_sigma(0.0), "sigma must"),
    (lambda: DDPMSchedule().sampling_sigmas(0), "num_steps"),
    (lambda: karras_sigmas(0), "num_steps"),
    (lambda: karras_sigmas(10, sigma_min=5.0, sigma_max=1.0), "sigma_min"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
