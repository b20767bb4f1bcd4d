"""sims.stats against direct computations: the t-interval of a mean (§7.1) and Schuirmann's two one-sided
t-tests for equivalence (§7.5), including TOST's duality with the (1 - 2 alpha) interval."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from sims.stats import t_interval, tost

samples = st.tuples(st.integers(0, 2**31 - 1), st.integers(2, 30), st.floats(-5, 5), st.floats(0.01, 5))


def draw(seed, k, loc, scale):
    return loc + scale * np.random.default_rng(seed).standard_normal(k)


@given(samples, st.sampled_from([0.9, 0.95, 0.99]))
@settings(max_examples=60, deadline=None)
def test_t_interval_matches_scipy(sample, confidence):
    v = draw(*sample)
    mean, half, k = t_interval(np.append(v, [math.nan, math.inf]), confidence)  # non-finite values dropped
    lo, hi = stats.t.interval(confidence, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    assert k == v.size and mean == pytest.approx(v.mean()) and half == pytest.approx((hi - lo) / 2)


def test_t_interval_without_two_finite_values():
    assert t_interval([2.0, math.nan])[0] == 2.0 and math.isnan(t_interval([2.0])[1]) and t_interval([2.0])[2] == 1
    assert math.isnan(t_interval([])[0]) and t_interval([math.nan])[2] == 0
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=1.0)


@given(samples, st.floats(0.01, 5), st.sampled_from([0.01, 0.05, 0.1]))
@settings(max_examples=150, deadline=None)
def test_tost_matches_the_two_one_sided_t_tests_by_hand(sample, margin, alpha):
    d = draw(*sample)
    k, mean, se = d.size, d.mean(), d.std(ddof=1) / math.sqrt(d.size)
    p_lower = stats.t.sf((mean + margin) / se, k - 1)  # H0: mean <= -margin
    p_upper = stats.t.sf((margin - mean) / se, k - 1)  # H0: mean >= +margin
    e = tost(d, margin, alpha)
    assert e.p_lower == pytest.approx(p_lower, rel=1e-9, abs=1e-300)
    assert e.p_upper == pytest.approx(p_upper, rel=1e-9, abs=1e-300)
    assert e.p == max(e.p_lower, e.p_upper)
    # the same as scipy's one-sample one-sided t-tests against -margin and +margin
    assert e.p_lower == pytest.approx(stats.ttest_1samp(d, -margin, alternative="greater").pvalue, rel=1e-9, abs=1e-300)
    assert e.p_upper == pytest.approx(stats.ttest_1samp(d, margin, alternative="less").pvalue, rel=1e-9, abs=1e-300)
    half = stats.t.ppf(1 - alpha, k - 1) * se
    assert e.ci == pytest.approx((mean - half, mean + half))
    # duality: TOST rejects at alpha iff the (1 - 2 alpha) interval lies inside the margin
    assume(min(abs(abs(mean - half) - margin), abs(abs(mean + half) - margin)) > 1e-9 * margin)
    assert e.equivalent == (e.p < alpha) == (-margin < e.ci[0] and e.ci[1] < margin)


def test_tost_decides_clear_cases_and_drops_non_finite_values():
    tight = np.array([0.1, -0.1, 0.05, -0.05, 0.0, math.nan])
    assert tost(tight, 1.0).equivalent and not tost(tight + 2.0, 1.0).equivalent
    assert tost(tight, 1.0) == tost(tight[:-1], 1.0)
    wide = np.array([-3.0, 3.0, -2.0, 2.0])
    assert not tost(wide, 1.0).equivalent  # centred, but too noisy to show it is within the margin


def test_tost_edge_cases():
    e = tost([0.3, math.nan], 1.0)  # one finite value: no test
    assert math.isnan(e.p) and not e.equivalent
    assert tost([0.5, 0.5, 0.5], 1.0).equivalent and tost([0.5, 0.5, 0.5], 1.0).p == 0.0  # zero spread, inside
    assert not tost([1.0, 1.0, 1.0], 1.0).equivalent and tost([1.0, 1.0], 1.0).p == 1.0  # on the margin: not inside
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="margin"):
            tost([1.0, 2.0], bad)
    for bad in (0.0, 0.5, 1.2):
        with pytest.raises(ValueError, match="alpha"):
            tost([1.0, 2.0], 1.0, alpha=bad)
