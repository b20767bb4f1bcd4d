"""Sample metrics against brute force: exact nearest neighbours (also for near-duplicates that float32
matmul distances misrank), cosines, copy shares, MMD, Frechet distance and the PCA alignment metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from sims.metrics import (frechet_bootstrap, frechet_distance, max_cosine, memorization_report, mmd_rbf, nearest_neighbours,
                          pca_wasserstein_js)


def exact_cdist(a, b):
    """Float64 distances by direct differences (``torch.cdist`` switches to the matmul expansion itself)."""
    return (a.double()[:, None, :] - b.double()[None]).norm(dim=2)


@given(st.integers(1, 40), st.integers(2, 60), st.integers(1, 9), st.integers(1, 3), st.integers(1, 16),
       st.integers(0, 2**31 - 1), st.sampled_from(["torch", "auto"]))  # auto: faiss where installed
@settings(max_examples=60, deadline=None)
def test_nearest_neighbours_match_brute_force(b, n, d, k, chunk, seed, backend):
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    q, x = torch.randn(b, d, generator=g), torch.randn(n, d, generator=g)
    dist, idx = nearest_neighbours(q, x, k=k, chunk_size=chunk, backend=backend)
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


@pytest.mark.parametrize("k, chunk", [(1, 4096), (2, 7), (3, 50)])
def test_faiss_and_torch_candidates_give_identical_neighbours(k, chunk):
    """Exact duplicates (ties, broken to the lower index), near-ties 1e-4 apart at norm ~170 and queries that are
    items: the faiss and the torch candidates re-rank to the same indices and the same float64 distances."""
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(1)
    base = 30 * torch.randn(100, 32, generator=g)
    items = torch.cat([base, base, base + 1e-4 * torch.randn(100, 32, generator=g), torch.randn(50, 32, generator=g)])
    queries = torch.cat([base[:40] + 1e-4 * torch.randn(40, 32, generator=g), base[40:60],
                         torch.randn(40, 32, generator=g)])
    d_torch, i_torch = nearest_neighbours(queries, items, k=k, chunk_size=chunk, backend="torch")
    d_faiss, i_faiss = nearest_neighbours(queries, items, k=k, chunk_size=chunk, backend="faiss")
    assert torch.equal(i_faiss, i_torch) and torch.equal(d_faiss, d_torch) and d_faiss.dtype == torch.float64
    exact = exact_cdist(queries, items)
    assert torch.equal(d_faiss, exact.gather(1, i_faiss)) and torch.equal(d_faiss, exact.sort(1).values[:, :k])
    assert torch.equal(i_faiss[40:60, 0], torch.arange(40, 60)) and (d_faiss[40:60, :2] == 0).all()  # ties: lower
    if k >= 2:
        assert torch.equal(i_faiss[40:60, 1], torch.arange(140, 160))


def test_faiss_backend_needs_faiss_and_the_backend_is_checked(monkeypatch):
    import sys

    q, x = torch.randn(3, 4), torch.randn(6, 4)
    with pytest.raises(ValueError, match=r"^backend must be one of 'auto', 'torch', 'faiss', got 'gpu'$"):
        nearest_neighbours(q, x, backend="gpu")
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(ValueError, match=r"^backend='faiss' needs faiss-cpu installed"):
        nearest_neighbours(q, x, backend="faiss")
    auto, torch_only = nearest_neighbours(q, x, backend="auto"), nearest_neighbours(q, x, backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(auto, torch_only))


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


def _direct_pca_metrics(s: np.ndarray, r: np.ndarray, variance: float, bins: int) -> tuple[float, float, int]:
    """Independent reference (equal-size sets): eigendecomposition of the reference covariance, the fewest
    components reaching ``variance``, histograms on reference-quantile bins counted one bin at a time, JS and
    W1 from their formulas."""
    lam, vecs = np.linalg.eigh(np.cov(r.T, bias=True))
    lam, vecs = lam[::-1], vecs[:, ::-1]
    k = next(j + 1 for j in range(lam.size) if lam[:j + 1].sum() >= variance * lam.sum())
    ps, pr = (s - r.mean(0)) @ vecs[:, :k], (r - r.mean(0)) @ vecs[:, :k]
    w, js = [], []
    for c in range(k):
        inner = np.quantile(pr[:, c], np.arange(1, bins) / bins)
        lo, hi = np.concatenate([[-np.inf], inner]), np.concatenate([inner, [np.inf]])
        p, q = ([((x >= a) & (x < b)).sum() / x.size for a, b in zip(lo, hi)] for x in (ps[:, c], pr[:, c]))
        p, q = np.array(p), np.array(q)
        m = (p + q) / 2
        kl = lambda a: np.sum(np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / m), 0.0))  # noqa: E731
        js.append(np.sqrt((kl(p) + kl(q)) / 2))
        w.append(np.abs(np.sort(ps[:, c]) - np.sort(pr[:, c])).mean())  # W1 of two samples of one size
    return float(np.mean(w)), float(np.mean(js)), k


@pytest.mark.parametrize("variance, bins, k", [(0.95, 20, 2), (0.995, 10, 3), (0.5, 50, 1), (1.0, 7, 6)])
def test_pca_metrics_match_a_direct_computation(variance, bins, k):
    g = torch.Generator().manual_seed(7)
    scale = torch.tensor([10.0, 5.0, 1.0, 0.5, 0.3, 0.1], dtype=torch.float64)  # cumulative shares .79 .99 .997 ...
    # 1000 reference items: no quantile j / bins falls on an item, so the bins do not depend on PCA signs
    ref = torch.randn(1000, 6, generator=g, dtype=torch.float64) * scale
    samples = torch.randn(1000, 6, generator=g, dtype=torch.float64) * scale * 1.3 + 0.5
    out = pca_wasserstein_js(samples, ref, variance=variance, bins=bins)
    w, js, k_direct = _direct_pca_metrics(samples.numpy(), ref.numpy(), variance, bins)
    assert out["components"] == k_direct == k
    assert out["wasserstein"] == pytest.approx(w, rel=1e-9) and out["js"] == pytest.approx(js, rel=1e-9)


def test_pca_reference_quantile_bins_hold_equal_shares_and_catch_mass_outside_the_reference():
    g = torch.Generator().manual_seed(8)
    ref = torch.randn(400, 1, generator=g, dtype=torch.float64)
    assert pca_wasserstein_js(ref, ref, bins=20)["js"] == pytest.approx(0.0, abs=1e-7)
    # all samples beyond the reference's largest value: one open outer bin holds them all
    far = ref.max() + 1.0 + torch.rand(300, 1, generator=g, dtype=torch.float64)
    p = np.eye(20)[-1]
    q = np.full(20, 1 / 20)
    m = (p + q) / 2
    js = np.sqrt((np.sum(p[p > 0] * np.log2(p[p > 0] / m[p > 0])) + np.sum(q * np.log2(q / m))) / 2)
    assert pca_wasserstein_js(far, ref, bins=20)["js"] == pytest.approx(js, rel=1e-9)
    assert pca_wasserstein_js(far, ref)["components"] == 1


def test_pca_components_default_to_95_percent_and_stated_counts_are_capped_by_rank():
    g = torch.Generator().manual_seed(9)
    low_rank = torch.randn(500, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 8, generator=g,
                                                                                  dtype=torch.float64)
    assert pca_wasserstein_js(low_rank, low_rank, n_components=5)["components"] == 2
    assert pca_wasserstein_js(low_rank, low_rank)["components"] <= 2


@pytest.mark.parametrize("call, match", [
    (lambda: nearest_neighbours(torch.zeros(2, 3), torch.zeros(4, 5)), "same item size"),
    (lambda: nearest_neighbours(torch.zeros(2, 3), torch.zeros(1, 3)), "items must have shape"),
    (lambda: nearest_neighbours(torch.full((2, 3), float("nan")), torch.zeros(4, 3)), "queries"),
    (lambda: mmd_rbf(torch.zeros(3, 2), torch.ones(3, 2), bandwidth=-1.0), "bandwidth"),
    (lambda: frechet_distance(torch.zeros(1, 2), torch.zeros(5, 2)), "feat_a"),
    (lambda: pca_wasserstein_js(torch.randn(4, 2), torch.randn(5, 2), variance=0.0), "variance"),
    (lambda: pca_wasserstein_js(torch.randn(4, 2), torch.randn(5, 2), n_components=0), "n_components"),
    (lambda: pca_wasserstein_js(torch.randn(4, 2), torch.randn(5, 2), bins=0), "bins"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_frechet_bootstrap_matches_the_spread_over_fresh_sample_sets():
    """Calibration: the bootstrap half-width over one sample set agrees (within 35%) with the 95% spread of FD
    over 200 independent sample sets of the same size, and shrinks as the sample count grows."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    shift = torch.tensor([0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    fresh = [frechet_distance(torch.randn(500, 4, generator=g, dtype=torch.float64) * 1.2 + shift, ref)
             for _ in range(200)]
    lo, hi = np.quantile(fresh, [0.025, 0.975])
    one = torch.randn(500, 4, generator=g, dtype=torch.float64) * 1.2 + shift
    half = frechet_bootstrap(one, ref, reps=200)
    assert half == pytest.approx((hi - lo) / 2, rel=0.35)
    more = torch.randn(4000, 4, generator=g, dtype=torch.float64) * 1.2 + shift
    assert frechet_bootstrap(more, ref, reps=200) < 0.6 * half
    with pytest.raises(ValueError, match="reps must be an integer >= 2"):
        frechet_bootstrap(one, ref, reps=1)
