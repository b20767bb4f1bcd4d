"""Sample metrics against brute force: exact nearest neighbours (also for near-duplicates that float32
matmul distances misrank), cosines, copy shares, MMD, Frechet distance and the PCA alignment metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from sims.metrics import (frechet_distance, max_cosine, memorization_report, mmd_rbf, nearest_neighbours,
                          pca_wasserstein_js)


def exact_cdist(a, b):
    """Float64 distances by direct differences (``torch.cdist`` switches to the matmul expansion itself)."""
    return (a.double()[:, None, :] - b.double()[None]).norm(dim=2)


@given(st.integers(1, 40), st.integers(2, 60), st.integers(1, 9), st.integers(1, 3), st.integers(1, 16),
       st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_nearest_neighbours_match_brute_force(b, n, d, k, chunk, seed):
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    q, x = torch.randn(b, d, generator=g), torch.randn(n, d, generator=g)
    dist, idx = nearest_neighbours(q, x, k=k, chunk_size=chunk)
    ref = exact_cdist(q, x).sort(dim=1)
    torch.testing.assert_close(dist, ref.values[:, :k], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.gather(exact_cdist(q, x), 1, idx), ref.values[:, :k])


def test_near_duplicates_are_ranked_exactly_in_float32():
    """Items at norm ~100 differing by 1e-3: the float32 expansion |q|^2 + |x|^2 - 2 q.x cannot tell them apart."""
    g = torch.Generator().manual_seed(0)
    base = 30 * torch.randn(200, 16, generator=g)
    items = torch.cat([base, base + 1e-3 * torch.randn(200, 16, generator=g)])
    queries = base[:50] + 2e-4 * torch.randn(50, 16, generator=g)
    dist, idx = nearest_neighbours(queries, items, k=2)
    ref = exact_cdist(queries, items).sort(dim=1)
    assert torch.equal(idx, ref.indices[:, :2])
    torch.testing.assert_close(dist, ref.values[:, :2], rtol=1e-12, atol=0)


def test_max_cosine_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    f, h = torch.randn(37, 5, generator=g), torch.randn(53, 5, generator=g)
    ref = torch.nn.functional.cosine_similarity(f.double()[:, None], h.double()[None], dim=2).amax(1)
    torch.testing.assert_close(max_cosine(f, h, chunk_size=8), ref)


def test_memorization_report_counts_copies():
    g = torch.Generator().manual_seed(2)
    train = torch.randn(50, 20, generator=g)
    copies = train[:30] + 0.01 * torch.randn(30, 20, generator=g)
    fresh = torch.randn(70, 20, generator=g)
    report = memorization_report(torch.cat([copies, fresh]), train)
    assert report["copy_share"] == pytest.approx(0.3)
    assert report["cosine_share"] == pytest.approx(0.3)
    assert set(report) == {"copy_share", "nn_distance", "nn_ratio_mean", "max_cosine_mean", "cosine_share", "cosine_share_0.95"}
    with pytest.raises(ValueError, match="features and train_features must be given together"):
        memorization_report(fresh, train, features=fresh)


def test_frechet_distance_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64)
    b = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64) + 1
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = np.sum((a.numpy().mean(0) - b.numpy().mean(0)) ** 2) + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_mmd_matches_the_unbiased_formula():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(60, 3, generator=g, dtype=torch.float64), 0.5 + torch.randn(80, 3, generator=g, dtype=torch.float64)
    h = 1.3
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * h**2))  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    ref = ((kxx.sum() - kxx.trace()) / (60 * 59) + (kyy.sum() - kyy.trace()) / (80 * 79) - 2 * k(x, y).mean())
    assert mmd_rbf(x, y, bandwidth=h, chunk_size=7) == pytest.approx(float(ref), rel=1e-10)
    same = mmd_rbf(torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g))
    assert abs(same) < 0.01 < mmd_rbf(x, y)


def test_pca_metrics_see_a_shift_along_the_main_axis():
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(4000, 10, generator=g, dtype=torch.float64) * torch.tensor([5.0] + [1.0] * 9, dtype=torch.float64)
    same = pca_wasserstein_js(ref, ref)
    assert same["wasserstein"] == pytest.approx(0.0, abs=1e-12) and same["js"] == pytest.approx(0.0, abs=1e-6)
    shifted = ref.clone()
    shifted[:, 0] += 2.0
    out = pca_wasserstein_js(shifted, ref, n_components=1)
    assert out["wasserstein"] == pytest.approx(2.0, rel=1e-3)  # the shift projected on the fitted main axis
    assert 0 < out["js"] < 1


@pytest.mark.parametrize("call, match", [
    (lambda: nearest_neighbours(torch.zeros(2, 3), torch.zeros(4, 5)), "same item size"),
    (lambda: nearest_neighbours(torch.zeros(2, 3), torch.zeros(1, 3)), "items must have shape"),
    (lambda: nearest_neighbours(torch.full((2, 3), float("nan")), torch.zeros(4, 3)), "queries"),
    (lambda: mmd_rbf(torch.zeros(3, 2), torch.ones(3, 2), bandwidth=-1.0), "bandwidth"),
    (lambda: frechet_distance(torch.zeros(1, 2), torch.zeros(5, 2)), "feat_a"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
