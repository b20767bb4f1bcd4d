"""theory.diagnostics against brute force, closed forms and Monte Carlo."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import AmbientDenoiser, EmpiricalDenoiser, GaussianDenoiser
from theory.denoiser import log_sigma_grid
from theory.diagnostics import (collapse_sigma_entropy, collapse_sigma_isotropic, collapse_sigma_spectrum, diagnose,
                                excess_entropy, speciation_sigma)
from theory.seeding import seeded_generator


def _gaussian_setup(n=24, m=20, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lam = torch.linspace(0.2, 2.0, d, dtype=torch.float64)
    train = (torch.randn(n, d, generator=g, dtype=torch.float64) * lam.sqrt()).to(dtype)
    test = (torch.randn(m, d, generator=g, dtype=torch.float64) * lam.sqrt()).to(dtype)
    gen = GaussianDenoiser(torch.zeros(d, dtype=torch.float64), torch.diag(lam))
    return train, test, gen, lam


def test_diagnose_matches_brute_force_posterior(empirical_reference):
    train, test, gen, _ = _gaussian_setup()
    sigmas = [0.05, 0.4, 3.0]
    df = diagnose(train, test, gen, sigmas, seed=5, chunk=7)
    assert list(df["denoiser"]) == ["empirical", "generalizing"] * 3
    for j, s in enumerate(sigmas):
        for split, items in ((0, train), (1, test)):
            gen_stream = seeded_generator(5, j, split)
            x = torch.cat([c + s * torch.randn(c.shape, generator=gen_stream, dtype=c.dtype) for c in items.split(7)])
            ref = empirical_reference(train, x, s)
            emp_loss = float(((ref["mean"] - items) ** 2).mean())
            gen_loss = float(((gen(x, s) - items) ** 2).mean())
            row_e = df[(df.sigma == s) & (df.denoiser == "empirical")].iloc[0]
            row_g = df[(df.sigma == s) & (df.denoiser == "generalizing")].iloc[0]
            suffix = "" if split == 0 else "_test"
            assert row_e[f"loss_{'train' if split == 0 else 'test'}"] == pytest.approx(emp_loss, rel=1e-9)
            assert row_g[f"loss_{'train' if split == 0 else 'test'}"] == pytest.approx(gen_loss, rel=1e-9)
            assert row_e[f"max_weight{suffix}"] == pytest.approx(float(ref["weights"].max(1).values.mean()), rel=1e-9)
            assert row_e[f"eff_items{suffix}"] == pytest.approx(float(ref["entropy"].exp().mean()), rel=1e-7)
            if split == 0:
                assert row_e["necessity"] == pytest.approx(1 - emp_loss / gen_loss, rel=1e-9)
            else:
                assert row_e["gap"] == pytest.approx(emp_loss - gen_loss, rel=1e-9)
        assert np.isnan(row_g["max_weight"]) and row_g["necessity"] == 0.0 and row_g["gap"] == 0.0


def test_generalizing_loss_matches_wiener_mmse_within_monte_carlo_error():
    train, test, gen, lam = _gaussian_setup(n=600, m=600, d=6, seed=1)
    sigmas = [0.1, 1.0, 10.0]
    df = diagnose(train, test, gen, sigmas, num_items=600)
    for s in sigmas:
        mmse = float((lam * s ** 2 / (lam + s ** 2)).mean())  # tr Cov[x0|x] / d
        row = df[(df.sigma == s) & (df.denoiser == "generalizing")].iloc[0]
        for split in ("train", "test"):
            assert abs(row[f"loss_{split}"] - mmse) < 4 * row[f"loss_{split}_se"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_limits_and_finiteness_over_the_sigma_range(dtype):
    train, test, gen, _ = _gaussian_setup(n=16, m=16, d=5, seed=2, dtype=dtype)
    df = diagnose(train, test, gen, [1e-4, 1e4])
    emp = df[df.denoiser == "empirical"].set_index("sigma")
    assert not df.drop(columns=["max_weight", "eff_items", "max_weight_test", "eff_items_test"]).isna().any().any()
    assert not emp.isna().any().any()
    # sigma -> 0: the memorizer returns the training item (loss 0, one item); held-out items are not in X
    assert emp.loc[1e-4, "loss_train"] < 1e-6 and emp.loc[1e-4, "necessity"] > 0.999
    assert emp.loc[1e-4, "max_weight"] == pytest.approx(1.0) and emp.loc[1e-4, "eff_items"] == pytest.approx(1.0)
    assert emp.loc[1e-4, "gap"] > 0
    # sigma -> inf: uniform posterior over the n items, output the training mean
    assert emp.loc[1e4, "eff_items"] == pytest.approx(16, rel=1e-3)
    var_train = float(((train.double() - train.double().mean(0)) ** 2).mean())
    assert emp.loc[1e4, "loss_train"] == pytest.approx(var_train, rel=1e-2)


def test_ambient_rows_are_nan_below_sigma_n():
    train, test, gen, _ = _gaussian_setup(n=20, m=10, d=4, seed=3)
    noisy = train + 0.5 * torch.randn(train.shape, generator=torch.Generator().manual_seed(9), dtype=train.dtype)
    amb = AmbientDenoiser(noisy, sigma_n=0.5)
    df = diagnose(train, test, gen, [0.2, 0.5, 2.0, 50.0], ambient=amb)
    a = df[df.denoiser == "ambient"].set_index("sigma")
    assert a.loc[[0.2, 0.5]].drop(columns="denoiser").isna().all().all()
    assert not a.loc[[2.0, 50.0]].drop(columns="denoiser").isna().any().any()
    # the ambient optimum cannot reproduce clean items: it needs less memorization than the empirical one
    e = df[df.denoiser == "empirical"].set_index("sigma")
    assert a.loc[2.0, "necessity"] < e.loc[2.0, "necessity"]
    with pytest.raises(ValueError, match="ambient"):
        diagnose(train[:, :3], test[:, :3], gen, [1.0], ambient=amb)


@settings(max_examples=15, deadline=None)
@given(c=st.floats(0.1, 10.0), s=st.floats(0.05, 5.0))
def test_diagnose_scales_with_the_data(c, s):
    """``D_{cX}(cx, c sigma) = c D_X(x, sigma)``: losses scale by c^2, M and concentration are unchanged."""
    train, test, _, lam = _gaussian_setup(n=12, m=8, d=3, seed=4)
    gen = GaussianDenoiser(torch.zeros(3, dtype=torch.float64), torch.diag(lam))
    gen_c = GaussianDenoiser(torch.zeros(3, dtype=torch.float64), c * c * torch.diag(lam))
    a = diagnose(train, test, gen, [s]).set_index("denoiser")
    b = diagnose(c * train, c * test, gen_c, [c * s]).set_index("denoiser")
    for col in ("loss_train", "loss_test", "gap"):
        assert np.allclose(b[col], c * c * a[col], rtol=1e-6, atol=1e-12)
    for col in ("necessity", "max_weight", "eff_items"):
        assert np.allclose(b[col].fillna(0), a[col].fillna(0), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kwargs, name", [
    ({"sigmas": []}, "sigmas"), ({"sigmas": [0.1, 0.0]}, "sigmas"), ({"sigmas": [-1.0]}, "sigmas"),
    ({"sigmas": [float("nan")]}, "sigmas"), ({"num_items": 0}, "num_items"), ({"chunk": 0}, "chunk")])
def test_diagnose_rejects_bad_input(kwargs, name):
    train, test, gen, _ = _gaussian_setup(n=5, m=5, d=3)
    with pytest.raises(ValueError, match=name):
        diagnose(train, test, gen, **{"sigmas": [1.0], **kwargs})


def test_diagnose_rejects_mismatched_or_empty_items():
    train, test, gen, _ = _gaussian_setup(n=5, m=5, d=3)
    with pytest.raises(ValueError, match="test"):
        diagnose(train, test[:, :2], gen, [1.0])
    with pytest.raises(ValueError, match="train"):
        diagnose(train[:0], test, gen, [1.0])
    with pytest.raises(ValueError, match="test"):
        diagnose(train, test.clone().fill_(float("nan")), gen, [1.0])


# ---- collapse and speciation -------------------------------------------------------------------------------

def test_isotropic_collapse_closed_form_solves_the_information_balance():
    for n, d, v in ((100, 10, 1.0), (1000, 40, 2.5), (2, 1, 0.3)):
        s = collapse_sigma_isotropic(n, d, v)
        assert 0.5 * d * math.log(1 + v / s ** 2) == pytest.approx(math.log(n), rel=1e-12)
        assert collapse_sigma_spectrum([v] * d, n) == pytest.approx(s, rel=1e-9)
    # large d: sigma_C^2 ~ s^2 d / (2 log n), no cancellation in n^{2/d} - 1
    assert collapse_sigma_isotropic(10, 10 ** 6, 1.0) ** 2 == pytest.approx(1e6 / (2 * math.log(10)), rel=1e-5)


def test_excess_entropy_of_a_gaussian_population_matches_the_closed_form():
    d, n = 4, 50
    lam = torch.tensor([0.3, 1.0, 1.5, 4.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(4000, d, generator=g, dtype=torch.float64) * lam.sqrt()
    pop = GaussianDenoiser(torch.zeros(d, dtype=torch.float64), torch.diag(lam))
    sigmas = [0.03, 0.3, 3.0, 30.0]
    f = excess_entropy(draws, n, sigmas, pop, num_items=4000)
    exact = [(math.log(n) - 0.5 * float(torch.log1p(lam / s ** 2).sum())) / d for s in sigmas]
    # Monte Carlo of E log p: the standard deviation of log p is sqrt(d/2) / sqrt(4000) per item
    assert np.allclose(f, exact, atol=4 * math.sqrt(d / 2 / 4000) / d)


def test_entropy_criterion_finds_the_isotropic_collapse_level():
    n, d, v = 200, 8, 2.0
    g = torch.Generator().manual_seed(1)
    x = math.sqrt(v) * torch.randn(n, d, generator=g, dtype=torch.float64)
    pop = GaussianDenoiser(torch.zeros(d, dtype=torch.float64), v * torch.eye(d, dtype=torch.float64))
    closed = collapse_sigma_isotropic(n, d, v)
    assert collapse_sigma_entropy(x, pop) == pytest.approx(closed, rel=0.03)
    # default density: the Gaussian fit, whose own closed form is the spectrum of the sample covariance
    fitted = collapse_sigma_spectrum(torch.linalg.eigvalsh(torch.cov(x.T, correction=0)).numpy(), n)
    assert collapse_sigma_entropy(x.float()) == pytest.approx(fitted, rel=0.03)
    assert fitted == pytest.approx(closed, rel=0.05)


def test_collapse_entropy_returns_nan_without_a_sign_change_and_rejects_bad_bounds():
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert math.isnan(collapse_sigma_entropy(x, bounds=(100.0, 1000.0)))  # f > 0 throughout
    with pytest.raises(ValueError, match="bounds"):
        collapse_sigma_entropy(x, bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="n"):
        collapse_sigma_isotropic(1, 3, 1.0)
    with pytest.raises(ValueError, match="variance"):
        collapse_sigma_isotropic(10, 3, 0.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        collapse_sigma_spectrum([0.0, 0.0], 10)


def test_speciation_is_the_top_covariance_eigenvalue():
    g = torch.Generator().manual_seed(0)
    for n, d in ((50, 7), (5, 30)):  # both Gram-matrix branches
        x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
        top = np.linalg.eigvalsh(np.cov(x.numpy().T, bias=True))[-1]
        assert speciation_sigma(x) == pytest.approx(math.sqrt(top), rel=1e-9)


def test_log_sigma_grid():
    grid = log_sigma_grid(1e-3, 10.0, 5)
    assert np.allclose(np.diff(np.log(grid)), math.log(10) )
    with pytest.raises(ValueError, match="lo"):
        log_sigma_grid(1.0, 0.5, 3)


def test_extra_denoisers_get_their_own_rows(empirical_reference):
    train, test, gen, _ = _gaussian_setup(n=10, m=6, d=3, seed=5)
    df = diagnose(train, test, gen, [0.3, 3.0], extra={"again": EmpiricalDenoiser(train)})
    assert list(df.denoiser) == ["empirical", "generalizing", "again"] * 2
    a, e = df[df.denoiser == "again"], df[df.denoiser == "empirical"]
    assert np.allclose(a.loss_train, e.loss_train, rtol=1e-12) and np.allclose(a.necessity, e.necessity, rtol=1e-9)
    with pytest.raises(ValueError, match="extra"):
        diagnose(train, test, gen, [1.0], extra={"empirical": gen})


def test_necessity_crossing_interpolates_in_log_sigma():
    import pandas as pd

    from theory.diagnostics import necessity_crossing

    sig = [0.01, 0.1, 1.0, 10.0]
    t = pd.DataFrame({"sigma": sig * 2, "denoiser": ["empirical"] * 4 + ["ambient"] * 4,
                      "necessity": [1.0, 0.9, 0.3, 0.0, math.nan, math.nan, 0.2, 0.1]})
    # M goes 0.9 -> 0.3 between 0.1 and 1: 1/2 is two thirds of the way, at 10^(-1 + 2/3)
    assert necessity_crossing(t) == pytest.approx(10 ** (-1 / 3))
    assert necessity_crossing(t, level=0.0) == 10.0
    assert math.isnan(necessity_crossing(t, "ambient"))
    with pytest.raises(ValueError, match="denoiser"):
        necessity_crossing(t, "nope")
