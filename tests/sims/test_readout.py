"""The paired readout: exact ratios for mixtures of the references, the calibration mask, Monte Carlo losses,
the held-out gap and the two-net ratio on the same noise, copy onset. (Calibration against known
memorizers and non-memorizers: test_readout_calibration.py.)"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sims.readout import Readout, copy_onset, heldout_gap, paired_readout, two_net_ratio
from theory.seeding import seeded_generator


def _brute_empirical(data: torch.Tensor):
    """Independent reference: softmax(-||x - x_i||^2 / 2 sigma^2) weights, dense, float64."""
    def D(x, sigma):
        d2 = ((x[:, None, :].double() - data[None].double()) ** 2).sum(-1)
        return (torch.softmax(-d2 / (2 * sigma**2), dim=1) @ data.double()).to(x.dtype)
    return D


def _wiener(sd: float):
    return lambda x, sigma: x * sd**2 / (sd**2 + sigma**2)


def test_ratio_is_exact_for_mixtures_of_the_two_references():
    torch.manual_seed(0)
    train, test = torch.randn(40, 6, dtype=torch.float64), torch.randn(30, 6, dtype=torch.float64)
    emp, gen = _brute_empirical(train), _wiener(1.0)
    sig = [0.1, 0.5, 2.0]
    for lam in (0.0, 0.3, 1.0, 2.0):
        net = lambda x, s, lam=lam: (1 - lam) * emp(x, s) + lam * gen(x, s)
        r = paired_readout(net, emp, gen, train, test, sig, chunk=7)
        np.testing.assert_allclose(r.ratio_raw, lam**2, rtol=1e-9, atol=1e-12)  # paired noise: exact
        # calibrated: reported only where the reference denoises held-out items strictly better than the net
        np.testing.assert_array_equal(r.ratio, np.where(r.gen_test < r.net_test, r.ratio_raw, np.nan))
        # the net's loss equals the reference it coincides with
        if lam == 0.0:
            np.testing.assert_allclose(r.net_train, r.emp_train, rtol=1e-12)
        if lam == 1.0:
            np.testing.assert_allclose(r.net_test, r.gen_test, rtol=1e-12)


def test_losses_match_closed_forms_by_monte_carlo():
    # data N(0, sd^2 I): E||x - x0||^2/d = sigma^2 (identity); Wiener loss = sd^2 sigma^2 / (sd^2 + sigma^2)
    torch.manual_seed(1)
    sd, d, n = 1.5, 8, 4000
    train, test = sd * torch.randn(n, d, dtype=torch.float64), sd * torch.randn(n, d, dtype=torch.float64)
    ident = lambda x, s: x
    r = paired_readout(ident, ident, _wiener(sd), train, test, [0.3, 1.0, 3.0], num_items=n)
    s2 = np.array([0.09, 1.0, 9.0])
    se = 4 * s2 * math.sqrt(2 / (n * d))  # 4 standard errors of a mean of chi-square(1) * sigma^2
    np.testing.assert_allclose(r.net_train, s2, atol=se.max())
    np.testing.assert_allclose(r.emp_test, s2, atol=se.max())
    np.testing.assert_allclose(r.gen_train, sd**2 * s2 / (sd**2 + s2), rtol=0.05)
    np.testing.assert_allclose(r.necessity, 1 - s2 / (sd**2 * s2 / (sd**2 + s2)), rtol=0.05)


def test_memorizer_necessity_goes_from_one_at_low_noise_towards_zero_at_high_noise():
    torch.manual_seed(2)
    train, test = torch.randn(20, 10, dtype=torch.float64), torch.randn(20, 10, dtype=torch.float64)
    emp = _brute_empirical(train)
    r = paired_readout(emp, emp, _wiener(1.0), train, test, [1e-3, 1e3])
    assert r.necessity[0] > 0.999 and r.emp_train[0] < 1e-10
    assert abs(r.necessity[1]) < 0.15  # ~ 1/n: the memorizer knows the training mean
    assert r.emp_test[0] > 1e3 * r.gen_test[0]  # the memorizer cannot denoise held-out items at low noise


def test_readout_is_seeded_and_round_trips_through_a_dict():
    torch.manual_seed(3)
    train, test = torch.randn(10, 4), torch.randn(10, 4)
    emp, gen = _brute_empirical(train), _wiener(1.0)
    net = lambda x, s: 0.5 * x
    a = paired_readout(net, emp, gen, train, test, [0.2, 1.0], seed=5)
    b = Readout.from_dict(a.to_dict())
    for k in a.to_dict():
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    old = Readout.from_dict({k: v for k, v in a.to_dict().items() if k not in ("ratio_raw", "heldout_ratio")})
    assert np.isnan(old.heldout_ratio).all() and np.isnan(old.ratio_raw).all()  # fields older files lack
    c = paired_readout(net, emp, gen, train, test, [0.2, 1.0], seed=6)
    assert not np.allclose(a.net_train, c.net_train)


def test_float32_inputs_stay_finite_over_the_whole_sigma_range():
    torch.manual_seed(4)
    train, test = torch.randn(15, 5), torch.randn(15, 5)
    emp = _brute_empirical(train)
    r = paired_readout(lambda x, s: x * 0.9, emp, _wiener(1.0), train, test, np.logspace(-4, 4, 9))
    for k, v in r.to_dict().items():
        if k != "ratio":  # the calibrated ratio is NaN where the reference is no better than the net
            assert np.all(np.isfinite(v)), k


def test_gap_and_two_net_ratio_use_the_readout_noise():
    torch.manual_seed(5)
    train, other, test = torch.randn(20, 5), torch.randn(20, 5), torch.randn(30, 5)
    net, sig = (lambda x, s: x * 0.8), [0.1, 1.0]
    r = paired_readout(net, _brute_empirical(train), _wiener(1.0), train, test, sig, chunk=7, seed=2)
    g = heldout_gap(net, train, test, sig, chunk=7, seed=2)  # same seed and chunk: the same noise
    np.testing.assert_allclose(g["train"], r.net_train, rtol=1e-12)
    np.testing.assert_allclose(g["test"], r.net_test, rtol=1e-12)
    np.testing.assert_allclose(g["ratio"], r.net_test / r.net_train, rtol=1e-12)
    np.testing.assert_allclose(r.heldout_ratio, g["ratio"], rtol=1e-12)
    # V's numerator: the two nets on the held-out inputs of the readout (x0 + sigma z, the same z)
    v = two_net_ratio(lambda x, s: x, net, train, other, test, sig, seed=2)  # one chunk
    emp1, emp2 = _brute_empirical(train.double()), _brute_empirical(other.double())
    num, den = [], []
    for j, s in enumerate(sig):
        x = test + s * torch.randn(test.shape, generator=seeded_generator(2, j, 1))
        num.append(float((0.2 * x.double()).square().sum()))
        den.append(float((emp1(x.double(), s) - emp2(x.double(), s)).square().sum()))
    np.testing.assert_allclose(v, np.array(num) / np.array(den), rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigmas=[0.1, 0.0]), "sigmas"),
    (dict(sigmas=[]), "sigmas"),
    (dict(sigmas=[float("nan")]), "sigmas"),
    (dict(train=torch.randn(0, 4)), "train"),
    (dict(test=torch.randn(3, 5)), "test"),
    (dict(train=torch.full((3, 4), float("nan"))), "train"),
    (dict(num_items=0), "num_items"),
    (dict(chunk=0), "chunk"),
])
def test_rejects_bad_input(kwargs, match):
    ident = lambda x, s: x
    args = dict(net=ident, emp=ident, gen=ident, train=torch.randn(3, 4), test=torch.randn(3, 4), sigmas=[1.0])
    with pytest.raises(ValueError, match=match):
        paired_readout(**{**args, **kwargs})


def test_copy_onset_interpolates_in_log_sigma():
    s = [0.01, 0.1, 1.0, 10.0]
    # r crosses 0.5 between 0.1 (r=0.2) and 1 (r=0.8): halfway in log sigma -> sqrt(0.1 * 1)
    assert copy_onset(s, [0.0, 0.2, 0.8, 1.0]) == pytest.approx(math.sqrt(0.1))
    assert math.isnan(copy_onset(s, [0.9, 0.8, 0.9, 1.0]))
    assert copy_onset(s, [0.1, 0.1, 0.1, 0.1]) == 10.0
    assert copy_onset(s[::-1], [1.0, 0.8, 0.2, 0.0]) == pytest.approx(math.sqrt(0.1))  # order-free
    # a dip below the threshold at high noise (r ill-conditioned there) does not move the onset
    assert copy_onset(s, [0.0, 0.2, 0.8, 0.1]) == pytest.approx(math.sqrt(0.1))
    assert copy_onset(s, [0.0, 0.2, float("nan"), 0.1]) == 0.1
    with pytest.raises(ValueError, match="ratio"):
        copy_onset(s, [0.1, 0.2])


@pytest.mark.parametrize("call, match", [
    (lambda a, b: heldout_gap(lambda x, s: x, a, b[:, :3], [1.0]), "test"),
    (lambda a, b: heldout_gap(lambda x, s: x, a, b, [-1.0]), "sigmas"),
    (lambda a, b: two_net_ratio(lambda x, s: x, lambda x, s: x, a, b[:, :3], b, [1.0]), "train2"),
    (lambda a, b: two_net_ratio(lambda x, s: x, lambda x, s: x, a[:0], b, b, [1.0]), "train1"),
    (lambda a, b: two_net_ratio(lambda x, s: x, lambda x, s: x, a, b, b, [1.0], num_items=0), "num_items"),
])
def test_gap_and_two_net_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(5, 4), torch.randn(6, 4))


def test_copy_band_top_reads_the_band_around_the_minimum():
    from sims.readout import copy_band_top
    sig = [0.01, 0.1, 1.0, 10.0]
    assert copy_band_top(sig, [1.0, 0.2, 0.2, 1.0]) == pytest.approx(10 ** 0.375)  # 0.2 -> 1.0 crosses 0.5 at 3/8
    assert copy_band_top(sig, [1.0, 0.2, 0.3, 0.4]) == 10.0  # never rises again: the largest sigma
    assert np.isnan(copy_band_top(sig, [1.0, 0.9, 0.8, 1.0]))  # never copies
    assert copy_band_top(sig[::-1], [1.0, 0.2, 0.2, 1.0][::-1]) == pytest.approx(10 ** 0.375)  # any order
