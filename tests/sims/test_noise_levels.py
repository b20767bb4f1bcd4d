"""Noise-level laws: samples follow the exact pmf / CDF (chi-square, Kolmogorov-Smirnov), the interval holds
the stated confidence, and the tail options redistribute exactly the mass outside the domain."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sims.noise_levels import ConfidenceIntervalGaussian, EDMLogNormal, LogitNormal, UniformSteps
from sims.schedules import DDPMSchedule

N = 200_000


def _chi_square_pvalue(t: torch.Tensor, pmf: torch.Tensor, bins: int = 50) -> float:
    """Chi-square goodness of fit on ``bins`` groups of consecutive steps (expected counts stay large)."""
    T = pmf.numel()
    groups = torch.arange(T) * bins // T
    observed = torch.bincount(groups[t], minlength=bins).double()
    expected = torch.zeros(bins, dtype=torch.float64).index_add_(0, groups, pmf) * t.numel()
    keep = expected > 5
    return float(stats.chisquare(observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()).pvalue)


@pytest.mark.parametrize("tails", ["truncate", "clip", "redraw"])
@pytest.mark.parametrize("interval", [(0.0, 0.6), (0.4, 1.0), (0.3, 0.5)])
def test_ci_step_samples_follow_the_exact_pmf(tails, interval):
    law = ConfidenceIntervalGaussian(*interval, tails=tails)
    draw = law.sample(N, generator=torch.Generator().manual_seed(1))
    assert draw.t.min() >= 0 and draw.t.max() < 1000
    assert torch.equal(draw.sigma, law.schedule.sigmas[draw.t])
    assert _chi_square_pvalue(draw.t, law.pmf()) > 1e-4


@given(st.floats(0.0, 0.9), st.floats(0.05, 1.0), st.sampled_from(["truncate", "clip", "redraw"]),
       st.floats(0.5, 0.99))
@settings(max_examples=80, deadline=None)
def test_ci_pmf_is_a_law_and_matches_scipy(c_l, width, tails, confidence):
    c_h = min(1.0, c_l + width)
    law = ConfidenceIntervalGaussian(c_l, c_h, confidence=confidence, tails=tails)
    pmf = law.pmf()
    assert bool((pmf >= 0).all()) and float(pmf.sum()) == pytest.approx(1.0, abs=1e-12)
    # independent: scipy's normal with the same (mu, std), z = Phi^-1((1 + p) / 2)
    z = stats.norm.ppf((1 + confidence) / 2)
    normal = stats.norm((c_l + c_h) / 2, (c_h - c_l) / (2 * z))
    cells = np.diff(normal.cdf(np.arange(1001) / 1000))
    outside = 1 - cells.sum()
    ref = {"truncate": cells / cells.sum(), "redraw": cells + outside / 1000,
           "clip": cells + np.r_[normal.cdf(0.0), np.zeros(998), normal.sf(1.0)]}[tails]
    np.testing.assert_allclose(pmf.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
@pytest.mark.parametrize("interval", [(0.3, 0.7), (0.0, 0.6), (0.4, 1.0)])
def test_interval_holds_the_confidence_mass(confidence, interval):
    """``[c_l, c_h]`` holds ``confidence`` of the normal; truncation to ``[0, 1]`` rescales it by the inside mass."""
    law = ConfidenceIntervalGaussian(*interval, confidence=confidence)
    tail = (1 - confidence) / 2  # each side of the interval
    lo_gap, hi_gap = interval[0], 1 - interval[1]  # room between the interval and the domain's ends
    expected_inside = 1 - (tail if lo_gap == 0 else 0) - (tail if hi_gap == 0 else 0)
    assert law.inside_mass() == pytest.approx(expected_inside, abs=3e-3)
    a, b = round(interval[0] * 1000), round(interval[1] * 1000)
    mass = float(law.pmf()[a:b].sum())
    assert mass == pytest.approx(confidence / law.inside_mass(), abs=1e-12)
    u = law.sample(N, generator=torch.Generator().manual_seed(2)).t
    share = float(((u >= a) & (u < b)).double().mean())
    assert abs(share - mass) < 5 * math.sqrt(mass * (1 - mass) / N)


@pytest.mark.parametrize("tails", ["truncate", "clip", "redraw"])
@pytest.mark.parametrize("interval", [(-4.5, 0.0), (-1.5, 3.0), (-6.2, -4.0)])
def test_ci_log_sigma_samples_follow_the_exact_cdf(tails, interval):
    law = ConfidenceIntervalGaussian(*interval, tails=tails, space="log_sigma")
    x = law.sample(N, generator=torch.Generator().manual_seed(3)).sigma.log()
    assert float(x.min()) >= math.log(0.002) - 1e-12 and float(x.max()) <= math.log(80.0) + 1e-12
    if tails == "clip":  # atoms at the ends: compare the interior CDF and the atoms separately
        lo, hi = math.log(0.002), math.log(80.0)
        at_lo = float((x <= lo + 1e-12).double().mean())
        assert at_lo == pytest.approx(float(law.cdf_log_sigma(torch.tensor(lo, dtype=torch.float64))), abs=5e-3)
        interior = float(law.cdf_log_sigma(torch.tensor(hi - 1e-9, dtype=torch.float64))) - float(law.cdf_log_sigma(torch.tensor(lo, dtype=torch.float64)))
        x = x[(x > lo + 1e-12) & (x < hi - 1e-12)]
        cdf = lambda v: (law.cdf_log_sigma(torch.as_tensor(v)).numpy() - float(law.cdf_log_sigma(torch.tensor(lo, dtype=torch.float64)))) / interior  # noqa: E731
    else:
        cdf = lambda v: law.cdf_log_sigma(torch.as_tensor(v)).numpy()  # noqa: E731
    assert stats.kstest(x.numpy(), cdf).pvalue > 1e-4


@pytest.mark.parametrize("tails", ["truncate", "redraw"])
def test_log_sigma_pdf_is_the_derivative_of_the_cdf(tails):
    law = ConfidenceIntervalGaussian(-3.0, 1.0, tails=tails, space="log_sigma")
    x = torch.linspace(-6.0, 4.0, 101, dtype=torch.float64)
    h = 1e-5
    fd = (law.cdf_log_sigma(x + h) - law.cdf_log_sigma(x - h)) / (2 * h)
    torch.testing.assert_close(law.pdf_log_sigma(x), fd, rtol=1e-6, atol=1e-8)
    grid = torch.linspace(math.log(0.002), math.log(80.0), 20001, dtype=torch.float64)
    assert float(torch.trapezoid(law.pdf_log_sigma(grid), grid)) == pytest.approx(1.0, abs=1e-4)


def test_uniform_steps_pmf_and_samples():
    law = UniformSteps(DDPMSchedule("cosine"))
    assert torch.allclose(law.pmf(), torch.full((1000,), 1e-3, dtype=torch.float64))
    t = law.sample(N, generator=torch.Generator().manual_seed(4)).t
    assert _chi_square_pvalue(t, law.pmf()) > 1e-4


def test_edm_lognormal_and_logit_normal():
    edm = EDMLogNormal()
    x = edm.sample(N, generator=torch.Generator().manual_seed(5)).sigma.log().numpy()
    assert stats.kstest(x, stats.norm(-1.2, 1.2).cdf).pvalue > 1e-4
    ln = LogitNormal(0.3, 0.8)
    s = ln.sample(N, generator=torch.Generator().manual_seed(6)).sigma
    u = (s / (1 + s)).numpy()  # sigma = u / (1 - u)
    assert stats.kstest(u, lambda v: stats.norm(0.3, 0.8).cdf(np.log(v / (1 - v)))).pvalue > 1e-4
    grid = torch.linspace(1e-6, 1 - 1e-6, 200001, dtype=torch.float64)
    assert float(torch.trapezoid(ln.pdf_u(grid), grid)) == pytest.approx(1.0, abs=1e-4)


def test_sampling_is_reproducible_with_a_generator():
    law = ConfidenceIntervalGaussian(0.2, 0.6)
    a = law.sample(100, generator=torch.Generator().manual_seed(7))
    b = law.sample(100, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.t, b.t)


@pytest.mark.parametrize("call, match", [
    (lambda: ConfidenceIntervalGaussian(0.6, 0.2), r"c_l < c_h"),
    (lambda: ConfidenceIntervalGaussian(0.5, 0.5), r"c_l < c_h"),
    (lambda: ConfidenceIntervalGaussian(-0.1, 0.5), r"must lie in \[0, 1\]"),
    (lambda: ConfidenceIntervalGaussian(-9.0, 0.0, space="log_sigma"), "must lie in"),
    (lambda: ConfidenceIntervalGaussian(0.1, 0.5, confidence=1.0), "confidence"),
    (lambda: ConfidenceIntervalGaussian(0.1, 0.5, tails="reflect"), "tails"),
    (lambda: ConfidenceIntervalGaussian(0.1, 0.5, space="sigma"), "space"),
    (lambda: ConfidenceIntervalGaussian(0.1, 0.5).cdf_log_sigma(torch.zeros(1)), "space='log_sigma'"),
    (lambda: ConfidenceIntervalGaussian(-2.0, 0.0, space="log_sigma").pmf(), "space='t'"),
    (lambda: EDMLogNormal(P_std=0.0), "P_std"),
    (lambda: UniformSteps().sample(0), "n must"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
