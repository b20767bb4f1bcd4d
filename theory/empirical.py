"""The empirical optimal denoiser: the posterior mean when the prior is the training set itself.

For items ``x_1..x_n`` the noisy marginal is ``p_sigma(x) = (1/n) sum_i N(x; x_i, sigma^2 I)`` and

    D(x, sigma) = sum_i w_i x_i,   w_i = softmax_i(l_i),   l_i = -||x - x_i||^2 / (2 sigma^2).

Numerics (data and queries are first centred at the data mean, which leaves ``D`` unchanged). Logits are
kept relative to an *anchor* item ``a`` per query (the one with the largest matmul score), ``r_i = l_i - l_a``,
so the term ``||x||^2 / (2 sigma^2)`` common to all items is never formed (docs/THEORY.md §2.1.3, note).
Per chunk of ``chunk_size`` items one matmul gives ``g_i = x.x_i - ||x_i||^2 / 2`` and
``r_i = (g_i - g_a) / sigma^2``. In float32 these carry an error of up to about
``E = 4 u ((sqrt(d) + 2) ||x|| Y + Y^2) / sigma^2`` nats (``u`` the unit roundoff, ``Y = max_i ||x_i||``;
measured worst cases stay under a fifth of it), thousands of nats at small ``sigma``. So:

1. first pass: the ``exact_top`` largest matmul scores of every chunk are recomputed in float64 from
   differences of the items as given, ``r_i = (e.delta_i - ||delta_i||^2 / 2) / sigma^2`` with
   ``e = x - x_a``, ``delta_i = x_i - x_a``; this fixes the maximum logit of every query;
2. second pass, for each (query, chunk) pair: if the chunk's ``k``-th matmul logit plus ``E`` lies more
   than ``40 + log n`` nats under that maximum, its other items are skipped (total weight below ``e^-40``
   relative); otherwise they are added with their matmul logits when ``E <= logit_tol``, or with
   float64-matmul logits (error ``E`` with the float64 ``u``) when not, in blocks of ``rest_block`` elements.

So the weights are exact up to ``logit_tol`` nats (default 1e-5) wherever the float64 ``E`` is below it:
every query but far ones (``||x|| Y / sigma^2`` beyond ~1e10). Elsewhere every logit is within the float64
``E``, about ``1e-15 sqrt(d)`` of the logit scale ``||x|| Y / sigma^2``, so both limits of §1.6 come out as
they should: as ``||x|| / sigma^2`` grows the weights become one-hot on the nearest item (shared among items
closer than ``E`` in logit), and as ``sigma`` grows (also once ``1 / sigma^2`` underflows to 0) uniform, with
``D`` the mean. Only where ``(||x|| + Y)^2 / sigma^2`` nears the float64 maximum (1e308) can no logit be
held: such queries are rejected with a ``ValueError`` naming ``x``. Matmuls run in float32 for float32
queries, in float64 where ``(||x|| + Y)^2`` or ``1 / sigma^2`` nears the float32 maximum. The float32 path
is used wherever that is possible, and where the posterior is concentrated the cost is one matmul per
chunk. Statistics are merged with an online log-sum-exp (:class:`SoftmaxStats`): working memory is
``O(B (chunk_size + exact_top d) + rest_block)``, whatever ``n``.

Theory: docs/THEORY.md §2.1 (and §1.2, §1.6, §1.8)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import Tensor

from theory.denoiser import Sigma, check_batch, check_data, check_positive_int, expand_like, sigma_per_item


@dataclass(frozen=True)
class Posterior:
    """Summary of the posterior weights ``w`` over training items at one query.

    ``mean`` ``(B, *item_shape)``; ``max_weight``, ``argmax`` (item index), ``entropy`` ``H(w)`` in nats and
    ``log_normalizer = log sum_i exp(l_i)`` are ``(B,)``.
    """

    mean: Tensor
    max_weight: Tensor
    argmax: Tensor
    entropy: Tensor
    log_normalizer: Tensor


@dataclass(frozen=True)
class SoftmaxStats:
    """Associative online log-sum-exp statistics of logits ``l_j`` and values ``v_j`` over rows ``R``.

    Relative to a reference ``m`` (R,): ``s = sum exp(l - m)``, ``t = sum exp(l - m)(l - m)``,
    ``acc = sum exp(l - m) v`` (R, V), plus the largest logit ``best`` and its index ``arg``.
    Merging two chunks rescales both to the larger reference, so chunks can be streamed in any order.
    """

    m: Tensor
    s: Tensor
    t: Tensor
    acc: Tensor
    best: Tensor
    arg: Tensor

    @classmethod
    def from_logits(cls, rel: Tensor, shift: Tensor, weighted_sum: Callable[[Tensor], Tensor],
                    index: Tensor) -> SoftmaxStats:
        """Chunk statistics of logits ``shift[:, None] + rel`` (rel <= ~0); ``weighted_sum(W)`` returns ``W @ v``."""
        w = torch.exp(rel)
        top, pos = rel.max(dim=1)
        return cls(m=shift, s=w.sum(1, dtype=torch.float64), t=torch.linalg.vecdot(w, rel).to(torch.float64),
                   acc=weighted_sum(w).to(torch.float64), best=shift + top.to(torch.float64),
                   arg=index.gather(1, pos[:, None]).squeeze(1))

    def merge(self, other: SoftmaxStats | None) -> SoftmaxStats:
        if other is None:
            return self
        m = torch.maximum(self.m, other.m)
        a, b = torch.exp(self.m - m), torch.exp(other.m - m)
        better = other.best > self.best
        return SoftmaxStats(
            m=m, s=a * self.s + b * other.s,
            t=a * (self.t + (self.m - m) * self.s) + b * (other.t + (other.m - m) * other.s),
            acc=a[:, None] * self.acc + b[:, None] * other.acc,
            best=torch.where(better, other.best, self.best), arg=torch.where(better, other.arg, self.arg))

    def take(self, rows: Tensor) -> SoftmaxStats:
        """The statistics of ``rows`` only."""
        return SoftmaxStats(*(getattr(self, f.name)[rows] for f in fields(self)))

    def put(self, rows: Tensor, part: SoftmaxStats) -> SoftmaxStats:
        """These statistics with ``rows`` replaced by ``part``."""
        return SoftmaxStats(*(getattr(self, f.name).index_copy(0, rows, getattr(part, f.name)) for f in fields(self)))

    def mean(self) -> Tensor:
        return self.acc / self.s[:, None]

    def log_normalizer(self) -> Tensor:
        return self.m + torch.log(self.s)

    def entropy(self) -> Tensor:
        """``H = log Z - E_w[l] = log s - t / s`` (clamped at 0 against rounding)."""
        return (torch.log(self.s) - self.t / self.s).clamp_min(0.0)

    def max_weight(self) -> Tensor:
        return torch.exp(self.best - self.m) / self.s


def sigma64(sigma: Sigma, x: Tensor) -> Tensor:
    """``sigma_per_item`` in float64: a Python float keeps its full precision even for float32 queries."""
    return sigma_per_item(sigma, x.new_empty(x.shape[0], dtype=torch.float64))


def check_logit_range(norm: Tensor, radius: float, sigma: Tensor) -> Tensor:
    """``(||x|| + Y)^2`` (B,) for centred query norms ``norm`` (B,), item radius ``Y = max ||x_i||`` and noise
    levels ``sigma`` (B,), all float64. Raises a ``ValueError`` naming ``x`` unless ``(||x|| + Y)^2 / sigma^2``,
    which bounds every logit and logit difference up to a factor 4, stays 16 times below the float64 maximum:
    beyond, no logit can be held."""
    limit = torch.finfo(torch.float64).max / 16
    span = (norm + radius).square()
    scale = span / sigma.square()  # inf (overflow, or 1/0 once sigma^2 underflows) and NaN (0/0) fail below
    if not bool((scale < limit).all()):
        worst = int(torch.nan_to_num(scale, nan=math.inf).argmax())
        raise ValueError(f"x is out of float64 range for this sigma: (||x - mean|| + max||x_i - mean||)^2 / sigma^2 "
                         f"must stay below {limit:.2g}, got ||x - mean|| = {norm[worst].item():.3g} at "
                         f"sigma = {sigma[worst].item():.3g}")
    return span


@dataclass(frozen=True)
class _Query:
    """A centred query block: float64 copy for exact work, compute-dtype copy for matmuls."""

    raw64: Tensor    # (B, d) float64, as given
    x64: Tensor      # (B, d) float64, centred
    xc: Tensor       # (B, d) compute dtype, centred
    norm: Tensor     # (B,) float64, ||x|| (centred)
    inv_s2: Tensor   # (B,) float64, 1 / sigma^2


@dataclass(frozen=True)
class _Chunk:
    """Items ``lo:hi`` after their matmul: chunk-local indices ``idx`` (B, k) of the ``k`` largest
    compute-dtype scores ``g``, and the largest (``first``) and ``k``-th (``kth``) of those scores (B,)."""

    lo: int
    hi: int
    idx: Tensor
    first: Tensor
    kth: Tensor


@dataclass(frozen=True)
class _Anchor:
    """The anchor item ``a`` of every query, to which logits are relative: ``r_i = l_i - l_a``."""

    index: Tensor  # (B,) item index
    raw: Tensor    # (B, d) float64, x_a as given
    item: Tensor   # (B, d) float64, x_a centred
    e: Tensor      # (B, d) float64, x - x_a from the items as given
    g: Tensor      # (B,) float64, g_a = x.x_a - ||x_a||^2 / 2 (centred)
    log: Tensor    # (B,) float64, l_a = -||x - x_a||^2 / (2 sigma^2)


class EmpiricalDenoiser:
    """``D(x, sigma) = sum_i softmax_i(-||x - x_i||^2 / (2 sigma^2)) x_i`` for any item shape.

    ``chunk_size`` items per matmul; ``exact_top`` logits per chunk recomputed exactly; matmul logits
    accepted within ``logit_tol`` nats (module docstring). Matmuls run in the query's dtype, exact logits
    and accumulators in float64; outputs come back in the query's dtype.
    """

    query_block = 256
    error_margin = 4.0
    rest_block = 2 ** 21  # elements of an item block in the second pass (16 MiB in float64)

    def __init__(self, data: Tensor, chunk_size: int = 16384, exact_top: int = 8, logit_tol: float = 1e-5) -> None:
        check_data(data)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.exact_top = check_positive_int(exact_top, "exact_top")
        if not (isinstance(logit_tol, (int, float)) and math.isfinite(logit_tol) and logit_tol >= 0):
            raise ValueError(f"logit_tol must be a finite float >= 0 (nats), got {logit_tol!r}")
        self.logit_tol = float(logit_tol)
        self.item_shape = tuple(data.shape[1:])
        self.n = data.shape[0]
        self.d = data[0].numel()
        self.flat = data.reshape(self.n, self.d)  # the items as given (exact logits use these)
        spans = [slice(lo, lo + 1024) for lo in range(0, self.n, 1024)]  # bounded temporaries
        self.center = sum(self.flat[sp].to(torch.float64).sum(0) for sp in spans) / self.n
        self.centered = torch.empty_like(self.flat)  # centred copy in the data's dtype, for the matmuls
        self.half_sq = torch.empty(self.n, dtype=torch.float64, device=data.device)
        for sp in spans:
            c = self._exact(sp)
            self.centered[sp], self.half_sq[sp] = c, 0.5 * c.square().sum(1)
        self.radius = math.sqrt(2 * self.half_sq.max().item())  # Y = max ||x_i|| (centred)
        self.skip_nats = 40.0 + math.log(self.n)

    @property
    def data(self) -> Tensor:
        """The training items ``(n, *item_shape)``."""
        return self.flat.reshape(self.n, *self.item_shape)

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        return self.posterior(x, sigma).mean

    def posterior(self, x: Tensor, sigma: Sigma) -> Posterior:
        """Streamed posterior summary at ``x`` (B, *item_shape), noise level ``sigma``, in ``x``'s dtype."""
        p = self.posterior64(x, sigma)
        return Posterior(p.mean.to(x.dtype), p.max_weight.to(x.dtype), p.argmax, p.entropy.to(x.dtype),
                         p.log_normalizer.to(x.dtype))

    def posterior64(self, x: Tensor, sigma: Sigma) -> Posterior:
        """:meth:`posterior` with every float field in float64 (for exact downstream arithmetic)."""
        parts = [self._posterior_block(q) for q in self._queries(x, sigma)]
        mean, *rest = (torch.cat(p) for p in zip(*parts))
        return Posterior((mean + self.center.to(x.device)).reshape(x.shape), *rest)

    def weights(self, x: Tensor, sigma: Sigma) -> Tensor:
        """Dense posterior weights ``(B, n)`` (same logits as :meth:`posterior`, none skipped; memory ``O(B n)``)."""
        blocks = []
        for q in self._queries(x, sigma):
            scores = [(self._matmul(q, lo, hi), lo, hi) for lo, hi in self._spans()]
            chunks = [self._chunk(g, lo, hi) for g, lo, hi in scores]
            a = self._anchor(q, chunks)
            fine = torch.nonzero(self._error(q) > self.logit_tol).squeeze(1)
            logits = []
            for (g, lo, hi), c in zip(scores, chunks):
                rest = self._relative(g, q, a, slice(None)).to(torch.float64)
                if fine.numel():
                    g64 = self._scores(q, fine, self._exact(slice(lo, hi)), lo, hi, precise=True)
                    rest = rest.index_copy(0, fine, self._relative(g64, q, a, fine))
                logits.append(rest.scatter(1, c.idx, self._top_logits(q, a, c)[1]))
            blocks.append(torch.softmax(torch.cat(logits, 1), dim=1))
        return torch.cat(blocks).to(x.dtype)

    def log_density(self, x: Tensor, sigma: Sigma) -> Tensor:
        """``log p_sigma(x) = log Z - log n - (d/2) log(2 pi sigma^2)``, ``Z = sum_i exp(l_i)``; shape (B,)."""
        log_z = self.posterior64(x, sigma).log_normalizer
        s2 = sigma64(sigma, x).square()
        return (log_z - math.log(self.n) - 0.5 * self.d * torch.log(2 * math.pi * s2)).to(x.dtype)

    def score(self, x: Tensor, sigma: Sigma) -> Tensor:
        """Tweedie: ``grad log p_sigma(x) = (D(x) - x) / sigma^2``."""
        mean = self.posterior64(x, sigma).mean
        s2 = sigma64(sigma, x).square()
        return ((mean - x.to(torch.float64)) / expand_like(s2, x)).to(x.dtype)

    # -- internals -------------------------------------------------------------------------------

    def _queries(self, x: Tensor, sigma: Sigma):
        """Validate ``x``, ``sigma`` and yield centred query blocks of ``query_block`` rows."""
        check_batch(x, self.item_shape)
        s = sigma64(sigma, x)
        raw = x.reshape(x.shape[0], self.d).to(torch.float64)
        for lo in range(0, x.shape[0], self.query_block):
            r, sig = raw[lo:lo + self.query_block], s[lo:lo + self.query_block]
            q = r - self.center.to(x.device)
            norm, inv_s2 = q.square().sum(1).sqrt(), 1.0 / sig.square()
            span = check_logit_range(norm, self.radius, sig)
            room = torch.finfo(x.dtype).max / 16  # float32 matmuls only where no float32 term can overflow
            fits = bool(((span < room) & (inv_s2 < room)).all())
            yield _Query(r, q, q.to(x.dtype) if fits else q, norm, inv_s2)

    def _spans(self):
        return ((lo, min(lo + self.chunk_size, self.n)) for lo in range(0, self.n, self.chunk_size))

    def _exact(self, rows: slice | Tensor) -> Tensor:
        """Centred items ``rows`` in float64, from the items as given (one promoting subtraction)."""
        return self.flat[rows] - self.center

    def _scores(self, q: _Query, rows: Tensor | slice, items: Tensor, lo: int, hi: int, precise: bool) -> Tensor:
        """Matmul scores ``g = x.x_i - ||x_i||^2/2`` (len(rows), hi - lo) of query ``rows`` against centred
        ``items`` (= items ``lo:hi``): float64 if ``precise``, else in the compute dtype. A transposed view:
        ``(items @ x^T)^T`` is faster than ``x @ items^T`` on CPU BLAS."""
        if precise:
            return torch.addmm(-self.half_sq[lo:hi, None], items, q.x64[rows].T).T
        dt = q.xc.dtype
        return torch.addmm(-self.half_sq[lo:hi, None].to(dt), items.to(dt), q.xc[rows].T).T

    def _matmul(self, q: _Query, lo: int, hi: int) -> Tensor:
        """Compute-dtype scores ``g`` (B, hi - lo) of items ``lo:hi`` for every query of the block."""
        return self._scores(q, slice(None), self.centered[lo:hi], lo, hi, precise=False).contiguous()

    def _chunk(self, g: Tensor, lo: int, hi: int) -> _Chunk:
        top = g.topk(min(self.exact_top, hi - lo), dim=1)
        return _Chunk(lo, hi, top.indices, top.values[:, 0], top.values[:, -1])

    def _anchor(self, q: _Query, chunks: list[_Chunk]) -> _Anchor:
        """Per query the item with the largest matmul score over all chunks."""
        firsts = torch.stack([c.first for c in chunks], 1)
        starts = torch.stack([c.idx[:, 0] + c.lo for c in chunks], 1)
        index = starts.gather(1, firsts.argmax(1, keepdim=True)).squeeze(1)
        raw, item = self.flat[index].to(torch.float64), self._exact(index)
        e = q.raw64 - raw
        return _Anchor(index, raw, item, e, g=torch.linalg.vecdot(q.x64, item) - self.half_sq[index],
                       log=-0.5 * e.square().sum(1) * q.inv_s2)

    @staticmethod
    def _relative(g: Tensor, q: _Query, a: _Anchor, rows: Tensor | slice) -> Tensor:
        """Logits relative to the anchor's, ``(g - g_a) / sigma^2``, in ``g``'s dtype (one fused pass)."""
        inv_s2 = q.inv_s2[rows]
        return torch.addcmul((-a.g[rows] * inv_s2).to(g.dtype)[:, None], g, inv_s2.to(g.dtype)[:, None])

    def _top_stats(self, q: _Query, a: _Anchor, c: _Chunk) -> SoftmaxStats:
        """Statistics of the chunk's top-k items from their exact logits."""
        delta, r = self._top_logits(q, a, c)
        shift = r.max(1).values
        # sum_k w_k (x_k - center) = (sum_k w_k)(x_a - center) + sum_k w_k (x_k - x_a)
        return SoftmaxStats.from_logits(
            r - shift[:, None], shift,
            lambda w: w.sum(1, keepdim=True) * a.item + torch.einsum("bk,bkd->bd", w, delta), c.idx + c.lo)

    def _top_logits(self, q: _Query, a: _Anchor, c: _Chunk) -> tuple[Tensor, Tensor]:
        """The chunk's top-k items as float64 differences ``delta = x_i - x_a`` (B, k, d) and their exact
        relative logits ``r_i = (e.delta_i - ||delta_i||^2 / 2) / sigma^2`` (B, k), ``e = x - x_a``."""
        delta = self.flat[c.lo:c.hi][c.idx].to(torch.float64) - a.raw[:, None]
        r = (torch.einsum("bd,bkd->bk", a.e, delta) - 0.5 * delta.square().sum(-1)) * q.inv_s2[:, None]
        return delta, r

    def _error(self, q: _Query) -> Tensor:
        """Error radius ``E`` (B,) in nats of the compute-dtype relative matmul logits (``u`` of the coarser of
        the compute dtype and the centred items' dtype)."""
        u = max(torch.finfo(q.xc.dtype).eps, torch.finfo(self.centered.dtype).eps) / 2
        y = self.radius
        return self.error_margin * u * ((math.sqrt(self.d) + 2) * q.norm * y + y * y) * q.inv_s2

    def _posterior_block(self, q: _Query) -> tuple[Tensor, ...]:
        """Two passes. 1: the exact top-k of every chunk, which fixes the maximum logit. 2: the other items,
        only for the (query, chunk) pairs whose ``k``-th logit bound is not negligible against that maximum."""
        chunks = [self._chunk(self._matmul(q, lo, hi), lo, hi) for lo, hi in self._spans()]
        a = self._anchor(q, chunks)
        total: SoftmaxStats | None = None
        for c in chunks:
            total = self._top_stats(q, a, c).merge(total)
        err = self._error(q)
        for c in chunks:
            if c.hi - c.lo == c.idx.shape[1]:
                continue
            kth = (c.kth.to(torch.float64) - a.g) * q.inv_s2
            dense = kth + err > total.m - self.skip_nats
            for mask, precise in ((dense & (err <= self.logit_tol), False), (dense & (err > self.logit_tol), True)):
                rows = torch.nonzero(mask).squeeze(1)
                if rows.numel():
                    total = self._add_rest(total, q, a, rows, c, precise)
        return (total.mean(), total.max_weight(), total.arg, total.entropy(), a.log + total.log_normalizer())

    def _add_rest(self, total: SoftmaxStats, q: _Query, a: _Anchor, rows: Tensor, c: _Chunk,
                  precise: bool) -> SoftmaxStats:
        """Merge into ``total`` the items of chunk ``c`` except its already-counted top-k, for query ``rows``, in
        blocks of bounded size; float64 matmuls if ``precise``. A block's reference is the larger of ``total.m``
        and its own largest logit: an item above every exact top-k logit (the matmul ranks only to within ``E``)
        rescales the sums instead of overflowing ``exp``."""
        part = total.take(rows)
        idx = c.idx[rows]
        step = max(1, self.rest_block // self.d)
        for lo in range(c.lo, c.hi, step):
            hi = min(lo + step, c.hi)
            items = self._exact(slice(lo, hi)) if precise else self.centered[lo:hi]
            rel = self._relative(self._scores(q, rows, items, lo, hi, precise), q, a, rows)
            local = idx - (lo - c.lo)
            r, j = ((local >= 0) & (local < hi - lo)).nonzero(as_tuple=True)
            rel = rel.index_put((r, local[r, j]), rel.new_tensor(-math.inf))  # the exact top-k, already counted
            shift = torch.maximum(part.m, rel.amax(1).to(torch.float64))
            rel = (rel - shift.to(rel.dtype)[:, None]).clamp_min(-1e4)  # exp(-1e4) = 0, and 0 * -1e4 = 0 in t
            index = torch.arange(lo, hi, device=rel.device).expand(rows.numel(), -1)
            part = SoftmaxStats.from_logits(rel, shift, lambda w: w @ items.to(w.dtype), index).merge(part)
        return total.put(rows, part)
