"""Paired per-noise-level readout of a trained denoiser against the two closed-form references.

At each ``sigma`` the same inputs ``x = x_i + sigma z`` (training items ``x_i``, noise ``z`` fixed by a
seed) go through the trained net ``D_theta``, the empirical optimum ``D_emp`` (the memorizer) and the
best generalizing denoiser ``D_gen``:

    r(sigma) = E||D_theta - D_emp||^2 / E||D_gen - D_emp||^2

``r = 0``: the net reproduces the memorizer; ``r = 1``: it is as far from it as the generalizer. Beside it,
the per-coordinate losses ``L(D, sigma) = E||D(x_i + sigma z) - x_i||^2 / d`` of all three denoisers on
training and on held-out items, and the memorization necessity ``M = 1 - L_train(D_emp) / L_train(D_gen)``.

Theory: docs/THEORY.md §6.1-6.2."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from theory.denoiser import Denoiser, check_batch, check_sigmas
from theory.seeding import seeded_generator

FIELDS = ("ratio", "necessity", "net_train", "net_test", "emp_train", "emp_test", "gen_train", "gen_test")


@dataclass
class Readout:
    """Per-sigma arrays (all of ``sigma``'s length)."""

    sigma: np.ndarray
    ratio: np.ndarray
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
        return cls(**{k: np.asarray(d[k], dtype=float) for k in ("sigma", *FIELDS)})


@torch.no_grad()
def _errors(denoisers: tuple[Denoiser, ...], x0: Tensor, sigma: float, gen: torch.Generator,
            chunk: int) -> Tensor:
    """Summed squared errors, shape (len(denoisers) + 2,): each ``||D - x0||^2``, then
    ``||D_0 - D_1||^2`` and ``||D_2 - D_1||^2`` (net - emp and gen - emp) on the same noisy inputs."""
    out = torch.zeros(len(denoisers) + 2, dtype=torch.float64)
    for i in range(0, x0.shape[0], chunk):
        xb = x0[i:i + chunk]
        x = xb + sigma * torch.randn(xb.shape, generator=gen, dtype=xb.dtype)
        d = [D(x, sigma).to(torch.float64) for D in denoisers]
        xb64 = xb.to(torch.float64)
        sq = lambda a, b: (a - b).pow(2).sum()  # noqa: E731
        out += torch.stack([*(sq(di, xb64) for di in d), sq(d[0], d[1]), sq(d[2], d[1])])
    return out


def paired_readout(net: Denoiser, emp: Denoiser, gen: Denoiser, train: Tensor, test: Tensor, sigmas,
                   num_items: int = 256, seed: int = 0, chunk: int = 512) -> Readout:
    """r(sigma), M(sigma) and the three denoisers' train/test losses on a grid ``sigmas``.

    Uses the first ``num_items`` of ``train`` and of ``test`` (all when fewer); the noise is drawn from a
    generator seeded by ``seed`` and is the same for the three denoisers (a paired comparison).
    """
    train = check_batch(train, tuple(train.shape[1:]), "train")
    test = check_batch(test, tuple(train.shape[1:]), "test")
    sig = check_sigmas(sigmas)
    if num_items < 1 or chunk < 1:
        raise ValueError(f"num_items and chunk must be >= 1, got {num_items}, {chunk}")
    d = train[0].numel()
    rows = {k: [] for k in FIELDS}
    for j, s in enumerate(sig):
        tr = _errors((net, emp, gen), train[:num_items], float(s), seeded_generator(seed, j, 0), chunk)
        te = _errors((net, emp, gen), test[:num_items], float(s), seeded_generator(seed, j, 1), chunk)
        m_tr, m_te = min(num_items, train.shape[0]) * d, min(num_items, test.shape[0]) * d
        rows["ratio"].append(float(tr[3] / tr[4]) if tr[4] > 0 else float("nan"))
        rows["net_train"].append(float(tr[0]) / m_tr)
        rows["emp_train"].append(float(tr[1]) / m_tr)
        rows["gen_train"].append(float(tr[2]) / m_tr)
        rows["net_test"].append(float(te[0]) / m_te)
        rows["emp_test"].append(float(te[1]) / m_te)
        rows["gen_test"].append(float(te[2]) / m_te)
        rows["necessity"].append(1.0 - float(tr[1] / tr[2]) if tr[2] > 0 else float("nan"))
    return Readout(sigma=sig, **{k: np.asarray(v) for k, v in rows.items()})


def copy_onset(sigma, ratio, threshold: float = 0.5) -> float:
    """Where the copying band that starts at the smallest ``sigma`` ends: the first ``sigma`` (from below) at
    which ``r(sigma)`` rises above ``threshold``, interpolated linearly in ``log sigma``; the largest ``sigma``
    if ``r`` never rises above it, ``nan`` if ``r`` is above it already at the smallest ``sigma``.

    Scanning from below ignores high-noise levels where ``D_gen`` and ``D_emp`` agree, so ``r``'s denominator
    vanishes and its value says nothing about copying."""
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
