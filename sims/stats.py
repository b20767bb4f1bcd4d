"""Statistics over seeds: the t-interval of a mean (docs/THEORY.md §7.1) and the two one-sided t-tests for
equivalence of a mean paired difference within a margin (Schuirmann's TOST, §7.5). Both use only the finite
values (a NaN is a failed seed for that metric) and scipy's t distribution."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, int]:
    """``(mean, half-width, count)`` over the ``k`` finite values, the half-width
    ``t_{(1 + confidence)/2, k-1} s / sqrt(k)`` (``s`` with divisor ``k - 1``; nan if ``k < 2``). §7.1."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    v = _finite(values)
    if v.size == 0:
        return math.nan, math.nan, 0
    if v.size == 1:
        return float(v[0]), math.nan, 1
    q = stats.t.ppf((1 + confidence) / 2, v.size - 1)
    return float(v.mean()), float(q * v.std(ddof=1) / math.sqrt(v.size)), int(v.size)


class Equivalence(NamedTuple):
    """The result of :func:`tost`."""
    p_lower: float  # H0: mean <= -margin, against mean > -margin
    p_upper: float  # H0: mean >= +margin, against mean < +margin
    p: float  # max(p_lower, p_upper): equivalence is shown at level alpha iff p < alpha
    ci: tuple[float, float]  # the (1 - 2 alpha) t-interval of the mean
    equivalent: bool  # p < alpha, i.e. ci lies inside (-margin, +margin)


def tost(differences, margin: float, alpha: float = 0.05) -> Equivalence:
    """Schuirmann's two one-sided t-tests that the mean of the ``k`` finite ``differences`` lies within
    ``(-margin, +margin)`` (§7.5). With mean ``d``, ``se = s / sqrt(k)`` and ``T`` the t law with ``k - 1``
    degrees of freedom::

        p_lower = P(T >= (d + margin) / se),    p_upper = P(T <= (d - margin) / se),    p = max of both;

    equivalence is shown at level ``alpha`` iff ``p < alpha``, which is iff the ``1 - 2 alpha`` interval
    ``d +- t_{1-alpha, k-1} se`` lies inside the margin. Zero spread (``se = 0``) decides by ``d`` alone;
    fewer than 2 finite values give nan p-values and ``equivalent = False``."""
    if not (isinstance(margin, (int, float, np.floating)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    d = _finite(differences)
    if d.size < 2:
        return Equivalence(math.nan, math.nan, math.nan, (math.nan, math.nan), False)
    mean, se, df = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size - 1
    if se == 0:
        p_lower, p_upper = float(mean <= -margin), float(mean >= margin)
    else:
        p_lower = float(stats.t.sf((mean + margin) / se, df))
        p_upper = float(stats.t.cdf((mean - margin) / se, df))
    half = float(stats.t.ppf(1 - alpha, df) * se)
    p = max(p_lower, p_upper)
    return Equivalence(p_lower, p_upper, p, (mean - half, mean + half), p < alpha)
