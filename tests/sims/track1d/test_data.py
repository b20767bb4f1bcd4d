"""sims.track1d.data: MNIST-1D generation (offline, reproducible), Gaussian mixtures, digits, splits."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sims.track1d.data import digits, gaussian_mixture, mnist1d, split


def test_mnist1d_shapes_reproducible_and_standardised():
    x, y = mnist1d(200, seed=3)
    assert x.shape == (200, 40) and x.dtype == torch.float32 and y.shape == (200,) and y.dtype == torch.int64
    assert sorted(torch.bincount(y).tolist()) == [20] * 10  # balanced classes
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1) < 1e-4
    x2, y2 = mnist1d(200, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x2[0, 0] = 99.0  # callers get copies: the cache is not mutated
    assert not torch.equal(mnist1d(200, seed=3)[0], x2)
    assert not torch.equal(mnist1d(200, seed=4)[0], x)


def test_mnist1d_leaves_global_rngs_alone():
    np.random.seed(11)
    random.seed(11)
    expected = (np.random.rand(), random.random())
    np.random.seed(11)
    random.seed(11)
    mnist1d(30, seed=1)
    assert (np.random.rand(), random.random()) == expected


@pytest.mark.parametrize("num", [0, 15, -10, 2.5])
def test_mnist1d_rejects_bad_num(num):
    with pytest.raises(ValueError, match="num"):
        mnist1d(num)


def test_gaussian_mixture_moments_match_parameters():
    gmm = gaussian_mixture(components=3, dim=5, separation=2.0, spread=0.7, rank=2, floor=0.1, seed=1)
    assert gmm.means.shape == (3, 5) and gmm.covs.shape == (3, 5, 5)
    assert bool((torch.linalg.eigvalsh(gmm.covs) >= 0.1 ** 2 - 1e-12).all())  # floor^2 I makes them PD
    x, labels = gmm.sample(60000, generator=torch.Generator().manual_seed(0), return_labels=True)
    assert x.dtype == torch.float32 and labels.shape == (60000,)
    for k in range(3):
        xk = x[labels == k].double()
        assert torch.allclose(xk.mean(0), gmm.means[k], atol=0.05)
        assert torch.allclose(torch.cov(xk.T), gmm.covs[k], atol=0.06)
    # the exact population denoiser agrees with the mixture it came from: sigma -> inf gives the mean
    far = gmm.denoiser()(torch.zeros(1, 5, dtype=torch.float64), 1e4)
    assert torch.allclose(far[0], gmm.means.mean(0), atol=1e-5)
    assert torch.equal(gaussian_mixture(seed=1).means, gaussian_mixture(seed=1).means)


@pytest.mark.parametrize("kwargs, name", [({"components": 0}, "components"), ({"dim": -1}, "dim"),
                                          ({"spread": float("nan")}, "spread"), ({"rank": 0}, "rank"),
                                          ({"spread": 0.0, "floor": 0.0}, "spread")])
def test_gaussian_mixture_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gaussian_mixture(**kwargs)


def test_digits_flattened_in_range():
    x, y = digits()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0


def test_split_is_disjoint_and_seeded():
    x = torch.arange(20.0)[:, None]
    a, b, c = split(x, (5, 7, 3), seed=2)
    assert (a.shape[0], b.shape[0], c.shape[0]) == (5, 7, 3)
    assert len(set(torch.cat([a, b, c]).flatten().tolist())) == 15
    assert torch.equal(split(x, (5,), seed=2)[0], a)
    with pytest.raises(ValueError, match="sizes"):
        split(x, (15, 6))
