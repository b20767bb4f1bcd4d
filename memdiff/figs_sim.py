"""``memdiff figs sim``: the 1D-track results table and figures from a grid's cell results.

- ``results.csv`` / ``results.md``: per (dataset, n, method) the mean and 95% t-interval over seeds,
  ``mean +- t_{0.975, k-1} s / sqrt(k)``, of every metric.
- ``tradeoff_<dataset>_n<n>.png``: memorization against quality (Frechet distance on the package's own
  classifier features, and PCA-Wasserstein), one point per method with its intervals.
- ``claims.md``: the papers' claims as paired per-seed comparisons, each with its verdict by the rules of
  docs/THEORY.md §7.6 (``memdiff.claims``; the equal-quality margin is the grid config's
  ``eval.equivalence_margin``, default 0.10 of the baseline's mean).
- ``readout_<dataset>_n<n>.png``: r(sigma) per method (mean over seeds), memorization necessity M(sigma),
  and the net's train/test loss per sigma beside the theory curves; sigma_C marked.
Every PNG gets a provenance sidecar (``sims.artifacts.save_figure``). The set goes to ``runs/figs/sim``, or the
committed ``paper_figs/sim`` with ``--publish``, built aside and swapped in whole (no stale figures of an
earlier grid beside new ones).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memdiff.claims import claims_markdown, equivalence_margin
from memdiff.results import load_results, markdown_table, summarise
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write_json, atomic_write_text, provenance, save_figure

FAMILY_COLORS = {"standard": "k", "ambient": "tab:blue", "CI (DDPM, t)": "tab:orange",
                 "CI (EDM, log sigma)": "tab:green", "ambient + CI": "tab:purple"}
DRAFT, PUBLISHED = Path("runs/figs/sim"), REPO_ROOT / "paper_figs" / "sim"


def tradeoff_figure(summary: pd.DataFrame, dataset: str, n: int):
    """Memorization (copy share, mean nearest-train distance) against quality (FD, Wasserstein); log axes for
    the distances, since a method whose sampler diverges lands orders of magnitude away."""
    s = summary[(summary.dataset == dataset) & (summary.n == n)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (xm, ym) in zip(axes, (("fd", "copy_share"), ("wasserstein", "nn_distance"))):
        log_y = ym == "nn_distance"
        for _, r in s.iterrows():
            color = FAMILY_COLORS.get(r["family"], "gray")
            ax.errorbar(r[xm], r[ym], xerr=_err(r, xm, log=True), yerr=_err(r, ym, log=log_y), fmt="o", color=color,
                        ms=4, capsize=2)
            ax.annotate(r["method"], (r[xm], r[ym]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        for m, line, positive in ((ym, ax.axhline, log_y), (xm, ax.axvline, True)):  # held-out reals' level
            ref = s["ref_" + m].mean() if "ref_" + m in s else math.nan
            if np.isfinite(ref) and (ref > 0 or not positive):
                line(ref, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel({"fd": "Frechet distance (own classifier features)", "wasserstein": "PCA Wasserstein"}[xm])
        ax.set_ylabel({"copy_share": "share of copies (d1/d2 < 1/3)", "nn_distance": "mean distance to nearest train item"}[ym])
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=f) for f, c in FAMILY_COLORS.items()]
    axes[1].legend(handles=handles + [plt.Line2D([], [], color="gray", ls=":", label="held-out reals")], fontsize=7)
    fig.suptitle(f"{dataset}, n = {n}: memorization vs quality (mean ± 95% t-interval over seeds)")
    fig.tight_layout()
    return fig


def _err(r: pd.Series, m: str, log: bool = False):
    """The 95% half-width as an error bar; on a log axis the lower arm stops short of zero."""
    pm = r.get(m + "_pm", math.nan)
    if not np.isfinite(pm):
        return None
    return [[min(pm, 0.9 * r[m])], [pm]] if log and r[m] > 0 else pm


def readout_figure(raw: dict[str, dict], dataset: str, n: int):
    """r(sigma) per method, M(sigma), and train/test losses of nets and theory, sigma_C marked."""
    cells = [r for r in raw.values() if r["cell"]["dataset"] == dataset and r["cell"]["n"] == n]
    by_method: dict[str, list[dict]] = {}
    for r in cells:
        by_method.setdefault(r["cell"]["method"], []).append(r)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for method, rs in sorted(by_method.items()):
        sig = np.asarray(rs[0]["readout"]["sigma"])
        color = FAMILY_COLORS.get(rs[0]["family"], "gray")
        ls = "--" if "high" in method else "-"
        axes[0].plot(sig, np.nanmean([r["readout"]["ratio"] for r in rs], axis=0), ls, color=color, lw=1,
                     label=method)
        axes[2].plot(sig, np.nanmean([r["readout"]["net_train"] for r in rs], axis=0), ls, color=color, lw=0.8)
        axes[2].plot(sig, np.nanmean([r["readout"]["net_test"] for r in rs], axis=0), ":", color=color, lw=0.8)
    ref = cells[0]["readout"]
    sig = np.asarray(ref["sigma"])
    axes[1].plot(sig, np.nanmean([r["readout"]["necessity"] for r in cells], axis=0), "k-")
    for key, style, label in (("emp_train", "r-", "D_emp train"), ("emp_test", "r:", "D_emp test"),
                              ("gen_train", "b-", "D_gen train"), ("gen_test", "b:", "D_gen test")):
        axes[2].plot(sig, np.nanmean([r["readout"][key] for r in cells], axis=0), style, lw=2, alpha=0.6, label=label)
    sigma_c = np.nanmean([r.get("sigma_c", math.nan) for r in cells])
    for ax, ylabel in zip(axes, ("r(σ) = E‖D_θ−D_emp‖² / E‖D_gen−D_emp‖²", "M(σ) = 1 − L_train(D_emp)/L_train(D_gen)",
                                 "loss per coordinate (nets: – train, ⋯ test)")):
        ax.set_xscale("log")
        ax.set_xlabel("σ")
        ax.set_ylabel(ylabel)
        if np.isfinite(sigma_c):
            ax.axvline(sigma_c, color="gray", ls="-.", lw=1, label=f"σ_C = {sigma_c:.2g}")
    axes[0].set_ylim(0, 2)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=6, ncol=2)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"{dataset}, n = {n}: per-noise-level readout (mean over seeds)")
    fig.tight_layout()
    return fig


def make_all(run_dir: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Write the table and every figure for the grid in ``run_dir`` into ``out`` as one set
    (``sims.artifacts.atomic_folder``: an earlier set there is replaced whole); returns the paths."""
    with atomic_folder(out, "results.json") as folder:
        written = _write_all(run_dir, folder)
    return [Path(out) / p.relative_to(folder) for p in written]


def _write_all(run_dir: str | os.PathLike, out: Path) -> list[Path]:
    """The table and figures of :func:`make_all`, written into the folder ``out``."""
    df, raw = load_results(run_dir)
    summary = summarise(df)
    written = [atomic_write_text(out / "results.csv", summary.to_csv(index=False)),
               atomic_write_text(out / "results.md", "Memorization: copy share = share of samples with d1/d2 < 1/3 "
                                 "(nearest / second-nearest training item, Euclidean); cosine share = share with "
                                 "cosine > 0.9 to a training item in the package's own classifier features; "
                                 "FD = Frechet distance on those features (no pretrained network exists for these "
                                 "data); ref_* = the same metric for held-out reals. Mean ± 95% t-interval over "
                                 "seeds.\n\n" + markdown_table(summary))]
    grid = Path(run_dir) / "grid.json"
    config = {"run_dir": str(run_dir), "cells": len(df),
              "grid": json.loads(grid.read_text())["config"] if grid.exists() else None}
    seeds = sorted(int(s) for s in df["seed"].unique())
    written.append(atomic_write_json(out / "results.json", provenance(config, seeds)))
    written.append(atomic_write_text(out / "claims.md", claims_markdown(df, raw, equivalence_margin(config["grid"]))))
    for (dataset, n), _ in df.groupby(["dataset", "n"], sort=True):
        for name, fig in ((f"tradeoff_{dataset}_n{n}.png", tradeoff_figure(summary, dataset, int(n))),
                          (f"readout_{dataset}_n{n}.png", readout_figure(raw, dataset, int(n)))):
            written.append(save_figure(fig, out / name, config, seed=seeds))
            plt.close(fig)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs/sim_grid"), help="grid output folder (memdiff sim --out)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=DRAFT, help="where the table and figures go")
    where.add_argument("--publish", dest="out", action="store_const", const=PUBLISHED,
                       help=f"write into the committed {PUBLISHED.relative_to(REPO_ROOT)}")


def run(args: argparse.Namespace) -> int:
    for p in make_all(args.runs, args.out):
        print(p)
    return 0
