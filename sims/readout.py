"""Per-noise-level readouts of a trained denoiser that a known non-memorizer cannot fail.

Every readout feeds the same noisy inputs ``x = x0 + sigma z`` (``z`` from a generator seeded by
``(seed, sigma index, split)``, split 0 for training items and 1 for held-out items) through the
denoisers it compares, so comparisons are paired. Per sigma, with sums over the first ``num_items``
items of a split and ``d`` values per item:

* train / held-out gap (§6.8): ``L(D) = sum ||D(x) - x0||^2 / (num_items d)`` on training and on held-out
  items, and their ratio ``L_test / L_train`` (>> 1: the net knows its training items; ~1: it does not);
* calibrated ratio (§6.1): ``r = sum ||D_theta - D_emp||^2 / sum ||D_ref - D_emp||^2`` on training
  inputs, ``D_emp`` the training set's empirical optimum and ``D_ref`` a reference that does not memorize
  (:class:`Reference`: the exact population denoiser, else a Wiener fit of a pool, §3.7); reported only
  where ``L_test(D_ref) < L_test(D_theta)`` (the reference denoises held-out items better than the net),
  NaN elsewhere; the copy onset (§6.2) reads this ``r``;
* two-net ratio (§6.9, Kadkhodaie et al. 2024): ``V = sum ||D_1 - D_2||^2 / sum ||D_emp,S1 - D_emp,S2||^2``
  on held-out inputs, for two denoisers trained by one recipe on disjoint sets ``S1``, ``S2``.

Each has a calibration test (tests/sims/test_readout_calibration.py): a Wiener denoiser fitted on a large
population sample, the exact GMM denoiser and the identity read as non-memorizing at every sigma in
[0.01, 10], the training set's empirical optimum as memorizing at low sigma.

Theory: docs/THEORY.md §3.7, §6.1, §6.2, §6.8, §6.9."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import Tensor

from theory import EmpiricalDenoiser, GaussianDenoiser
from theory.denoiser import Denoiser, check_batch, check_data, check_positive_int, check_sigmas
from theory.diagnostics import collapse_sigma_entropy
from theory.seeding import seeded_generator

TRAIN, TEST = 0, 1  # the split index of the noise seeds


@dataclass(frozen=True)
class Reference:
    """The non-memorizing reference of every readout and of ``sigma_C`` (§3.7): ``denoiser`` (with
    ``log_density``) and ``kind``, ``"exact"`` (the population's own denoiser) or ``"wiener_pool"``."""

    denoiser: Denoiser
    kind: str

    @classmethod
    def of(cls, pool: Tensor, exact: Denoiser | None = None) -> "Reference":
        """``exact`` when the population is known, else ``GaussianDenoiser.fit(pool)`` (§2.2), never the
        pool's empirical optimum (a memorizer below the pool's collapse level, §3.7)."""
        if exact is not None:
            return cls(exact, "exact")
        return cls(GaussianDenoiser.fit(check_data(pool, "pool")), "wiener_pool")

    def sigma_c(self, draws: Tensor, n: int, seed: int = 0) -> float:
        """``sigma_C`` of ``n`` items: the excess-entropy root (§3.5) with this reference's density and
        ``draws`` (population items, e.g. the pool) as the Monte Carlo sample."""
        return collapse_sigma_entropy(draws, self.denoiser, n=n, seed=seed)


@dataclass
class Readout:
    """Per-sigma arrays (all of ``sigma``'s length)."""

    sigma: np.ndarray
    ratio: np.ndarray
    ratio_raw: np.ndarray
    heldout_ratio: np.ndarray
    necessity: np.ndarray
    net_train: np.ndarray
    net_test: np.ndarray
    emp_train: np.ndarray
    emp_test: np.ndarray
    gen_train: np.ndarray
    gen_test: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {k: np.asarray(v, dtype=float).tolist() for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> "Readout":
        """Fields missing from ``d`` (files written before they existed) read as NaN."""
        nan = [float("nan")] * len(d["sigma"])
        return cls(**{f.name: np.asarray(d.get(f.name, nan), dtype=float) for f in fields(cls)})


@torch.no_grad()
def _sweep(denoisers: tuple[Denoiser, ...], pairs: tuple[tuple[int, int], ...], items: Tensor, sigmas: np.ndarray,
           num_items: int, seed: int, split: int, chunk: int) -> np.ndarray:
    """``(len(sigmas), len(pairs))``: per sigma and pair ``(a, b)``, ``sum ||v_a - v_b||^2 / (m d)`` over the first
    ``m = min(num_items, len(items))`` items, ``v = (x0, D_1(x), D_2(x), ...)`` on the same ``x = x0 + sigma z``."""
    x0 = items[:num_items]
    out = np.zeros((sigmas.size, len(pairs)))
    for j, s in enumerate(sigmas):
        gen = seeded_generator(seed, j, split)
        for i in range(0, x0.shape[0], chunk):
            xb = x0[i:i + chunk]
            x = xb + float(s) * torch.randn(xb.shape, generator=gen, dtype=xb.dtype)
            v = [xb.to(torch.float64), *(D(x, float(s)).to(torch.float64) for D in denoisers)]
            out[j] += [float((v[a] - v[b]).square().sum()) for a, b in pairs]
    return out / x0.numel()


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise: ``inf`` where ``den = 0 < num``, NaN where both vanish."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, np.nan))


def _check(train: Tensor, test: Tensor, sigmas, num_items: int, chunk: int,
           names: tuple[str, str] = ("train", "test")) -> np.ndarray:
    """Validate the public readouts' arguments; return the sigma grid."""
    check_batch(train, tuple(train.shape[1:]), names[0])
    check_batch(test, tuple(train.shape[1:]), names[1])
    check_positive_int(num_items, "num_items")
    check_positive_int(chunk, "chunk")
    return check_sigmas(sigmas)


def heldout_gap(net: Denoiser, train: Tensor, test: Tensor, sigmas, num_items: int = 256, seed: int = 0,
                chunk: int = 512) -> dict[str, np.ndarray]:
    """``{"sigma", "train", "test", "ratio"}``: the net's per-coordinate loss ``L`` on training and on held-out
    items and ``ratio = L_test / L_train`` (§6.8; ``inf`` where ``L_train = 0 < L_test``). With the same
    ``seed`` and ``chunk`` the noise is :func:`paired_readout`'s: ``train`` / ``test`` equal its ``net_*``."""
    sig = _check(train, test, sigmas, num_items, chunk)
    tr = _sweep((net,), ((1, 0),), train, sig, num_items, seed, TRAIN, chunk)[:, 0]
    te = _sweep((net,), ((1, 0),), test, sig, num_items, seed, TEST, chunk)[:, 0]
    return {"sigma": sig, "train": tr, "test": te, "ratio": _ratio(te, tr)}


def paired_readout(net: Denoiser, emp: Denoiser, gen: Denoiser, train: Tensor, test: Tensor, sigmas,
                   num_items: int = 256, seed: int = 0, chunk: int = 512) -> Readout:
    """The calibrated ratio ``r`` (§6.1), the held-out ratio (§6.8), ``M`` (§3.2) and the three denoisers'
    train / test losses on a grid ``sigmas``; ``gen`` is the non-memorizing reference (``Reference.denoiser``).

    ``ratio_raw`` is ``r`` at every sigma; ``ratio`` keeps it where ``gen_test < net_test`` and is NaN
    elsewhere (there the reference is no better generalizer than the net and ``r`` says nothing)."""
    sig = _check(train, test, sigmas, num_items, chunk)
    dens = (net, emp, gen)
    tr = _sweep(dens, ((1, 0), (2, 0), (3, 0), (1, 2), (3, 2)), train, sig, num_items, seed, TRAIN, chunk)
    te = _sweep(dens, ((1, 0), (2, 0), (3, 0)), test, sig, num_items, seed, TEST, chunk)
    raw = _ratio(tr[:, 3], tr[:, 4])
    return Readout(sigma=sig, ratio=np.where(te[:, 2] < te[:, 0], raw, np.nan), ratio_raw=raw,
                   heldout_ratio=_ratio(te[:, 0], tr[:, 0]), necessity=1.0 - _ratio(tr[:, 1], tr[:, 2]),
                   net_train=tr[:, 0], emp_train=tr[:, 1], gen_train=tr[:, 2],
                   net_test=te[:, 0], emp_test=te[:, 1], gen_test=te[:, 2])


def two_net_ratio(net1: Denoiser, net2: Denoiser, train1: Tensor, train2: Tensor, test: Tensor, sigmas,
                  num_items: int = 256, seed: int = 0, chunk: int = 512) -> np.ndarray:
    """``V(sigma)`` of §6.9 for nets trained by one recipe on disjoint ``train1``, ``train2``, on noisy held-out
    items ``test`` (the noise of :func:`paired_readout`'s held-out split for the same ``seed`` and ``chunk``):
    1 where both copy their own set as the empirical optima do, ~0 where they agree, NaN where the two empirical
    optima agree. At high sigma a denoiser fitted to ``n`` items returns about its set's mean, so ``V -> 1``
    there for memorizers and generalizers alike: read ``V`` from below, as ``r``."""
    sig = _check(train1, test, sigmas, num_items, chunk, ("train1", "test"))
    check_batch(train2, tuple(train1.shape[1:]), "train2")
    dens = (net1, net2, EmpiricalDenoiser(train1), EmpiricalDenoiser(train2))
    s = _sweep(dens, ((1, 2), (3, 4)), test, sig, num_items, seed, TEST, chunk)
    return _ratio(s[:, 0], s[:, 1])


def copy_onset(sigma, ratio, threshold: float = 0.5) -> float:
    """Where the copying band that starts at the smallest ``sigma`` ends: the first ``sigma`` (from below) at
    which ``r(sigma)`` rises above ``threshold``, interpolated linearly in ``log sigma``; the largest ``sigma``
    if ``r`` never rises above it, ``nan`` if ``r`` is above it already at the smallest ``sigma``.

    Scanning from below ignores high-noise levels where ``D_gen`` and ``D_emp`` agree, so ``r``'s denominator
    vanishes and its value says nothing about copying. NaN (a level the calibrated ``r`` does not report)
    counts as above: no evidence of copying."""
    s, r = check_sigmas(sigma, "sigma"), np.asarray(ratio, dtype=float).reshape(-1)
    if r.shape != s.shape:
        raise ValueError(f"ratio must have sigma's shape {s.shape}, got {r.shape}")
    order = np.argsort(s)
    s, r = s[order], r[order]
    above = np.flatnonzero(~(r <= threshold))  # nan counts as above: no evidence of copying
    if above.size == 0:
        return float(s[-1])
    k = above[0]
    if k == 0:
        return float("nan")
    if not np.isfinite(r[k]):
        return float(s[k - 1])
    t = (threshold - r[k - 1]) / (r[k] - r[k - 1])
    return float(np.exp(np.log(s[k - 1]) + t * (np.log(s[k]) - np.log(s[k - 1]))))


def copy_band_top(sigma, ratio, threshold: float = 0.5) -> float:
    """The upper end of the band of ``r(sigma) <= threshold`` that holds ``r``'s minimum: the first ``sigma``
    above the minimum at which ``r`` rises above ``threshold`` (linear in ``log sigma``; the largest ``sigma`` if
    it never does), ``nan`` if ``r`` never falls to ``threshold``. Unlike :func:`copy_onset` it does not need
    ``r`` to be low at the smallest ``sigma``, where every denoiser is near the identity and ``r ~ 1``."""
    s, r = check_sigmas(sigma, "sigma"), np.asarray(ratio, dtype=float).reshape(-1)
    if r.shape != s.shape:
        raise ValueError(f"ratio must have sigma's shape {s.shape}, got {r.shape}")
    order = np.argsort(s)
    s, r = s[order], r[order]
    if not np.any(r <= threshold):
        return float("nan")
    k0 = int(np.nanargmin(r))
    return copy_onset(s[k0:], r[k0:], threshold) if k0 < s.size - 1 else float(s[-1])
