"""``memdiff figs curve``: memorization against the training-set size n (issue #10; Gu et al.'s effective model
memorization), the trained baseline beside the closed forms of the same training sets.

From the cells of one dataset and method of a grid (``memdiff sim --config configs/sim_curve.toml``), per n
(mean and 95% t-interval over seeds, docs/THEORY.md §7.1):

- the net: ``copy_share`` (§6.3), FD (§6.5) beside the held-out reals' FD with the same sample count (``ref_fd``),
  and the readout bands below ``sigma_C / 2`` (``memdiff.claims.readout_bands``): the two-net ratio ``V_low``
  (§6.9) and the train/held-out gap ``G_low`` (§6.8);
- the closed forms: the copy share of the exact optimum's samples by the same sampler (``emp_copy_share``, cells
  run with ``eval.closed_form_samples``), the necessity ``M`` (§3.2) at the lowest readout level (the sampler's
  ``sigma_min`` when the config lists it) and ``sigma_C(n)`` (§3.5).

Crossovers (``crossover``): the n at which a seed-mean curve falls through 1/2, bracketed by the two measured n
around it and interpolated linearly in ``log n``; the bracket's ratio says how precisely it is located. The net's
crossover is that of ``copy_share``; the theory's those of ``emp_copy_share`` and of ``M`` at the lowest level.

Writes ``curve_<dataset>.csv`` / ``curve.md`` (table and crossovers), ``curve_<dataset>.png`` with a provenance
sidecar and ``cells/`` (the cells read, so ``--runs <that folder>`` re-computes everything).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memdiff.claims import readout_bands
from memdiff.results import fmt_interval, load_results
from memdiff.cli import add_output_arguments
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write_json, atomic_write_text, provenance, save_figure
from sims.readout import Readout
from sims.stats import t_interval

DRAFT, PUBLISHED = Path("runs/figs/curve"), REPO_ROOT / "paper_figs" / "curve"
NET = ("copy_share", "fd", "ref_fd", "V_low", "G_low", "train_s")
THEORY = ("emp_copy_share", "M_min", "sigma_c")


def per_cell(df: pd.DataFrame, raw: dict[str, dict], method: str) -> pd.DataFrame:
    """One row per cell of ``method``: its metrics, readout bands and ``M_min``, the necessity at its lowest
    readout level ``sigma_min_readout``."""
    if not any(r["cell"]["method"] == method for r in raw.values()):
        raise ValueError(f"method must name a method with cells in this grid, got {method!r}; "
                         f"the grid has {sorted({r['cell']['method'] for r in raw.values()})}")
    bands = readout_bands(raw, methods=(method,))
    bands = bands.set_index(["dataset", "n", "seed"]) if not bands.empty else bands
    rows = []
    for cid, r in raw.items():
        cell = r["cell"]
        if cell["method"] != method:
            continue
        ro = Readout.from_dict(r["readout"])
        low = int(np.argmin(ro.sigma))
        key = (cell["dataset"], cell["n"], cell["seed"])
        band = bands.loc[key] if key in bands.index else {}
        rows.append({"dataset": cell["dataset"], "n": cell["n"], "seed": cell["seed"],
                     **{k: r["metrics"].get(k, math.nan) for k in ("copy_share", "fd", "ref_fd", "emp_copy_share")},
                     "V_low": band.get("V_low", math.nan), "G_low": band.get("G_low", math.nan),
                     "train_s": r.get("timing", {}).get("train_s", math.nan),
                     "M_min": float(ro.necessity[low]), "sigma_min_readout": float(ro.sigma[low]),
                     "sigma_c": r.get("sigma_c", math.nan)})
    return pd.DataFrame(rows)


def curve_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, n): seeds, and mean / 95% half-width (``_pm``) of every net and theory quantity."""
    rows = []
    for (dataset, n), g in cells.groupby(["dataset", "n"], sort=True):
        row = {"dataset": dataset, "n": int(n), "seeds": len(g), "sigma_min_readout": g["sigma_min_readout"].min()}
        for k in NET + THEORY:
            row[k], row[k + "_pm"], _ = t_interval(g[k])
        rows.append(row)
    return pd.DataFrame(rows)


def crossover(n, values, level: float = 0.5) -> dict[str, float]:
    """Where ``values`` (per increasing ``n``) first falls from ``>= level`` to ``< level``: ``n_lo`` and ``n_hi``
    (the measured n around it), ``ratio = n_hi / n_lo`` and ``n_star``, linear in ``log n`` between them. When
    every value is below ``level`` ``n_hi`` is the smallest n (the crossover lies below it), when none is,
    ``n_lo`` is the largest (it lies above); the other bounds are NaN."""
    n, v = np.asarray(n, dtype=float), np.asarray(values, dtype=float)
    if n.ndim != 1 or n.shape != v.shape or n.size == 0 or np.any(np.diff(n) <= 0):
        raise ValueError(f"n must be a non-empty increasing 1-D sequence the length of values, got {n} and {v}")
    nan = math.nan
    above = np.isfinite(v) & (v >= level)
    below = np.isfinite(v) & (v < level)
    for i in range(n.size - 1):
        if above[i] and below[i + 1]:
            t = (v[i] - level) / (v[i] - v[i + 1])
            n_star = math.exp(math.log(n[i]) + t * (math.log(n[i + 1]) - math.log(n[i])))
            return {"n_lo": n[i], "n_hi": n[i + 1], "ratio": n[i + 1] / n[i], "n_star": n_star}
    if below.any() and not above.any():
        return {"n_lo": nan, "n_hi": float(n[below][0]), "ratio": nan, "n_star": nan}
    if above.any() and not below.any():
        return {"n_lo": float(n[above][-1]), "n_hi": nan, "ratio": nan, "n_star": nan}
    return {"n_lo": nan, "n_hi": nan, "ratio": nan, "n_star": nan}


def describe(c: dict[str, float]) -> str:
    """A crossover in words for the table."""
    if np.isfinite(c["n_star"]):
        return f"n* ≈ {c['n_star']:.3g} (between n = {c['n_lo']:g} and {c['n_hi']:g}, a factor {c['ratio']:.2g})"
    if np.isfinite(c["n_hi"]):
        return f"below n = {c['n_hi']:g} (below 1/2 at every measured n)"
    if np.isfinite(c["n_lo"]):
        return f"above n = {c['n_lo']:g} (at or above 1/2 at every measured n)"
    return "not located (the curve does not fall through 1/2 once)"


def crossovers(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The net's crossover (``copy_share``) and the theory's (``emp_copy_share``, ``M_min``) of one dataset."""
    return {k: crossover(table["n"], table[k]) for k in ("copy_share", "emp_copy_share", "M_min")}


def curve_markdown(table: pd.DataFrame, method: str) -> str:
    lines = [f"Memorization against n: method `{method}` (mean ± 95% t-interval over seeds). copy = share of samples "
             "with d1/d2 < 1/3; FD on the package's own features, ref FD = held-out reals with the same sample count; "
             "V_low / G_low = two-net ratio / held-out gap below σ_C/2; closed form: copy share of the exact "
             "optimum's samples (same sampler), M at the lowest readout level, σ_C(n). Regenerate: "
             "`memdiff figs curve`.\n"]
    for dataset, t in table.groupby("dataset", sort=True):
        t = t.sort_values("n")
        lines += [f"## {dataset}\n",
                  "| n | seeds | copy | FD | ref FD | V_low | G_low | train s | closed-form copy | M(σ_min) | σ_C |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in t.iterrows():
            cols = [fmt_interval(r[k], r[k + "_pm"]) for k in NET + THEORY]
            lines.append(f"| {r['n']} | {r['seeds']} | " + " | ".join(cols) + " |")
        c = crossovers(t)
        lines += ["", f"- net (copy share falls through 1/2): {describe(c['copy_share'])}",
                  f"- closed form, exact optimum's samples: {describe(c['emp_copy_share'])}",
                  f"- closed form, M at σ = {t['sigma_min_readout'].min():g}: {describe(c['M_min'])}", ""]
    return "\n".join(lines)


def curve_figure(table: pd.DataFrame, dataset: str, method: str):
    """Four panels against n (log axis): copy shares (net and exact optimum) with the crossover; FD beside the
    held-out floor; the two-net ratio and held-out gap below sigma_C / 2; M at the lowest level and sigma_C(n)."""
    t = table[table.dataset == dataset].sort_values("n")
    n = t["n"].to_numpy()
    fig, (a, b, c, d) = plt.subplots(1, 4, figsize=(18, 4))
    bar = lambda ax, k, **kw: ax.errorbar(n, t[k], yerr=t[k + "_pm"].fillna(0), capsize=2, marker="o", ms=4, **kw)  # noqa: E731
    bar(a, "copy_share", color="k", label=f"trained ({method})")
    bar(a, "emp_copy_share", color="r", ls="--", label="exact optimum (closed form)")
    a.axhline(0.5, color="gray", ls=":", lw=0.8)
    cross = crossover(n, t["copy_share"])
    if np.isfinite(cross["n_star"]):
        a.axvspan(cross["n_lo"], cross["n_hi"], color="gray", alpha=0.15, label=f"net crossover ≈ {cross['n_star']:.3g}")
    a.set_ylabel("share of copies (d1/d2 < 1/3)")
    a.set_ylim(-0.03, 1.05)
    a.legend(fontsize=7)
    bar(b, "fd", color="k", label="samples")
    bar(b, "ref_fd", color="gray", ls=":", label="held-out reals (floor)")
    b.set_yscale("log")
    b.set_ylabel("Frechet distance (own features)")
    b.legend(fontsize=7)
    bar(c, "V_low", color="tab:blue", label="V below σ_C/2 (two nets)")
    bar(c, "G_low", color="tab:orange", label="G below σ_C/2 (held-out / train)")
    c.axhline(1.0, color="gray", ls=":", lw=0.8)
    c.set_yscale("log")
    c.legend(fontsize=7)
    bar(d, "M_min", color="r", label=f"M at σ = {t['sigma_min_readout'].min():g}")
    d.axhline(0.5, color="gray", ls=":", lw=0.8)
    d.set_ylabel("necessity M")
    d.set_ylim(-0.05, 1.05)
    d2 = d.twinx()
    d2.plot(n, t["sigma_c"], "b-s", ms=3, label="σ_C(n)")
    d2.set_ylabel("σ_C", color="b")
    d.legend(handles=d.get_legend_handles_labels()[0] + d2.get_legend_handles_labels()[0], fontsize=7)
    for ax in (a, b, c, d):
        ax.set_xscale("log")
        ax.set_xlabel("training-set size n")
    fig.suptitle(f"{dataset}: memorization against n (mean ± 95% t-interval over seeds)")
    fig.tight_layout()
    return fig


def make_all(run_dir: str | os.PathLike, out: str | os.PathLike, method: str = "edm") -> list[Path]:
    """Table, crossovers and figure per dataset of ``run_dir``'s ``method`` cells, into ``out`` as one set
    (an earlier set is replaced whole); returns the paths."""
    df, raw = load_results(run_dir)
    cells = per_cell(df, raw, method)
    table = curve_table(cells)
    with atomic_folder(out, "curve.md") as folder:
        (folder / "cells").mkdir()
        written = [Path(shutil.copy2(Path(run_dir) / "cells" / f"{cid}.json", folder / "cells" / f"{cid}.json"))
                   for cid in sorted(raw) if raw[cid]["cell"]["method"] == method]
        grid = Path(run_dir) / "grid.json"
        config = {"run_dir": str(run_dir), "method": method, "cells": len(cells),
                  "grid": json.loads(grid.read_text())["config"] if grid.exists() else None}
        if grid.exists():
            written.append(Path(shutil.copy2(grid, folder / "grid.json")))
        seeds = sorted(int(s) for s in cells["seed"].unique())
        written.append(atomic_write_text(folder / "curve.md", curve_markdown(table, method)))
        for dataset, t in table.groupby("dataset", sort=True):
            written.append(atomic_write_text(folder / f"curve_{dataset}.csv", t.to_csv(index=False)))
            fig = curve_figure(table, dataset, method)
            written.append(save_figure(fig, folder / f"curve_{dataset}.png", {**config, "dataset": dataset}, seeds))
            plt.close(fig)
        written.append(atomic_write_json(folder / "curve.json", provenance(config, seeds)))
    return [Path(out) / p.relative_to(folder) for p in written]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs/sim_curve"), help="grid output folder (memdiff sim --out)")
    parser.add_argument("--method", default="edm", help="the method whose cells make the curve (default: edm)")
    add_output_arguments(parser, DRAFT, PUBLISHED)


def run(args: argparse.Namespace) -> int:
    for p in make_all(args.runs, args.out, args.method):
        print(p)
    return 0
