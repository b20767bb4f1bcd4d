"""Per-noise-level diagnostics of memorization (docs/THEORY.md §3).

For training items ``x_1..x_n`` (d values each), held-out items and a generalizing reference ``D_gen``:

* ``L(D, sigma) = E_i E_z ||D(x_i + sigma z, sigma) - x_i||^2 / d``, Monte Carlo over ``z`` with a seeded
  generator; the same ``z`` goes through every denoiser (a paired comparison);
* memorization necessity ``M(sigma) = 1 - L_train(D) / L_train(D_gen)`` and generalization gap
  ``L_test(D) - L_test(D_gen)``, for ``D`` the empirical optimum (and the ambient optimum);
* posterior concentration over training items: mean largest weight and mean ``exp(H(w))``;
* collapse level ``sigma_C``: the isotropic closed form ``sigma_C^2 = s^2 / (n^{2/d} - 1)``, its
  Gaussian generalisation ``(1/2) sum_j log(1 + lam_j / sigma^2) = log n``, and for any population the
  root of the excess entropy

      f(sigma) = (1/d) [log n + (d/2) log(2 pi e sigma^2) + E log p_sigma(x)],   x = x0 + sigma z,

  with ``p_sigma`` the noisy *population* density. ``f = (log n - I(x0; x)) / d``: collapse is where the
  noisy point carries ``log n`` nats about its origin, enough to single out one of ``n`` items (Biroli et
  al. 2024). (With ``p_sigma`` the noised empirical measure of the same items, ``f`` would equal the mean
  posterior entropy ``E H(w) / d >= 0``, which never crosses 0; that curve is the ``eff_items`` column.)
* speciation level ``sigma_S = sqrt(Lambda)``, ``Lambda`` the top eigenvalue of the data covariance.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy.optimize import brentq
from torch import Tensor

from theory.ambient import AmbientDenoiser
from theory.denoiser import Denoiser, check_batch, check_data, check_positive_int, check_sigmas
from theory.empirical import EmpiricalDenoiser
from theory.gaussian import GaussianDenoiser
from theory.seeding import seeded_generator

COLUMNS = ("sigma", "denoiser", "loss_train", "loss_test", "loss_train_se", "loss_test_se", "necessity", "gap",
           "max_weight", "eff_items", "max_weight_test", "eff_items_test")


def _stats(denoiser: Denoiser, x: Tensor, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """``D(x)`` in float64 and per-query ``(max weight, exp(H))``, NaN when ``D`` has no item posterior."""
    if isinstance(denoiser, (EmpiricalDenoiser, AmbientDenoiser)):
        p = denoiser.posterior(x, sigma)
        return p.mean.to(torch.float64), p.max_weight.to(torch.float64), p.entropy.to(torch.float64).exp()
    nan = torch.full((x.shape[0],), math.nan, dtype=torch.float64)
    return denoiser(x, sigma).to(torch.float64), nan, nan


@torch.no_grad()
def _split_stats(denoisers: dict[str, Denoiser], items: Tensor, sigma: float, gen: torch.Generator,
                 chunk: int) -> dict[str, dict[str, float]]:
    """Per denoiser: mean and standard error of ``||D - x0||^2 / d``, mean max weight and ``exp(H)``."""
    per = {k: ([], [], []) for k in denoisers}
    for lo in range(0, items.shape[0], chunk):
        x0 = items[lo:lo + chunk]
        x = x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        for name, den in denoisers.items():
            mean, top, eff = _stats(den, x, sigma)
            err = (mean - x0.to(torch.float64)).reshape(x0.shape[0], -1).square().mean(1)
            for acc, v in zip(per[name], (err, top, eff)):
                acc.append(v)
    out = {}
    for name, (err, top, eff) in per.items():
        e = torch.cat(err)
        se = float(e.std() / math.sqrt(e.numel())) if e.numel() > 1 else math.nan
        out[name] = {"loss": float(e.mean()), "se": se, "max_weight": float(torch.cat(top).mean()),
                     "eff_items": float(torch.cat(eff).mean())}
    return out


def diagnose(train: Tensor, test: Tensor, gen: Denoiser, sigmas: Iterable[float], *,
             ambient: AmbientDenoiser | None = None, emp: Denoiser | None = None,
             extra: Mapping[str, Denoiser] | None = None, num_items: int = 256, seed: int = 0, chunk: int = 256,
             progress: Callable[[Iterable], Iterable] | None = None) -> pd.DataFrame:
    """Tidy table, one row per (sigma, denoiser) with ``denoiser`` in ``empirical``, ``generalizing``,
    (given ``ambient``) ``ambient`` and the names of ``extra`` denoisers (e.g. patch-local); columns
    :data:`COLUMNS`.

    ``emp`` defaults to ``EmpiricalDenoiser(train)``. Losses use the first ``num_items`` training and
    held-out items, one noise draw each, from generators seeded by ``(seed, sigma index, split)``.
    ``necessity``/``gap`` compare each denoiser with ``gen`` (0 on its own rows). Concentration columns
    are NaN for denoisers without an item posterior; ambient rows at ``sigma <= sigma_n`` are all NaN.
    ``progress`` wraps the sigma loop (e.g. ``tqdm``).
    """
    train = check_data(train, "train")
    test = check_batch(test, tuple(train.shape[1:]), "test")
    grid = check_sigmas(sigmas)
    m, chunk = check_positive_int(num_items, "num_items"), check_positive_int(chunk, "chunk")
    if ambient is not None and ambient.item_shape != tuple(train.shape[1:]):
        raise ValueError(f"ambient must be built on items of shape {tuple(train.shape[1:])}, got {ambient.item_shape}")
    extra = dict(extra or {})
    if {"empirical", "generalizing", "ambient"} & set(extra):
        raise ValueError(f"extra must not reuse the names empirical, generalizing, ambient, got {sorted(extra)}")
    emp = EmpiricalDenoiser(train) if emp is None else emp
    names = ["empirical", "generalizing"] + (["ambient"] if ambient is not None else []) + list(extra)
    rows = []
    steps = list(enumerate(grid))
    for j, s in (progress(steps) if progress else steps):
        dens = {"empirical": emp, "generalizing": gen, **extra}
        if ambient is not None and s > ambient.sigma_n:
            dens["ambient"] = ambient
        tr = _split_stats(dens, train[:m], float(s), seeded_generator(seed, j, 0), chunk)
        te = _split_stats(dens, test[:m], float(s), seeded_generator(seed, j, 1), chunk)
        for name in names:
            if name not in tr:
                rows.append({"sigma": float(s), "denoiser": name})
                continue
            rows.append({
                "sigma": float(s), "denoiser": name,
                "loss_train": tr[name]["loss"], "loss_test": te[name]["loss"],
                "loss_train_se": tr[name]["se"], "loss_test_se": te[name]["se"],
                "necessity": 1.0 - tr[name]["loss"] / tr["generalizing"]["loss"] if tr["generalizing"]["loss"] > 0 else math.nan,
                "gap": te[name]["loss"] - te["generalizing"]["loss"],
                "max_weight": tr[name]["max_weight"], "eff_items": tr[name]["eff_items"],
                "max_weight_test": te[name]["max_weight"], "eff_items_test": te[name]["eff_items"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


# ---- collapse and speciation levels ------------------------------------------------------------------------

def _check_n_d(n: int, d: int) -> None:
    check_positive_int(d, "d")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (one item never collapses), got {n!r}")


def collapse_sigma_isotropic(n: int, d: int, variance: float) -> float:
    """``sigma_C = sqrt(s^2 / (n^{2/d} - 1))`` for ``n`` items of isotropic data, per-coordinate variance ``s^2``."""
    _check_n_d(n, d)
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"variance must be a finite float > 0, got {variance!r}")
    return math.sqrt(variance / math.expm1(2.0 * math.log(n) / d))


def collapse_sigma_spectrum(eigenvalues, n: int) -> float:
    """``sigma_C`` of a Gaussian population with covariance eigenvalues ``lam``: the root of
    ``(1/2) sum_j log(1 + lam_j / sigma^2) = log n`` (``I(x0; x) = log n``); isotropic: the closed form."""
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if lam.size < 1 or not np.all(np.isfinite(lam)) or np.any(lam < 0) or not np.any(lam > 0):
        raise ValueError(f"eigenvalues must be finite, >= 0 and not all 0, got {eigenvalues!r}")
    _check_n_d(n, lam.size)
    lam = lam[lam > 0]
    info = lambda t: 0.5 * np.log1p(lam * np.exp(-2.0 * t)).sum() - math.log(n)  # noqa: E731  (t = log sigma)
    lo, hi = math.log(math.sqrt(lam.min())) - 50.0, math.log(math.sqrt(lam.sum())) + 50.0
    return math.exp(brentq(info, lo, hi, xtol=1e-12, rtol=1e-12))


def speciation_sigma(data: Tensor) -> float:
    """``sigma_S = sqrt(Lambda)``, ``Lambda`` the top eigenvalue of the (biased) covariance of ``data``."""
    data = check_data(data)
    flat = data.reshape(data.shape[0], -1).to(torch.float64)
    c = flat - flat.mean(0)
    # the top eigenvalue of C^T C / n equals that of C C^T / n: use the smaller Gram matrix
    gram = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
    return math.sqrt(max(float(torch.linalg.eigvalsh(gram / c.shape[0])[-1]), 0.0))


def excess_entropy(items: Tensor, n: int, sigmas: Iterable[float], density=None, *, num_items: int = 512,
                   seed: int = 0) -> np.ndarray:
    """``f(sigma)`` (module docstring) on a grid: ``E log p_sigma`` is averaged over ``x = x_i + sigma z``
    for the first ``num_items`` of ``items`` (population draws) with the same ``z`` at every ``sigma``,
    so ``f`` is smooth in ``sigma``. ``density`` has ``log_density(x, sigma)``: the population's noisy
    density (exact for GMMs); default the Gaussian fit to ``items`` (the Wiener reference)."""
    items = check_data(items, "items")
    d = items[0].numel()
    _check_n_d(n, d)
    grid = check_sigmas(sigmas)
    density = GaussianDenoiser.fit(items.to(torch.float64)) if density is None else density
    x0 = items[:check_positive_int(num_items, "num_items")].to(torch.float64)
    z = torch.randn(x0.shape, generator=seeded_generator(seed, 7), dtype=torch.float64)
    out = np.empty(grid.size)
    for j, s in enumerate(grid):
        logp = density.log_density(x0 + s * z, float(s)).to(torch.float64).mean()
        out[j] = (math.log(n) + 0.5 * d * math.log(2 * math.pi * math.e * s * s) + float(logp)) / d
    return out


def collapse_sigma_entropy(data: Tensor, density=None, *, n: int | None = None, num_items: int = 512,
                           seed: int = 0, bounds: tuple[float, float] = (1e-4, 1e4)) -> float:
    """``sigma_C`` where ``f(sigma)`` of :func:`excess_entropy` crosses 0, by Brent's method on ``log sigma``.

    ``data`` are population draws (the training set itself by default) and ``n`` the training-set size
    (default ``len(data)``). ``f`` rises from ``(log n - I) / d < 0`` at small sigma to ``log(n) / d``;
    returns NaN if it does not change sign within ``bounds``.
    """
    data = check_data(data)
    n = data.shape[0] if n is None else n
    lo, hi = check_sigmas(bounds, "bounds")
    if not lo < hi:
        raise ValueError(f"bounds must be an interval (lo, hi) with 0 < lo < hi, got {bounds!r}")
    density = GaussianDenoiser.fit(data.to(torch.float64)) if density is None else density
    f = lambda t: float(excess_entropy(data, n, [math.exp(t)], density, num_items=num_items, seed=seed)[0])  # noqa: E731
    a, b = math.log(lo), math.log(hi)
    fa, fb = f(a), f(b)
    if not (fa < 0 < fb):
        return math.nan
    return math.exp(brentq(f, a, b, xtol=1e-6))


def necessity_crossing(table: pd.DataFrame, denoiser: str = "empirical", level: float = 0.5) -> float:
    """The largest ``sigma`` where ``denoiser``'s necessity ``M`` of a :func:`diagnose` table is still
    ``>= level``, refined by linear interpolation in ``log sigma`` to where ``M`` falls through ``level``;
    NaN if ``M`` never reaches it."""
    if denoiser not in set(table.denoiser):
        raise ValueError(f"denoiser must be one of {sorted(set(table.denoiser))}, got {denoiser!r}")
    rows = table[table.denoiser == denoiser].dropna(subset=["necessity"]).sort_values("sigma")
    s, m = rows.sigma.to_numpy(), rows.necessity.to_numpy()
    above = np.flatnonzero(m >= level)
    if above.size == 0:
        return math.nan
    k = above[-1]
    if k + 1 == s.size:
        return float(s[k])
    t = (m[k] - level) / (m[k] - m[k + 1])
    return float(np.exp(np.log(s[k]) + t * (np.log(s[k + 1]) - np.log(s[k]))))
