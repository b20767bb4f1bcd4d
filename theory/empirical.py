"""The empirical optimal denoiser: the posterior mean when the prior is the training set itself.

For items ``x_1..x_n`` the noisy marginal is ``p_sigma(x) = (1/n) sum_i N(x; x_i, sigma^2 I)`` and

    D(x, sigma) = sum_i w_i x_i,   w_i = softmax_i(l_i),   l_i = -||x - x_i||^2 / (2 sigma^2).

Numerics (data and queries are first centred at the data mean, which leaves ``D`` unchanged). Logits are
kept relative to an *anchor* item ``a`` per query, ``r_i = l_i - l_a``, so the term ``||x||^2 / (2 sigma^2)``
common to all items is never formed (docs/THEORY.md §2.1.3, note). A matmul gives
``g_i = x.x_i - ||x_i||^2 / 2`` and ``r_i = (g_i - g_a) / sigma^2``; with unit roundoff ``u`` these carry an
error of up to ``E(u) = 4 u ((sqrt(d) + 2) ||x|| Y + Y^2) / sigma^2`` nats (``Y = max_i ||x_i||``; measured
worst cases stay under a fifth of it), thousands of nats at small ``sigma`` in float32. Exponentials and
weighted sums run on shifted logits ``z = r - m <= 0`` in a *softmax dtype* with roundoff ``u_w``; every item
whose weight counts (``z >= -skip``, ``skip = 40 + log n``) then has its logit within ``E + u_w skip``. Each
query takes the cheapest *plan* that keeps this within ``logit_tol`` (default 1e-5 nats):

0. scores and softmax in the compute dtype (the query's): ``E(u_c) + u_c skip <= logit_tol``;
1. float64 scores, from the items as given, and softmax in the compute dtype: ``E(u_64) + u_c skip <= logit_tol``;
2. both in float64 (a ``logit_tol`` below ``u_c skip``, or far queries, whose float64 ``E`` exceeds it).

A *probe*, the compute-dtype logits of ``probe_items`` evenly spaced items, then picks one pass or two per
query; it decides the cost, never the answer:

- one pass, for a broad posterior (every probe logit within ``skip`` nats of the largest) whose plan is
  within ``logit_tol``: the anchor is the best probe item and every item is added with its plan's logit,
  one matmul and one weighted sum per item (nothing could be skipped);
- two passes otherwise. 1: the compute-dtype matmul of every chunk of ``chunk_size`` items; its
  ``exact_top`` largest scores are recomputed in float64 from differences of the items as given,
  ``r_i = (e.delta_i - ||delta_i||^2 / 2) / sigma^2`` with ``e = x - x_a``, ``delta_i = x_i - x_a`` and the
  anchor the largest matmul score, which fixes the maximum logit. 2: for each (query, chunk) pair, if the
  chunk's ``k``-th compute-dtype logit plus ``E(u_c)`` lies more than ``skip`` nats under that maximum, its
  other items are skipped (total weight below ``e^-40`` relative); otherwise they are added with the plan.

So the weights are exact up to ``logit_tol`` nats wherever the float64 ``E`` is below it: every query but
far ones (``||x|| Y / sigma^2`` beyond ~1e10). Elsewhere every logit is within the float64
``E``, about ``1e-15 sqrt(d)`` of the logit scale ``||x|| Y / sigma^2``, so both limits of §1.6 come out as
they should: as ``||x|| / sigma^2`` grows the weights become one-hot on the nearest item (shared among items
closer than ``E`` in logit), and as ``sigma`` grows (also once ``1 / sigma^2`` underflows to 0) uniform, with
``D`` the mean. Only where ``(||x|| + Y)^2 / sigma^2`` nears the float64 maximum (1e308) can no logit be
held: such queries are rejected with a ``ValueError`` naming ``x``. Matmuls run in float32 for float32
queries, in float64 where ``(||x|| + Y)^2`` or ``1 / sigma^2`` nears the float32 maximum. Items are scored in
blocks of ``rest_block // d`` (float64 copies of the items are made one block at a time) and statistics are
merged with an online log-sum-exp (:class:`SoftmaxStats`): working memory is
``O(B (chunk_size + exact_top d) + rest_block)``, whatever ``n``.

Theory: docs/THEORY.md §2.1 (and §1.2, §1.6, §1.8)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

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
        return take_rows(self, rows)

    def put(self, rows: Tensor, part: SoftmaxStats) -> SoftmaxStats:
        """These statistics with ``rows`` (distinct, increasing) replaced by ``part``."""
        if rows.numel() == self.m.shape[0]:
            return part
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


def take_rows(rows_first, rows: Tensor):
    """The dataclass ``rows_first``, whose every field is indexed by row first, with ``rows`` only (distinct,
    increasing): itself when they are all of its rows."""
    values = [getattr(rows_first, f.name) for f in fields(rows_first)]
    return rows_first if rows.numel() == values[0].shape[0] else type(rows_first)(*(v[rows] for v in values))


def unit_roundoff(dtype: torch.dtype) -> float:
    """``u = eps / 2``: a rounding to ``dtype`` moves a value by at most ``u`` relative."""
    return torch.finfo(dtype).eps / 2


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
    """Items ``lo:hi`` after their first-pass matmul: chunk-local indices ``idx`` (B, k) of the ``k`` largest
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

    ``chunk_size`` items per first-pass top-k; ``exact_top`` logits per chunk recomputed exactly; every logit
    that counts within ``logit_tol`` nats (module docstring). Matmuls run in the query's dtype or float64,
    exact logits and accumulators in float64; outputs come back in the query's dtype.
    """

    query_block = 256
    error_margin = 4.0
    rest_block = 2 ** 21  # elements of an item block: matmuls run over rest_block // d items (16 MiB in float64)
    probe_items = 256     # evenly spaced items whose compute-dtype logits choose one pass or two per query

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
        self.probe = torch.arange(0, self.n, max(1, self.n // self.probe_items), device=data.device)[:self.probe_items]

    @property
    def data(self) -> Tensor:
        """The training items ``(n, *item_shape)``."""
        return self.flat.reshape(self.n, *self.item_shape)

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        return self.posterior64(x, sigma).mean.to(x.dtype)

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
        """Dense posterior weights ``(B, n)``: the two-pass logits of :meth:`posterior`, none skipped (every item
        with its plan's matmul logit, each chunk's top-k exact); memory ``O(B n)``."""
        blocks = []
        for q in self._queries(x, sigma):
            plan, _ = self._plans(q)
            logits = torch.empty(plan.shape[0], self.n, dtype=torch.float64, device=x.device)
            for exact in (False, True):
                rows = torch.nonzero((plan > 0) == exact).squeeze(1)
                if rows.numel():
                    qr = take_rows(q, rows)
                    chunks, index = self._first_pass(qr)
                    a = self._anchor(qr, index)
                    part = torch.cat([(self._scores(qr, lo, hi, exact)[1].to(torch.float64) - a.g[:, None])
                                      * qr.inv_s2[:, None] for lo, hi in self._blocks(0, self.n)], 1)
                    for c in chunks:
                        part[:, c.lo:c.hi].scatter_(1, c.idx, self._top_logits(qr, a, c)[1])
                    logits[rows] = part
            blocks.append(torch.softmax(logits, dim=1))
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

    def _blocks(self, lo: int, hi: int):
        """Items ``lo:hi`` in blocks of ``rest_block // d``."""
        step = max(1, self.rest_block // self.d)
        return ((b, min(b + step, hi)) for b in range(lo, hi, step))

    def _exact(self, rows: slice | Tensor) -> Tensor:
        """Centred items ``rows`` in float64, from the items as given (a float64 copy, then one subtraction)."""
        items = self.flat[rows]
        return items - self.center if items.dtype == torch.float64 else items.to(torch.float64).sub_(self.center)

    def _scores(self, q: _Query, lo: int, hi: int, exact: bool) -> tuple[Tensor, Tensor]:
        """The centred items ``lo:hi`` as multiplied and their matmul scores ``g = x.x_i - ||x_i||^2/2``
        (B, hi - lo): float64 from the items as given if ``exact``, else in the compute dtype. CPU BLAS (MKL)
        is faster at ``(items @ x^T)^T``, made contiguous, in float32 from ``d = 512`` on (by 30% at 784), at
        ``x @ items^T`` below and in float64."""
        if exact:
            items = self._exact(slice(lo, hi)) if self.centered.dtype != torch.float64 else self.centered[lo:hi]
            return items, torch.addmm(-self.half_sq[None, lo:hi], q.x64, items.T)
        items = self.centered[lo:hi].to(q.xc.dtype)
        bias = self.half_sq[lo:hi].to(items.dtype)
        if items.dtype == torch.float64 or self.d < 512:
            return items, torch.addmm(-bias[None], q.xc, items.T)
        return items, torch.addmm(-bias[:, None], items, q.xc.T).T.contiguous()

    def _error(self, q: _Query, u: float) -> Tensor:
        """Error radius ``E(u)`` (B,) in nats of relative matmul logits computed with unit roundoff ``u``."""
        y = self.radius
        return self.error_margin * u * ((math.sqrt(self.d) + 2) * q.norm * y + y * y) * q.inv_s2

    def _compute_error(self, q: _Query) -> Tensor:
        """``E`` of compute-dtype scores (``u`` of the coarser of the compute dtype and the centred items')."""
        return self._error(q, max(unit_roundoff(q.xc.dtype), unit_roundoff(self.centered.dtype)))

    def _plans(self, q: _Query) -> tuple[Tensor, Tensor]:
        """Per query its plan (0, 1 or 2; module docstring) and whether that plan's logits are all within
        ``logit_tol`` without the exact top-k (false only for plan 2 beyond it)."""
        u_c, u_64 = unit_roundoff(q.xc.dtype), unit_roundoff(torch.float64)
        e_64, tol = self._error(q, u_64), self.logit_tol
        plan = torch.where(self._compute_error(q) + u_c * self.skip_nats <= tol, 0,
                           torch.where(e_64 + u_c * self.skip_nats <= tol, 1, 2))
        return plan, (plan < 2) | (e_64 + u_64 * self.skip_nats <= tol)

    def _probe(self, q: _Query) -> tuple[Tensor, Tensor]:
        """Compute-dtype logits of ``probe_items`` evenly spaced items: per query whether they all lie within
        ``skip_nats`` of their largest (a broad posterior), and the item of the largest."""
        items = self.centered[self.probe].to(q.xc.dtype)
        g = torch.addmm(-self.half_sq[None, self.probe].to(items.dtype), q.xc, items.T)
        top, pos = g.max(1)
        return (top - g.amin(1)).to(torch.float64) * q.inv_s2 <= self.skip_nats, self.probe[pos]

    def _posterior_block(self, q: _Query) -> tuple[Tensor, ...]:
        """Mean (centred), largest weight, its item, entropy and ``log Z`` of every query of the block, its rows
        grouped by plan."""
        plan, within = self._plans(q)
        broad, probe_best = self._probe(q)
        out: list[Tensor] = []
        for key in torch.unique(plan).tolist():
            rows = torch.nonzero(plan == key).squeeze(1)
            a, total = self._group(take_rows(q, rows), key >= 1, torch.float64 if key == 2 else q.xc.dtype,
                                   (broad & within)[rows], probe_best[rows])
            part = (total.mean(), total.max_weight(), total.arg, total.entropy(), a.log + total.log_normalizer())
            if rows.numel() == plan.shape[0]:
                return part
            out = out or [v.new_empty((plan.shape[0], *v.shape[1:])) for v in part]
            for o, v in zip(out, part):
                o.index_copy_(0, rows, v)
        return tuple(out)

    def _first_pass(self, q: _Query) -> tuple[list[_Chunk], Tensor]:
        """Every chunk's compute-dtype top-k, and the anchor index: the item of the largest score."""
        chunks = [self._chunk(q, lo, hi) for lo, hi in self._spans()]
        firsts = torch.stack([c.first for c in chunks], 1)
        starts = torch.stack([c.idx[:, 0] + c.lo for c in chunks], 1)
        return chunks, starts.gather(1, firsts.argmax(1, keepdim=True)).squeeze(1)

    def _chunk(self, q: _Query, lo: int, hi: int) -> _Chunk:
        """The ``k`` largest compute-dtype scores of items ``lo:hi``: the top-k of every block, then of those."""
        k = min(self.exact_top, hi - lo)
        tops = [(self._scores(q, b, e, exact=False)[1].topk(min(k, e - b), dim=1), b - lo)
                for b, e in self._blocks(lo, hi)]
        values = torch.cat([t.values for t, _ in tops], 1)
        indices = torch.cat([t.indices + shift for t, shift in tops], 1)
        top = values.topk(k, dim=1)
        return _Chunk(lo, hi, indices.gather(1, top.indices), top.values[:, 0], top.values[:, -1])

    def _anchor(self, q: _Query, index: Tensor) -> _Anchor:
        """The anchor ``index`` (B,) of every query, with its exact float64 score and logit."""
        raw, item = self.flat[index].to(torch.float64), self._exact(index)
        e = q.raw64 - raw
        return _Anchor(index, raw, item, e, g=torch.linalg.vecdot(q.x64, item) - self.half_sq[index],
                       log=-0.5 * e.square().sum(1) * q.inv_s2)

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

    def _group(self, q: _Query, exact: bool, dtype: torch.dtype, single: Tensor,
               probe_best: Tensor) -> tuple[_Anchor, SoftmaxStats]:
        """The queries of one plan (``exact``, ``dtype``); ``single`` (B,) marks those taken in one pass.

        Two-pass queries: 1, every chunk's exact top-k, which fixes the anchor and the maximum logit. One-pass
        queries start from their anchor, the best probe item, alone (exact logit 0). 2, per chunk, one matmul
        per block for the one-pass queries and the two-pass ones whose ``k``-th logit bound is not negligible
        against their maximum; the items already counted exactly are left out."""
        b, two = single.shape[0], torch.nonzero(~single).squeeze(1)
        index, chunks = probe_best.clone(), []
        if two.numel():
            chunks, index[two] = self._first_pass(take_rows(q, two))
        a = self._anchor(q, index)
        zero = torch.zeros(b, dtype=torch.float64, device=index.device)
        total = SoftmaxStats(m=zero, s=zero + 1, t=zero, acc=a.item, best=zero, arg=index)
        if two.numel():
            q2, a2 = take_rows(q, two), take_rows(a, two)
            top: SoftmaxStats | None = None
            for c in chunks:
                top = self._top_stats(q2, a2, c).merge(top)
            total = total.put(two, top)
        err = self._compute_error(q)
        for i, (lo, hi) in enumerate(self._spans()):
            counted = torch.where((index >= lo) & (index < hi), index - lo, -1)[:, None]  # chunk-local, -1: none
            dense = single.clone()
            if two.numel():
                c = chunks[i]
                kth = (c.kth.to(torch.float64) - a.g[two]) * q.inv_s2[two]
                dense[two] = (kth + err[two] >= total.m[two] - self.skip_nats) & (hi - lo > c.idx.shape[1])
                counted = counted.expand(b, c.idx.shape[1]).index_copy(0, two, c.idx)
            rows = torch.nonzero(dense).squeeze(1)
            if rows.numel():
                qr, ar, part = take_rows(q, rows), take_rows(a, rows), total.take(rows)
                for b_lo, b_hi in self._blocks(lo, hi):
                    local = counted[rows] - (b_lo - lo)
                    r, j = ((local >= 0) & (local < b_hi - b_lo)).nonzero(as_tuple=True)
                    part = self._dense(qr, ar, b_lo, b_hi, exact, dtype, part.m, (r, local[r, j])).merge(part)
                total = total.put(rows, part)
        return a, total

    def _dense(self, q: _Query, a: _Anchor, lo: int, hi: int, exact: bool, dtype: torch.dtype, ref: Tensor,
               counted: tuple[Tensor, Tensor]) -> SoftmaxStats:
        """Statistics of items ``lo:hi`` from their matmul logits (float64 from the items as given if ``exact``,
        else compute dtype), with exponentials and weighted sums in ``dtype``. The reference ``m`` is the larger
        of ``ref`` and the block's largest logit, so ``z = r - m <= 0`` (an item above ``ref``, which the
        first pass ranks only to within ``E``, rescales the sums instead of overflowing ``exp``). One fused pass
        gives ``z = g / sigma^2 - (g_a / sigma^2 + m)``, clamped at 1 + the log of ``dtype``'s smallest normal
        number (``exp`` is tens of times slower where it returns subnormals; a clamped item then weighs at most
        e times that number, against 1 for a logit at the reference). The ``counted`` (rows, columns),
        added with exact logits, get ``z = -1e4``: weight exactly 0, ``0 * z = 0`` in ``t``, and out of the
        race for the largest weight, which the others join with the same logits as in the sums."""
        items, g = self._scores(q, lo, hi, exact)
        m = torch.maximum(ref, (g.amax(1).to(torch.float64) - a.g) * q.inv_s2)
        z = torch.addcmul((-(a.g * q.inv_s2 + m)).to(g.dtype)[:, None], g, q.inv_s2.to(g.dtype)[:, None]).to(dtype)
        z = z.clamp_min_(1 + math.log(torch.finfo(dtype).tiny)).index_put_(counted, z.new_tensor(-1e4))
        top, pos = z.max(1)
        w = torch.exp(z)
        values = items if items.dtype == dtype else (
            self.centered[lo:hi] if self.centered.dtype == dtype else self._exact(slice(lo, hi)).to(dtype))
        # (values^T @ w^T)^T: CPU BLAS is as fast or faster that way round, 4x at d = 9
        return SoftmaxStats(m=m, s=w.sum(1).to(torch.float64), t=torch.linalg.vecdot(w, z).to(torch.float64),
                            acc=(values.T @ w.T).T.to(torch.float64), best=m + top.to(torch.float64), arg=pos + lo)
