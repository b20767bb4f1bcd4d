"""Calibration of the readouts (docs/THEORY.md §3.7, §6.1, §6.8, §6.9) on a small Gaussian mixture (d = 6, n = 64):
known non-memorizers -- a Wiener denoiser fitted on a large population sample, the population's exact (GMM)
denoiser and the identity map -- read as non-memorizing at every sigma of a grid from 0.01 to 10, against
either reference; the training set's own empirical optimum reads as memorizing at low sigma."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sims.readout import Reference, copy_onset, heldout_gap, paired_readout, two_net_ratio
from theory import EmpiricalDenoiser, GaussianDenoiser, GMMDenoiser
from theory.diagnostics import collapse_sigma_entropy, collapse_sigma_spectrum

D, K, N = 6, 4, 64
SIGMAS = np.geomspace(0.01, 10.0, 10)
NON_MEMORIZERS = ("wiener", "gmm", "identity")
REFERENCES = ("exact", "wiener_pool")


@pytest.fixture(scope="module")
def world() -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    means = 2.0 * torch.randn(K, D, generator=g, dtype=torch.float64)
    a = torch.randn(K, D, 2, generator=g, dtype=torch.float64)
    covs = 0.25 * a @ a.transpose(1, 2) / 2 + 0.01 * torch.eye(D, dtype=torch.float64)
    gmm = GMMDenoiser(torch.full((K,), 1.0 / K, dtype=torch.float64), means, covs)
    draw = lambda num, seed: gmm.sample(num, torch.Generator().manual_seed(seed))  # noqa: E731
    return SimpleNamespace(gmm=gmm, train=draw(N, 1), other=draw(N, 2), test=draw(256, 3), pool=draw(20000, 4),
                           wiener=GaussianDenoiser.fit(draw(20000, 5)), wiener2=GaussianDenoiser.fit(draw(20000, 6)))


def _net(world: SimpleNamespace, name: str):
    return {"wiener": world.wiener, "gmm": world.gmm, "identity": lambda x, s: x}[name]


def _reference(world: SimpleNamespace, kind: str) -> Reference:
    ref = Reference.of(world.pool, world.gmm if kind == "exact" else None)
    assert ref.kind == kind
    return ref


def _readout(world: SimpleNamespace, net, ref: Reference):
    return paired_readout(net, EmpiricalDenoiser(world.train), ref.denoiser, world.train, world.test, SIGMAS)


@pytest.mark.parametrize("kind", REFERENCES)
@pytest.mark.parametrize("name", NON_MEMORIZERS)
def test_calibrated_ratio_reads_non_memorizers_as_non_memorizing_at_every_sigma(world, kind, name):
    r = _readout(world, _net(world, name), _reference(world, kind))
    assert not np.any(r.ratio <= 0.5), r.ratio  # above 1/2, or not reported (NaN), at every sigma
    assert math.isnan(copy_onset(SIGMAS, r.ratio))  # no copying band


@pytest.mark.parametrize("kind", REFERENCES)
def test_calibrated_ratio_reads_the_training_sets_empirical_optimum_as_a_copier(world, kind):
    r = _readout(world, EmpiricalDenoiser(world.train), _reference(world, kind))
    np.testing.assert_array_equal(r.ratio[:4], 0.0)  # reported, and 0, at sigma <= 0.1
    assert copy_onset(SIGMAS, r.ratio) >= SIGMAS[3]


def test_a_memorizing_reference_cannot_make_a_non_memorizer_read_as_a_copier(world):
    """The former reference, the empirical optimum of a pool, snaps queries onto pool items at low sigma: the
    raw ratio then calls the Wiener filter a copier; the calibration drops those levels."""
    pool_emp = Reference(EmpiricalDenoiser(world.pool[:2000]), "empirical_pool")
    r = _readout(world, world.wiener, pool_emp)
    assert np.all(r.ratio_raw[:3] < 0.5)
    assert not np.any(r.ratio <= 0.5) and math.isnan(copy_onset(SIGMAS, r.ratio))


@pytest.mark.parametrize("name", NON_MEMORIZERS)
def test_heldout_gap_of_non_memorizers_is_about_one_at_every_sigma(world, name):
    g = heldout_gap(_net(world, name), world.train, world.test, SIGMAS)
    assert np.all((g["ratio"] > 2 / 3) & (g["ratio"] < 1.5)), g["ratio"]


def test_heldout_gap_of_the_empirical_optimum_is_large_at_low_sigma(world):
    g = heldout_gap(EmpiricalDenoiser(world.train), world.train, world.test, SIGMAS)
    assert np.all(g["ratio"][:4] > 10) and g["ratio"][-1] < 1.5


def test_two_net_ratio_closed_forms(world):
    """Two empirical optima copy their own sets: V = 1 exactly; one Gaussian denoiser twice: V = 0."""
    w = world
    emp1, emp2 = EmpiricalDenoiser(w.train), EmpiricalDenoiser(w.other)
    np.testing.assert_allclose(two_net_ratio(emp1, emp2, w.train, w.other, w.test, SIGMAS), 1.0, rtol=1e-12)
    gauss = GaussianDenoiser.fit(w.train)
    np.testing.assert_array_equal(two_net_ratio(gauss, gauss, w.train, w.other, w.test, SIGMAS), 0.0)
    # the same set twice: the normaliser vanishes, V is not defined
    assert np.isnan(two_net_ratio(gauss, gauss, w.train, w.train, w.test, SIGMAS)).all()


def test_two_net_ratio_reads_non_memorizers_as_agreeing_at_every_sigma(world):
    w = world
    np.testing.assert_array_equal(two_net_ratio(w.gmm, w.gmm, w.train, w.other, w.test, SIGMAS), 0.0)
    v = two_net_ratio(w.wiener, w.wiener2, w.train, w.other, w.test, SIGMAS)  # two large population samples
    assert np.all(v < 0.05), v


def test_sigma_c_uses_the_reference_density(world):
    wiener = Reference.of(world.pool)
    lam = torch.linalg.eigvalsh(wiener.denoiser.cov).numpy()
    assert wiener.sigma_c(world.pool, N) == pytest.approx(collapse_sigma_spectrum(lam, N), rel=0.03)  # §3.5
    exact = Reference.of(world.pool, world.gmm)
    assert exact.sigma_c(world.pool, N) == collapse_sigma_entropy(world.pool, world.gmm, n=N)
    with pytest.raises(ValueError, match="pool"):
        Reference.of(torch.zeros(0, D))
