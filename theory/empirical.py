"""The empirical optimal denoiser: the posterior mean when the prior is the training set itself.

For items ``x_1..x_n`` the noisy marginal is ``p_sigma(x) = (1/n) sum_i N(x; x_i, sigma^2 I)`` and

    D(x, sigma) = sum_i w_i x_i,   w_i = softmax_i(l_i),   l_i = -||x - x_i||^2 / (2 sigma^2).

Numerics (data and queries are first centred at the data mean, which leaves ``D`` unchanged). Per chunk
of ``chunk_size`` items one matmul gives ``g_i = x.x_i - ||x_i||^2 / 2`` and the logits
``l_i = (g_i - ||x||^2 / 2) / sigma^2``. In float32 these carry an error of up to about
``E = 4 u (sqrt(d) ||x|| max||x_i|| + (||x||^2 + max||x_i||^2) / 2) / sigma^2`` nats (``u`` the unit
roundoff; measured worst cases stay under a third of it), thousands of nats at small ``sigma``. So:

1. first pass: the ``exact_top`` largest matmul logits of every chunk are recomputed exactly, as float64
   direct differences ``sum_k (x_k - x_ik)^2``; this fixes the maximum logit of every query;
2. second pass, for each (query, chunk) pair: if the chunk's ``k``-th matmul logit plus ``E`` lies more
   than ``40 + log n`` nats under that maximum, its other items are skipped (total weight below ``e^-40``
   relative); otherwise they are added with their matmul logits when ``E <= logit_tol``, or with
   float64-matmul logits (error ~1e-16 of the above) when not, in blocks of ``rest_block`` elements.

So the weights are exact up to ``logit_tol`` nats (default 1e-5) at every ``sigma``; the float32 path is
used wherever that is possible, and where the posterior is concentrated the cost is one matmul per chunk.
Statistics are merged with an online log-sum-exp (:class:`SoftmaxStats`): working memory is
``O(B (chunk_size + exact_top d) + rest_block)``, whatever ``n``.

Theory: docs/THEORY.md §2.1 (and §1.2, §1.8)."""
from __future__ import annotations

import math
from dataclasses import dataclass
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
        return cls(m=shift, s=w.sum(1, dtype=torch.float64), t=(w * rel).sum(1, dtype=torch.float64),
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


@dataclass(frozen=True)
class _Query:
    """A centred query block: float64 copy for exact work, compute-dtype copy for matmuls."""

    raw64: Tensor    # (B, d) float64, as given
    x64: Tensor      # (B, d) float64, centred
    xc: Tensor       # (B, d) compute dtype, centred
    half_sq: Tensor  # (B,) float64, ||x||^2 / 2
    inv_s2: Tensor   # (B,) float64, 1 / sigma^2


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
            logits = []
            for lo in range(0, self.n, self.chunk_size):
                hi = min(lo + self.chunk_size, self.n)
                g, idx, _, exact = self._top(q, lo, hi)
                fine = torch.nonzero(self._error(q, lo, hi) > self.logit_tol).squeeze(1)
                rest = self._to_logits(g, q, slice(None)).to(torch.float64)
                if fine.numel():
                    g64 = self._scores(q, fine, self._exact(slice(lo, hi)), lo, hi, precise=True)
                    rest = rest.index_copy(0, fine, self._to_logits(g64, q, fine))
                logits.append(rest.scatter(1, idx, exact))
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
            r = raw[lo:lo + self.query_block]
            q = r - self.center.to(x.device)
            yield _Query(r, q, q.to(x.dtype), 0.5 * q.square().sum(1), 1.0 / s[lo:lo + self.query_block].square())

    def _exact(self, span: slice) -> Tensor:
        """Centred items ``span`` in float64, from the items as given (one promoting subtraction)."""
        return self.flat[span] - self.center

    def _scores(self, q: _Query, rows: Tensor | slice, items: Tensor, lo: int, hi: int, precise: bool) -> Tensor:
        """Matmul scores ``g = x.x_i - ||x_i||^2/2`` (len(rows), hi - lo) of query ``rows`` against centred
        ``items`` (= items ``lo:hi``): float64 if ``precise``, else in the compute dtype. A transposed view:
        ``(items @ x^T)^T`` is faster than ``x @ items^T`` on CPU BLAS."""
        if precise:
            return torch.addmm(-self.half_sq[lo:hi, None], items, q.x64[rows].T).T
        dt = q.xc.dtype
        return torch.addmm(-self.half_sq[lo:hi, None].to(dt), items.to(dt), q.xc[rows].T).T

    @staticmethod
    def _to_logits(g: Tensor, q: _Query, rows: Tensor | slice, shift: Tensor | None = None) -> Tensor:
        """Logits minus ``shift``: ``(g - ||x||^2/2) / sigma^2 - shift`` in ``g``'s dtype (one fused pass)."""
        inv_s2 = q.inv_s2[rows]
        offset = -(q.half_sq[rows] * inv_s2 + (0.0 if shift is None else shift))
        return torch.addcmul(offset.to(g.dtype)[:, None], g, inv_s2.to(g.dtype)[:, None])

    def _top(self, q: _Query, lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Compute-dtype scores ``g`` (B, hi - lo) of items ``lo:hi``, their top-k indices ``idx``, the float64
        differences ``diff = x - x_i`` (B, k, d) to those items and their exact logits (B, k) float64."""
        g = self._scores(q, slice(None), self.centered[lo:hi], lo, hi, precise=False).contiguous()
        idx = g.topk(min(self.exact_top, hi - lo), dim=1).indices
        diff = q.raw64[:, None, :] - self.flat[lo:hi][idx]
        exact = -0.5 * torch.einsum("bkd,bkd->bk", diff, diff) * q.inv_s2[:, None]
        return g, idx, diff, exact

    def _error(self, q: _Query, lo: int, hi: int) -> Tensor:
        """Error radius ``E`` (B,) in nats of the compute-dtype matmul logits of items ``lo:hi``."""
        u = torch.finfo(q.xc.dtype).eps / 2
        y2 = 2 * self.half_sq[lo:hi].max()
        scale = math.sqrt(self.d) * torch.sqrt(2 * q.half_sq * y2) + q.half_sq + y2 / 2
        return self.error_margin * u * scale * q.inv_s2

    def _posterior_block(self, q: _Query) -> tuple[Tensor, ...]:
        """Two passes. 1: the exact top-k of every chunk, which fixes the maximum logit. 2: the other items,
        only for the (query, chunk) pairs whose ``k``-th logit bound is not negligible against that maximum."""
        total: SoftmaxStats | None = None
        pending = []
        for lo in range(0, self.n, self.chunk_size):
            hi = min(lo + self.chunk_size, self.n)
            g, idx, diff, exact = self._top(q, lo, hi)
            shift = exact.max(1).values.detach()
            # sum_k w_k (x_k - center) = (sum_k w_k) x~ - sum_k w_k (x - x_k)
            chunk = SoftmaxStats.from_logits(
                exact - shift[:, None], shift,
                lambda w: w.sum(1, keepdim=True) * q.x64 - torch.einsum("bk,bkd->bd", w, diff), idx + lo)
            total = chunk.merge(total)
            if hi - lo > idx.shape[1]:
                err = self._error(q, lo, hi)
                kth = self._to_logits(g.gather(1, idx[:, -1:]).to(torch.float64), q, slice(None))[:, 0]
                pending.append((lo, hi, idx, kth + err, err))
            del g, diff  # free this chunk's buffers before the next one is allocated
        for lo, hi, idx, bound, err in pending:
            dense = bound > total.m - self.skip_nats
            for mask, precise in ((dense & (err <= self.logit_tol), False), (dense & (err > self.logit_tol), True)):
                rows = torch.nonzero(mask).squeeze(1)
                if rows.numel():
                    total = self._add_rest(total, q, rows, idx[rows], lo, hi, precise)
        return (total.mean(), total.max_weight(), total.arg, total.entropy(), total.log_normalizer())

    def _add_rest(self, total: SoftmaxStats, q: _Query, rows: Tensor, idx: Tensor, lo: int, hi: int,
                  precise: bool) -> SoftmaxStats:
        """Add items ``lo:hi`` except the already-counted top-k ``idx`` (chunk-local) for query ``rows`` to
        ``total`` (at its reference ``m``), in blocks of bounded size; float64 matmuls if ``precise``."""
        s = t = acc = 0.0
        step = max(1, self.rest_block // self.d)
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            items = self._exact(slice(a, b)) if precise else self.centered[a:b]
            rel = self._to_logits(self._scores(q, rows, items, a, b, precise), q, rows, total.m[rows])
            local = idx - (a - lo)
            inside = (local >= 0) & (local < b - a)
            hits = torch.zeros(rel.shape, dtype=torch.int32, device=rel.device)
            hits.scatter_add_(1, local.clamp(0, b - a - 1), inside.to(torch.int32))
            rel = rel.masked_fill(hits > 0, -1e4)  # the exact top-k are already counted: exp(-1e4) = 0
            w = torch.exp(rel)
            s = s + w.sum(1, dtype=torch.float64)
            t = t + torch.linalg.vecdot(w, rel).to(torch.float64)
            acc = acc + (w @ items.to(w.dtype)).to(torch.float64)
        return SoftmaxStats(total.m, total.s.index_add(0, rows, s), total.t.index_add(0, rows, t),
                            total.acc.index_add(0, rows, acc), total.best, total.arg)
