"""Sample metrics, with no downloaded weights: memorization of a training set and alignment with a reference.

Memorization (per sample, against the training set): ``d1 / d2`` of the distances to the nearest and
second-nearest training item (a copy when ``< 1/3``, Somepalli et al. / Carlini et al.), the distance
``d1`` itself, and the largest cosine similarity to a training item in a caller's feature space
(``> 0.9``, Shah et al.). Alignment: Wasserstein and Jensen-Shannon distances after PCA (Vu et al.),
RBF MMD with the median heuristic, Frechet distance on features.

Inputs are batches ``(B, *item_shape)``, flattened to ``(B, d)``. Everything that compares samples with
the training set streams over both in blocks, so 50,000 samples against 60,000 items of dimension 784
need ``O(block^2)`` memory.

Theory: docs/THEORY.md §6.3-6.7."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from theory.denoiser import check_finite, check_positive_int


def _flat(x: Tensor, name: str, min_rows: int = 1) -> Tensor:
    check_finite(x, name)
    if x.ndim < 1 or x.shape[0] < min_rows:
        raise ValueError(f"{name} must have shape (B, *item_shape) with B >= {min_rows}, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _same_dim(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} must have the same item size, got {a.shape[1]} and {b.shape[1]}")


NN_BACKENDS = ("auto", "torch", "faiss")  # nearest_neighbours's candidate searches


def _faiss():
    """The ``faiss`` module (package ``faiss-cpu``, extra ``fast-nn``), or ``None`` when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _rerank(q: Tensor, x: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest of each query's candidate items ``idx`` (``(B, c)``) by the float64 distance ``|q - x|``
    computed directly: ``(distances (B, k), indices (B, k))``, ascending, ties to the lower index."""
    idx = idx.sort(dim=1).values
    q64 = q.double()  # one candidate column at a time
    exact = torch.stack([(q64 - x[idx[:, j]].double()).norm(dim=1) for j in range(idx.shape[1])], 1)
    exact, order = exact.sort(dim=1, stable=True)
    return exact[:, :k], idx.gather(1, order)[:, :k]


def _torch_candidates(qb: Tensor, x: Tensor, x_sq: Tensor, cand: int, chunk_size: int) -> Tensor:
    """Indices ``(B, cand)`` of the smallest ``|x|^2 - 2 q.x`` per query (``qb``'s dtype), over item blocks."""
    best_d = torch.empty((qb.shape[0], 0), dtype=qb.dtype, device=qb.device)
    best_i = torch.empty((qb.shape[0], 0), dtype=torch.long, device=qb.device)
    for xs in range(0, x.shape[0], chunk_size):
        xb = x[xs:xs + chunk_size].to(qb.dtype)
        d2 = torch.addmm(x_sq[xs:xs + chunk_size].to(qb.dtype), qb, xb.T, alpha=-2)  # |x|^2 - 2 q.x
        bd, bi = d2.topk(min(cand, d2.shape[1]), dim=1, largest=False)
        d, i = torch.cat([best_d, bd], 1), torch.cat([best_i, bi + xs], 1)
        best_d, pos = d.topk(min(cand, d.shape[1]), dim=1, largest=False)
        best_i = i.gather(1, pos)
    return best_i


def _faiss_candidates(faiss, qb: Tensor, xf: np.ndarray, cand: int) -> Tensor:
    """Indices ``(B, cand)`` of the smallest float32 ``|q - x|^2`` per query by faiss's flat L2 search over the
    items ``xf`` (contiguous float32), on ``torch.get_num_threads()`` OpenMP threads (restored afterwards)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        return torch.from_numpy(faiss.knn(qb.detach().float().contiguous().numpy(), xf, cand)[1])
    finally:
        faiss.omp_set_num_threads(threads)


def nearest_neighbours(queries: Tensor, items: Tensor, k: int = 2, chunk_size: int = 4096,
                       backend: str = "torch") -> tuple[Tensor, Tensor]:
    """Exact Euclidean ``k`` nearest items of each query: ``(distances (B, k), indices (B, k))``, ascending
    (docs/THEORY.md §6.3).

    Per block of ``chunk_size`` queries, ``c = min(k + 2, n)`` candidates are found approximately, then their
    distances are recomputed as ``|q - x|`` in float64 and sorted (ties to the lower index), so near-duplicates
    are ranked exactly. The returned distances are these float64 distances. Candidates, by ``backend``:

    - ``"torch"``: the smallest ``|x|^2 - 2 q.x`` (``|q|^2`` does not change the ranking) in the queries' dtype,
      a running top-``c`` over blocks of ``chunk_size`` items;
    - ``"faiss"``: faiss's exact flat L2 search (``faiss.knn``, the search of ``IndexFlatL2`` without copying the
      items into an index) in float32 on ``torch.get_num_threads()`` threads; CPU tensors only;
    - ``"auto"``: faiss when it is installed, the tensors are on CPU and the queries are not float64 (float64
      queries keep float64 candidates), torch otherwise.

    torch is the default: faiss did not win the same-run benchmark (``memdiff bench sim --nn``, BENCHMARKS.md)."""
    q, x = _flat(queries, "queries"), _flat(items, "items", min_rows=k)
    _same_dim(q, x, "queries and items")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if backend not in NN_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, NN_BACKENDS))}, got {backend!r}")
    faiss = None if backend == "torch" else _faiss()
    on_cpu = q.device.type == x.device.type == "cpu"
    if backend == "faiss" and (faiss is None or not on_cpu):
        raise ValueError("backend='faiss' needs faiss-cpu installed (extra 'fast-nn') and CPU tensors; "
                         "use backend='auto' or 'torch'")
    cand = min(k + 2, x.shape[0])
    if faiss is not None and on_cpu and (backend == "faiss" or q.dtype != torch.float64):
        xf = x.detach().float().contiguous().numpy()
        parts = [_rerank(qb, x, _faiss_candidates(faiss, qb, xf, cand), k) for qb in q.split(chunk_size)]
    else:
        x_sq = x.square().sum(1)
        parts = [_rerank(qb, x, _torch_candidates(qb, x, x_sq, cand, chunk_size), k) for qb in q.split(chunk_size)]
    return torch.cat([d for d, _ in parts]), torch.cat([i for _, i in parts])


def max_cosine(features: Tensor, train_features: Tensor, chunk_size: int = 4096) -> Tensor:
    """Largest cosine similarity of each feature row to any training feature row, ``(B,)`` float64."""
    f = torch.nn.functional.normalize(_flat(features, "features").double(), dim=1)
    g = torch.nn.functional.normalize(_flat(train_features, "train_features").double(), dim=1)
    _same_dim(f, g, "features and train_features")
    best = torch.full((f.shape[0],), -1.0, dtype=torch.float64)
    for fs in range(0, f.shape[0], chunk_size):
        for gs in range(0, g.shape[0], chunk_size):
            sim = (f[fs:fs + chunk_size] @ g[gs:gs + chunk_size].T).amax(dim=1)
            best[fs:fs + chunk_size] = torch.maximum(best[fs:fs + chunk_size], sim)
    return best


def nearest_ratio(samples: Tensor, train: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: ``d1 / d2`` (nearest over second-nearest training distance, §6.3), ``d1`` and the nearest
    training item's index."""
    s, t = _flat(samples, "samples"), _flat(train, "train", min_rows=2)
    _same_dim(s, t, "samples and train")
    d, idx = nearest_neighbours(s, t, k=2)
    return d[:, 0] / d[:, 1].clamp_min(torch.finfo(torch.float64).tiny), d[:, 0], idx[:, 0]


DIVERGED_FACTOR = 10.0  # a sample is diverged when d_1 exceeds this many times the held-out items' largest d_1


def divergence_limit(heldout: Tensor, train: Tensor) -> float:
    """The distance past which a sample counts as diverged (:func:`sample_shares`): ``DIVERGED_FACTOR`` times the
    largest nearest-training distance ``d_1`` of the held-out items ``heldout`` (docs/THEORY.md §3.8)."""
    return DIVERGED_FACTOR * float(nearest_ratio(heldout, train)[1].max())


def within_limit(samples: Tensor, train: Tensor, limit: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample, whether it did not diverge (it is finite and its nearest training distance ``d_1`` is at most
    ``limit``), and ``d_1 / d_2`` and ``d_1`` of the samples that did not. A diverged sample was blown up by the
    sampler: neither a copy nor a datum, and its distance would swamp a mean."""
    flat = samples.flatten(1)
    finite = flat.isfinite().all(1)
    kept, ratio, d1 = finite.clone(), flat.new_zeros(0), flat.new_zeros(0)
    if bool(finite.any()):
        ratio, d1, _ = nearest_ratio(flat[finite], train)
        near = d1 <= limit
        kept[finite] = near
        ratio, d1 = ratio[near], d1[near]
    return kept, ratio, d1


def sample_shares(samples: Tensor, train: Tensor, limit: float) -> dict[str, float]:
    """``copy_share`` (``d_1 / d_2 < 1/3``, §6.3) and ``diverged_share`` (:func:`within_limit`) of ``samples``
    against ``train``, both shares of all samples, and ``nn_distance``, the mean ``d_1`` of the samples that did
    not diverge (NaN if none)."""
    kept, ratio, d1 = within_limit(samples, train, limit)
    total = kept.numel()
    return {"copy_share": float((ratio < 1 / 3).sum()) / total, "diverged_share": float((~kept).sum()) / total,
            "nn_distance": float(d1.mean()) if d1.numel() else math.nan}


def memorization_report(samples: Tensor, train: Tensor, features: Tensor | None = None,
                        train_features: Tensor | None = None, ratio: float = 1 / 3,
                        cosine_thresholds: tuple[float, ...] = (0.9, 0.95)) -> dict[str, float]:
    """``copy_share`` (share with ``d1 / d2 < ratio``), ``nn_distance`` (mean ``d1``), ``nn_ratio_mean``,
    ``max_cosine_mean`` and ``cosine_share`` (share with max cosine ``> 0.9``; one key
    ``cosine_share_<t>`` per further threshold). Cosines use ``features`` / ``train_features`` when given,
    the raw samples otherwise."""
    s, t = _flat(samples, "samples"), _flat(train, "train", min_rows=2)
    r, d1, _ = nearest_ratio(s, t)
    if (features is None) != (train_features is None):
        raise ValueError("features and train_features must be given together")
    cos = max_cosine(s, t) if features is None else max_cosine(features, train_features)
    if cos.shape[0] != s.shape[0]:
        raise ValueError(f"features must have one row per sample ({s.shape[0]}), got {cos.shape[0]}")
    report = {"copy_share": float((r < ratio).double().mean()), "nn_distance": float(d1.mean()),
              "nn_ratio_mean": float(r.mean()), "max_cosine_mean": float(cos.mean())}
    for i, thr in enumerate(cosine_thresholds):
        report["cosine_share" if i == 0 else f"cosine_share_{thr:g}"] = float((cos > thr).double().mean())
    return report


def pca_wasserstein_js(samples: Tensor, reference: Tensor, n_components: int | None = None, variance: float = 0.95,
                       bins: int | None = None) -> dict[str, float]:
    """Vu et al.'s alignment metrics, reconstructed (their code is not public; docs/THEORY.md §6.6). PCA is
    fitted on ``reference`` (``m`` items) with ``k`` components: the fewest that explain ``>= variance`` of its
    variance, or ``n_components`` when stated, capped by its rank; both sets are projected. Per component:
    the 1D Wasserstein-1 distance, and the Jensen-Shannon distance (base 2, in ``[0, 1]``) of the histograms
    on ``bins`` bins that each hold ``1/bins`` of the reference (interior edges at its quantiles ``j/bins``,
    the two outer bins open-ended), ``bins = min(50, floor(sqrt(m)))`` unless given. Returns the means over
    the components, ``wasserstein`` and ``js``, and ``components = k``."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    s, r = _flat(samples, "samples", 2).double(), _flat(reference, "reference", 2).double()
    _same_dim(s, r, "samples and reference")
    if not (isinstance(variance, (int, float)) and 0 < variance <= 1):
        raise ValueError(f"variance must be a fraction in (0, 1], got {variance!r}")
    bins = min(50, math.isqrt(r.shape[0])) if bins is None else check_positive_int(bins, "bins")
    mean = r.mean(0)
    _, sv, vt = torch.linalg.svd(r - mean, full_matrices=False)
    ev = sv.square().numpy()
    if n_components is None:
        k = int((np.cumsum(ev) < variance * ev.sum()).sum()) + 1  # the fewest that reach ``variance``
    else:
        k = check_positive_int(n_components, "n_components")
    k = min(k, max(1, int((sv > 1e-12 * sv[0]).sum())))
    ps, pr = ((s - mean) @ vt[:k].T).numpy(), ((r - mean) @ vt[:k].T).numpy()
    w = [wasserstein_distance(ps[:, c], pr[:, c]) for c in range(k)]
    edges = np.quantile(pr, np.arange(1, bins) / bins, axis=0)  # (bins - 1, k)

    def hist(p: np.ndarray) -> np.ndarray:  # (k, bins): counts per component in its quantile bins
        return np.stack([np.bincount(np.searchsorted(e, x, side="right"), minlength=bins)
                         for e, x in zip(edges.T, p.T)])

    js = jensenshannon(hist(ps), hist(pr), axis=1, base=2)
    return {"wasserstein": float(np.mean(w)), "js": float(np.mean(js)), "components": k}


def mmd_rbf(x: Tensor, y: Tensor, bandwidth: float | None = None, chunk_size: int = 2048) -> float:
    """Unbiased ``MMD^2 = E k(x,x') + E k(y,y') - 2 E k(x,y)`` with ``k = exp(-|a-b|^2 / (2 h^2))``; ``h`` is the
    median pairwise distance of the pooled sets (on at most 2000 points) unless given."""
    a, b = _flat(x, "x", 2).double(), _flat(y, "y", 2).double()
    _same_dim(a, b, "x and y")
    if bandwidth is None:
        pool = torch.cat([a, b])
        pool = pool[torch.randperm(pool.shape[0], generator=torch.Generator().manual_seed(0))[:2000]]
        dist = torch.pdist(pool)
        bandwidth = float(dist.median()) if dist.numel() and float(dist.median()) > 0 else 1.0
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")

    def kernel_sum(p: Tensor, q: Tensor) -> float:
        total = 0.0
        for i in range(0, p.shape[0], chunk_size):
            total += float(torch.exp(-torch.cdist(p[i:i + chunk_size], q).square() / (2 * bandwidth**2)).sum())
        return total

    n, m = a.shape[0], b.shape[0]
    kxx = (kernel_sum(a, a) - n) / (n * (n - 1))
    kyy = (kernel_sum(b, b) - m) / (m * (m - 1))
    return kxx + kyy - 2 * kernel_sum(a, b) / (n * m)


def frechet_distance(feat_a: Tensor, feat_b: Tensor) -> float:
    """``|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)`` of two feature sets (float64; the matrix
    square roots by symmetric eigendecomposition, negative rounding eigenvalues clipped to 0)."""
    a, b = _flat(feat_a, "feat_a", 2).double(), _flat(feat_b, "feat_b", 2).double()
    _same_dim(a, b, "feat_a and feat_b")

    def psd_sqrt(m: Tensor) -> Tensor:
        vals, vecs = torch.linalg.eigh((m + m.T) / 2)
        return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T

    ca, cb = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    root_a = psd_sqrt(ca)
    cross = psd_sqrt(root_a @ cb @ root_a)
    return float((a.mean(0) - b.mean(0)).square().sum() + torch.trace(ca + cb - 2 * cross))


def frechet_bootstrap(feat_a: Tensor, feat_b: Tensor, reps: int = 100, level: float = 0.95, seed: int = 0) -> float:
    """Half-width of the ``level`` percentile bootstrap interval of ``frechet_distance(feat_a, feat_b)`` over
    ``feat_a``'s rows (``reps`` resamples with replacement, ``feat_b`` held fixed): the spread of FD that the
    number of samples alone leaves, half the distance between the ``(1 -+ level) / 2`` quantiles."""
    if not (isinstance(reps, int) and reps >= 2):
        raise ValueError(f"reps must be an integer >= 2, got {reps!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    a = _flat(feat_a, "feat_a", 2)
    g = torch.Generator().manual_seed(seed)
    fds = [frechet_distance(a[torch.randint(a.shape[0], (a.shape[0],), generator=g)], feat_b) for _ in range(reps)]
    lo, hi = np.quantile(fds, [(1 - level) / 2, (1 + level) / 2])
    return float((hi - lo) / 2)
