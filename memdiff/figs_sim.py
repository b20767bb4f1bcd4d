"""``memdiff figs sim``: the 1D-track results table and figures from a grid's cell results.

- ``results.csv`` / ``results.md``: per (dataset, n, method) the mean and 95% t-interval over seeds,
  ``mean +- t_{0.975, k-1} s / sqrt(k)``, of every metric.
- ``tradeoff_<dataset>_n<n>.png``: memorization against quality (Frechet distance on the package's own
  classifier features, and PCA-Wasserstein), one point per method with its intervals.
- ``claims.md``: the papers' claims as paired per-seed comparisons, each with its verdict by the rules of
  docs/THEORY.md §7.6 (``memdiff.claims``; the equal-quality margin is the grid config's
  ``eval.equivalence_margin``, default 0.10 of the baseline's mean; the C1 and C6 rule options
  ``eval.c6_onset`` and ``eval.c1_min_gap``, §7.7).
- ``verdicts.md``: per claim (and CI reading) the count of judged rows per verdict word, naming them.
- ``copy_by_n_<kind>.png``: per data kind run at two or more n (e.g. MNIST-1D n = 100 and 300), copy share and FD
  against n, one line per method: does a method lower copying at every n, or only where the baseline copies?
- ``readout_<dataset>_n<n>.png``: the three readouts per sigma and method (calibrated r, train/held-out gap G,
  two-net V), the theory's necessity M(sigma), and the nets' train/test losses beside the closed forms';
  sigma_C marked.
- ``cells/<cell id>.json``: every cell's result as the grid wrote it, so each interval re-computes from the
  committed files (``memdiff figs sim --runs paper_figs/sim`` reads them back).
Every PNG gets a provenance sidecar (``sims.artifacts.save_figure``). The set goes to ``runs/figs/sim``, or the
committed ``paper_figs/sim`` with ``--publish``, built aside and swapped in whole (no stale figures of an
earlier grid beside new ones).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from image_track.data import DATASETS as IMAGE_DATASETS
from memdiff.claims import claims_markdown, equivalence_margin, readout_rules, verdict_summary
from memdiff.results import load_results, markdown_table, summarise
from memdiff.cli import add_output_arguments
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write_json, atomic_write_text, provenance, save_figure

FAMILY_COLORS = {"standard": "k", "ambient": "tab:blue", "CI (DDPM, t)": "tab:orange",
                 "CI (EDM, log sigma)": "tab:green", "ambient + CI": "tab:purple"}
DRAFT, PUBLISHED = Path("runs/figs/sim"), REPO_ROOT / "paper_figs" / "sim"


def _major_labels_only(ax) -> None:
    """Label a log axis at its major ticks only: the minor labels of a narrow log range overlap."""
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())


def _family_legend(ax) -> None:
    """The legend of the method families' colours and the held-out reals' dotted level."""
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=f) for f, c in FAMILY_COLORS.items()]
    ax.legend(handles=handles + [plt.Line2D([], [], color="gray", ls=":", label="held-out reals")], fontsize=7)


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
        _major_labels_only(ax)
        ax.set_xlabel({"fd": "Frechet distance (own classifier features)", "wasserstein": "PCA Wasserstein"}[xm])
        ax.set_ylabel({"copy_share": "share of copies (d1/d2 < 1/3)", "nn_distance": "mean distance to nearest train item"}[ym])
    _family_legend(axes[1])
    fig.suptitle(f"{dataset}, n = {n}: memorization vs quality (mean ± 95% t-interval over seeds)")
    fig.tight_layout()
    return fig


def copy_by_n_figure(rows: pd.DataFrame, kind: str):
    """Copy share and FD against n (log axis) for ``rows``, the summary rows of the data kind ``kind``, one line
    per method (mean ± 95% t-interval over seeds); the held-out reals' FD dotted."""
    s = rows.sort_values("n")
    ns = sorted(s["n"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, m in zip(axes, ("copy_share", "fd")):
        for method, r in s.groupby("method", sort=True):
            color = FAMILY_COLORS.get(r["family"].iloc[0], "gray")
            ls = "-" if method in ("edm", "ddpm") else "--"
            ax.errorbar(r["n"], r[m], yerr=r.get(m + "_pm"), color=color, ls=ls, marker="o", ms=3, capsize=2, lw=1)
            ax.annotate(method, (r["n"].iloc[-1], r[m].iloc[-1]), fontsize=6, xytext=(3, 0), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        _major_labels_only(ax)
        ax.set_xlabel("training set size n")
    ref = s.groupby("n")["ref_fd"].mean() if "ref_fd" in s else pd.Series(dtype=float)
    axes[1].plot(ref.index, ref.values, color="gray", ls=":", marker="x", label="held-out reals")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("share of copies (d1/d2 < 1/3)")
    axes[1].set_ylabel("Frechet distance (own classifier features)")
    _family_legend(axes[1])
    fig.suptitle(f"{kind}: memorization and quality against n, per method (solid: baselines)")
    fig.tight_layout()
    return fig


def _err(r: pd.Series, m: str, log: bool = False):
    """The 95% half-width as an error bar; on a log axis the lower arm stops short of zero."""
    pm = r.get(m + "_pm", math.nan)
    if not np.isfinite(pm):
        return None
    return [[min(pm, 0.9 * r[m])], [pm]] if log and r[m] > 0 else pm


def _seed_mean(curves) -> np.ndarray:
    """Mean over seeds per sigma of the finite values; NaN (a gap in the line) where no seed has one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": all seeds NaN at that level
        return np.nanmean(np.asarray(curves, dtype=float), axis=0)


def readout_figure(raw: dict[str, dict], dataset: str, n: int):
    """The three readouts per sigma (mean over seeds, one line per method): the calibrated ratio ``r`` (§6.1;
    gaps where its reference is not trusted), the train/held-out gap ``G`` (§6.8) and the two-net ratio ``V``
    (§6.9, methods with the test); below them the theory's ``M(sigma)`` and the losses of nets and closed forms.
    ``sigma_C`` (§3.5, the reference's density) marked on every panel."""
    cells = [r for r in raw.values() if r["cell"]["dataset"] == dataset and r["cell"]["n"] == n]
    by_method: dict[str, list[dict]] = {}
    for r in cells:
        by_method.setdefault(r["cell"]["method"], []).append(r)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    (ax_r, ax_g, ax_v), (ax_m, ax_loss, ax_key) = axes
    for method, rs in sorted(by_method.items()):
        sig = np.asarray(rs[0]["readout"]["sigma"])
        style = {"color": FAMILY_COLORS.get(rs[0]["family"], "gray"), "ls": "--" if "high" in method else "-"}
        mean = lambda key: _seed_mean([r["readout"][key] for r in rs])  # noqa: E731
        ax_r.plot(sig, mean("ratio"), lw=1, label=method, **style)
        ax_g.plot(sig, mean("heldout_ratio"), lw=1, **style)
        if v := [r["two_net"]["v"] for r in rs if r.get("two_net")]:
            ax_v.plot(sig, _seed_mean(v), lw=1.5, **style)
        ax_loss.plot(sig, mean("net_train"), lw=0.8, color=style["color"])
        ax_loss.plot(sig, mean("net_test"), ":", lw=0.8, color=style["color"])
    sig = np.asarray(cells[0]["readout"]["sigma"])
    ax_m.plot(sig, _seed_mean([r["readout"]["necessity"] for r in cells]), "k-")
    for key, style, label in (("emp_train", "r-", "D_emp train"), ("emp_test", "r:", "D_emp test"),
                              ("gen_train", "b-", "reference train"), ("gen_test", "b:", "reference test")):
        ax_loss.plot(sig, _seed_mean([r["readout"][key] for r in cells]), style, lw=2, alpha=0.6, label=label)
    sigma_c = np.nanmean([r.get("sigma_c", math.nan) for r in cells])
    labels = ("r(σ) = E‖D_θ−D_emp‖² / E‖D_ref−D_emp‖² (train inputs)", "G(σ) = L_test(D_θ) / L_train(D_θ)",
              "V(σ) = E‖D_1−D_2‖² / E‖D_emp,1−D_emp,2‖² (held-out inputs)", "theory: M(σ) = 1 − L_train(D_emp)/L_train(D_ref)",
              "loss per coordinate (nets: – train, ⋯ test)")
    for ax, ylabel in zip((ax_r, ax_g, ax_v, ax_m, ax_loss), labels):
        ax.set_xscale("log")
        ax.set_xlabel("σ")
        ax.set_ylabel(ylabel, fontsize=8)
        if np.isfinite(sigma_c):
            ax.axvline(sigma_c, color="gray", ls="-.", lw=1, label=f"σ_C = {sigma_c:.2g}")
    for ax in (ax_r, ax_v):
        ax.axhline(0.5, color="gray", ls=":", lw=0.8)
        ax.set_ylim(0, 1.6)
    ax_g.set_yscale("log")
    ax_g.axhline(1.0, color="gray", ls=":", lw=0.8)
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    ax_key.axis("off")
    ax_key.legend(*ax_r.get_legend_handles_labels(), fontsize=7, ncol=2, loc="center",
                  title="method (dashed: high-noise CI reading)")
    ref = cells[0].get("reference", "?")
    fig.suptitle(f"{dataset}, n = {n}: per-noise-level readouts (mean over seeds; reference: {ref}; "
                 "r blank where the reference is not trusted)")
    fig.tight_layout()
    return fig


def make_all(run_dir: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Write the table and every figure for the grid in ``run_dir`` into ``out`` as one set
    (``sims.artifacts.atomic_folder``: an earlier set there is replaced whole); returns the paths."""
    with atomic_folder(out, "results.json") as folder:
        written = _write_all(run_dir, folder)
    return [Path(out) / p.relative_to(folder) for p in written]


def _write_all(run_dir: str | os.PathLike, out: Path, images: bool | None = None) -> list[Path]:
    """The table and figures of :func:`make_all`, written into the folder ``out``; ``images``: judge ambient
    against EDM as C3 (an image grid) or C2, by default from the grid config's dataset kinds."""
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
    (out / "cells").mkdir()
    for f in sorted((Path(run_dir) / "cells").glob("*.json")):  # checked by load_results above
        written.append(Path(shutil.copy2(f, out / "cells" / f.name)))
    if grid.exists():
        written.append(Path(shutil.copy2(grid, out / "grid.json")))
    config = {"run_dir": str(run_dir), "cells": len(df),
              "grid": json.loads(grid.read_text())["config"] if grid.exists() else None}
    seeds = sorted(int(s) for s in df["seed"].unique())
    written.append(atomic_write_json(out / "results.json", provenance(config, seeds)))
    margin, rules = equivalence_margin(config["grid"]), readout_rules(config["grid"])
    datasets = (config["grid"] or {}).get("datasets", ())
    if images is None:
        images = any(d.get("kind") in IMAGE_DATASETS for d in datasets)
    written.append(atomic_write_text(out / "claims.md", claims_markdown(df, raw, margin, rules, images)))
    written.append(atomic_write_text(out / "verdicts.md", "Verdict counts per claim (rules: docs/THEORY.md §7.6-7.7; "
                                     "every row's numbers: claims.md). Regenerate: `memdiff figs sim`.\n\n"
                                     + verdict_summary(df, raw, margin, rules, images)))
    for (dataset, n), _ in df.groupby(["dataset", "n"], sort=True):
        for name, fig in ((f"tradeoff_{dataset}_n{n}.png", tradeoff_figure(summary, dataset, int(n))),
                          (f"readout_{dataset}_n{n}.png", readout_figure(raw, dataset, int(n)))):
            written.append(save_figure(fig, out / name, config, seed=seeds))
            plt.close(fig)
    kinds = {d["name"]: d.get("kind", d["name"]) for d in datasets}
    for kind, rows in summary.groupby(summary["dataset"].map(lambda d: kinds.get(d, d)), sort=True):
        if rows["n"].nunique() >= 2:
            fig = copy_by_n_figure(rows, kind)
            written.append(save_figure(fig, out / f"copy_by_n_{kind}.png", config, seed=seeds))
            plt.close(fig)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs/sim_grid"), help="grid output folder (memdiff sim --out)")
    add_output_arguments(parser, DRAFT, PUBLISHED)


def run(args: argparse.Namespace) -> int:
    for p in make_all(args.runs, args.out):
        print(p)
    return 0
