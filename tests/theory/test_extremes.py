"""Far queries and extreme noise levels: the empirical, ambient and patch denoisers stay finite and exact.

The reference reads the float inputs as exact rationals (``fractions.Fraction``), so its logits are exact,
and takes the softmax in 50-digit ``mpmath``. The denoisers promise (docs/THEORY.md §2.1.3, note): every
logit within ``eps = max(logit_tol, E)`` nats, ``E = 4 u ((sqrt(d) + 2) ||x|| Y + Y^2) / sigma^2`` with the
float64 ``u`` and ``Y = max_i ||x_i||`` (centred). Logit errors below ``eps`` move the weights by a total
variation of at most ``min(e^{2 eps} - 1, e^{2 eps} (1 - max_i w_i))`` (each weight moves by a factor within
``e^{+-2 eps}``), which is 0 to machine precision wherever the posterior is one-hot, as it is for far queries.
"""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import AmbientDenoiser, EmpiricalDenoiser, LocalPatchDenoiser

SETTINGS = settings(max_examples=60, deadline=None)
U64 = 2.0 ** -53
LOGIT_TOL = 1e-5  # EmpiricalDenoiser's default


def _mp(q: Fraction) -> mpmath.mpf:
    return mpmath.mpf(q.numerator) / q.denominator


def _exact(items: torch.Tensor, x: torch.Tensor, sigma2: Fraction) -> dict:
    """Exact posterior of the empirical prior ``items`` (n, d) at one query ``x`` (d,), noise variance ``sigma2``."""
    ys = [[Fraction(v) for v in y] for y in items.tolist()]
    xs = [Fraction(v) for v in x.tolist()]
    logits = [-sum((a - b) ** 2 for a, b in zip(xs, y)) / (2 * sigma2) for y in ys]
    top = max(logits)
    best = logits.index(top)
    with mpmath.workdps(50):
        e = [mpmath.exp(_mp(l - top)) for l in logits]
        z = mpmath.fsum(e)
        w = [v / z for v in e]
        return {"weights": [float(v) for v in w],
                "mean": [float(mpmath.fsum(wi * _mp(y[c]) for wi, y in zip(w, ys))) for c in range(len(xs))],
                "gaps": [float(l - top) for l in logits],
                "rest": mpmath.fsum(v for i, v in enumerate(e) if i != best) / z,  # 1 - max_i w_i
                "log_z": float(_mp(top) + mpmath.log(z))}


def _radius(items: torch.Tensor, x: torch.Tensor, sigma: float) -> float:
    """``max(logit_tol, E)``, the documented bound on every logit's error, in nats."""
    y = items.double()
    center = y.mean(0)
    big_y = (y - center).norm(dim=1).max().item()
    norm = (x.double() - center).norm().item()
    return max(LOGIT_TOL, 4 * U64 * ((math.sqrt(y.shape[1]) + 2) * norm * big_y + big_y ** 2) / sigma ** 2)


def _tv(ref: dict, eps: float) -> float:
    """Bound on the total variation between the computed and the exact weights (plus skipped mass e^-40)."""
    with mpmath.workdps(50):
        return float(min(mpmath.mpf(1), mpmath.expm1(2 * eps), mpmath.exp(2 * eps) * ref["rest"])) + 1e-17


def _close(got: float, want: float, tol: float, dtype: torch.dtype) -> bool:
    """``got`` (in ``dtype``) equals the real ``want`` within ``tol`` plus the rounding into ``dtype``,
    where an overflowing ``want`` must come back as the same-signed infinity."""
    if abs(want) > torch.finfo(dtype).max:
        return got == math.copysign(math.inf, want)
    return abs(got - want) <= tol + 2 * torch.finfo(dtype).eps * abs(want)


@st.composite
def problems(draw, max_n: int = 6, max_d: int = 3, odd_d: bool = False):
    """Items in [-10, 10]^d of a random dtype, two queries ``item + 10^k direction`` (k in [-3, 30]), and
    ``sigma = 10^s`` (s in [-4, 4])."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n = draw(st.integers(1, max_n))
    d = draw(st.sampled_from([1, 3]) if odd_d else st.integers(1, max_d))
    coords = st.floats(-10, 10, width=32)
    data = torch.tensor(draw(st.lists(st.lists(coords, min_size=d, max_size=d), min_size=n, max_size=n)),
                        dtype=torch.float64)
    queries = []
    for _ in range(2):
        base = data[draw(st.integers(0, n - 1))]
        direction = torch.tensor(draw(st.lists(st.floats(-1, 1), min_size=d, max_size=d)), dtype=torch.float64)
        queries.append(base + 10.0 ** draw(st.floats(-3, 30)) * direction)
    sigma = 10.0 ** draw(st.floats(-4, 4))
    return data.to(dtype), torch.stack(queries).to(dtype), sigma


def _check_empirical_outputs(den: EmpiricalDenoiser, data: torch.Tensor, x: torch.Tensor, sigma: float) -> None:
    dtype = x.dtype
    post, weights, score = den.posterior(x, sigma), den.weights(x, sigma), den.score(x, sigma)
    log_density = den.log_density(x, sigma)
    for v in (post.mean, post.max_weight, post.entropy, post.log_normalizer, weights, score, log_density):
        assert v.dtype == dtype and not bool(torch.isnan(v).any())
    round_off = 16 * torch.finfo(dtype).eps * (data.double().abs().max().item() + 1)
    for b in range(x.shape[0]):
        ref, eps = _exact(data, x[b], Fraction(sigma) ** 2), _radius(data, x[b], sigma)
        tv = _tv(ref, eps)
        spread = max((data.double() - torch.tensor(ref["mean"])).abs().max().item(), 1e-300)
        tol = 2 * tv * spread + round_off
        assert (post.mean[b].double() - torch.tensor(ref["mean"])).abs().max().item() <= tol
        assert (weights[b].double() - torch.tensor(ref["weights"])).abs().max().item() <= 2 * tv + round_off
        assert abs(post.max_weight[b].item() - max(ref["weights"])) <= tv + round_off
        assert ref["gaps"][post.argmax[b].item()] >= -2 * eps
        assert 0 <= post.entropy[b].item() <= math.log(data.shape[0]) + 1e-6
        assert _close(post.log_normalizer[b].item(), ref["log_z"], 2 * eps + 8 * U64 * abs(ref["log_z"]), dtype)
        want_score = (torch.tensor(ref["mean"]) - x[b].double()) / sigma ** 2
        for got, want in zip(score[b].tolist(), want_score.tolist()):
            assert _close(got, want, (tol + 4 * U64 * x[b].double().abs().max().item()) / sigma ** 2, dtype)


@SETTINGS
@given(problem=problems(), chunk_size=st.sampled_from([1, 2, 4]), exact_top=st.sampled_from([1, 2]))
def test_empirical_exact_for_any_magnitude(problem, chunk_size, exact_top):
    """|x| up to 1e30, sigma in [1e-4, 1e4], float32 and float64: exact against the rational reference (the
    code used to return NaN from |x| ~ 1e17 on, both dtypes). Small chunks exercise the second pass."""
    data, x, sigma = problem
    _check_empirical_outputs(EmpiricalDenoiser(data, chunk_size=chunk_size, exact_top=exact_top), data, x, sigma)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-4, 1.0, 1e4])
def test_far_query_is_the_nearest_item(dtype, sigma):
    """The reported case, |x| = 1e18: the posterior is one-hot on the item nearest to x."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(40, 5, generator=g, dtype=torch.float64)
    x = 1e18 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    nearest = (x @ data.T - 0.5 * data.square().sum(1)).argmax(1)  # scores ~1e18 +- 1e2, gaps ~1e17
    den = EmpiricalDenoiser(data.to(dtype), chunk_size=16, exact_top=2)
    post = den.posterior(x.to(dtype), sigma)
    assert torch.equal(post.argmax, nearest)
    torch.testing.assert_close(post.mean, data[nearest].to(dtype))
    assert bool((post.max_weight == 1).all()) and bool((post.entropy == 0).all())
    torch.testing.assert_close(den.weights(x.to(dtype), sigma), torch.eye(40, dtype=dtype)[nearest], rtol=0, atol=0)


def test_float32_queries_near_the_float32_maximum():
    """|x| ~ 3e38 in float32: the matmul moves to float64 (float32 scores would overflow) and stays exact."""
    data = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    x = torch.tensor([[3e38, 1.0], [-3e38, -3e38], [0.0, 3e38]])
    den = EmpiricalDenoiser(data)
    torch.testing.assert_close(den(x, 1e-3), data[[0, 1, 2]])
    assert bool(torch.isinf(den.posterior(x, 1e-3).log_normalizer).all())  # -1e83 rounds to -inf in float32


@pytest.mark.parametrize("x,sigma", [(1e160, 1.0), (1.0, 1e-160), (0.0, 1e-200)])
def test_out_of_float64_range_is_rejected(x, sigma):
    """Where (||x|| + Y)^2 / sigma^2 overflows float64 no logit can be held: a ValueError naming x, not NaN."""
    den = EmpiricalDenoiser(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    query = torch.full((1, 2), x, dtype=torch.float64)
    for call in (den, den.posterior, den.weights, den.score, den.log_density,
                 LocalPatchDenoiser(den.data, 1)):
        with pytest.raises(ValueError, match=r"^x is out of float64 range"):
            call(query, sigma)


def test_huge_sigma_gives_the_mean():
    """sigma -> inf (§1.6): every weight 1/n, D = the data mean, even where 1/sigma^2 underflows to 0."""
    data = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    x = torch.tensor([[1e30, -1e30], [0.3, 0.2]], dtype=torch.float64)
    for sigma in (1e200, 1e300):
        torch.testing.assert_close(EmpiricalDenoiser(data)(x, sigma), data.mean(0).expand(2, 2), rtol=1e-15, atol=0)


@settings(max_examples=40, deadline=None)
@given(problem=problems(), frac=st.floats(1e-3, 0.999))
def test_ambient_exact_for_any_magnitude(problem, frac):
    """D_amb = D_Y(x, tau) + (sigma_n^2 / tau^2)(D_Y(x, tau) - x) (§2.4) against the rational posterior of the
    noisy items at the denoiser's own tau: finite and exact at |x| up to 1e30 (it used to be NaN)."""
    data, x, sigma = problem
    sigma_n = frac * sigma
    den = AmbientDenoiser(data, sigma_n)
    tau = den.tau(x, sigma)
    out, score = den(x, sigma), den.score(x, sigma)
    assert not bool(torch.isnan(out).any() or torch.isnan(score).any())
    round_off = 16 * torch.finfo(x.dtype).eps * (data.double().abs().max().item() + 1)
    for b in range(x.shape[0]):
        t = tau[b].item()
        ref, eps = _exact(data, x[b], Fraction(t) ** 2), _radius(data, x[b], t)
        mean = torch.tensor(ref["mean"])
        gain = sigma_n ** 2 / t ** 2
        spread = max((data.double() - mean).abs().max().item(), 1e-300)
        tol = (1 + gain) * (2 * _tv(ref, eps) * spread + round_off) + 8 * U64 * gain * x[b].double().abs().max().item()
        want = mean + gain * (mean - x[b].double())
        for got, w in zip(out[b].tolist(), want.tolist()):
            assert _close(got, w, tol, x.dtype)


@settings(max_examples=30, deadline=None)
@given(problem=problems(odd_d=True), equivariant=st.booleans())
def test_full_patch_local_denoiser_exact_for_any_magnitude(problem, equivariant):
    """A full-size patch gives back the empirical optimum (§2.5; equivariant: of all circular shifts). The
    local denoiser formed ||P(x)||^2 in its logits and returned a wrong item from |x| ~ 1e17 on."""
    data, x, sigma = problem
    length = data.shape[1]
    items = torch.cat([data.roll(k, 1) for k in range(length)]) if equivariant else data
    out = LocalPatchDenoiser(data, length, equivariant=equivariant)(x, sigma)
    assert out.dtype == x.dtype and not bool(torch.isnan(out).any())
    round_off = 16 * torch.finfo(x.dtype).eps * (data.double().abs().max().item() + 1)
    for b in range(x.shape[0]):
        ref = _exact(items, x[b], Fraction(sigma) ** 2)
        spread = max((items.double() - torch.tensor(ref["mean"])).abs().max().item(), 1e-300)
        tol = 2 * _tv(ref, _radius(items, x[b], sigma)) * spread + round_off
        assert (out[b].double() - torch.tensor(ref["mean"])).abs().max().item() <= tol


@pytest.mark.parametrize("where", [(0, 0), (6, 2), (9, 4)])  # the first block, a middle one, the last row
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_the_blockwise_finiteness_check_finds_a_bad_value_in_any_block(monkeypatch, where, bad):
    import theory.denoiser as denoiser

    monkeypatch.setattr(denoiser, "FINITE_CHUNK", 12)  # 10 rows of 5: blocks of 2 rows
    t = torch.zeros(10, 5)
    assert denoiser.check_finite(t, "t") is t
    t[where] = bad
    with pytest.raises(ValueError, match="t must be finite"):
        denoiser.check_finite(t, "t")
    with pytest.raises(ValueError, match="s must be finite"):
        denoiser.check_finite(torch.tensor(bad), "s")  # a scalar: one block
    denoiser.check_finite(torch.zeros(0, 5), "empty")  # no rows: nothing to find
    denoiser.check_finite(torch.zeros(3, 0), "no columns")
