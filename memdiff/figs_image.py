"""``memdiff figs image``: the image track's results (issue #11) from an image grid's cells
(``memdiff image grid --config configs/image_cpu.toml``).

Everything ``memdiff figs sim`` writes for a grid (``memdiff.figs_sim``: results tables, claims, verdicts, the
copy-versus-FD trade-off and the readout figures per dataset and n, and the cells), plus:

- ``samples_<dataset>_n<n>.png``: one row per method, the first samples of one seed's net (top) above their
  nearest training images (below; Euclidean on the pixels), titled with the copy share and each pair's d1/d2
  (cells run with ``eval.preview_samples``, ``sims.cell``; red: a copy, d1/d2 < 1/3);
- ``paired_<dataset>.png`` and ``paired_<dataset>.json``: the closed form beside the trained nets on the very
  training subsets of the grid, per n: the nets' copy share per method (mean ± 95% t-interval over seeds,
  docs/THEORY.md §7.1) against the exact optimum's by the same sampler (``emp_copy_share``, cells run with
  ``eval.closed_form_samples``), and the theory's necessity M(sigma) (§3.2) beside the nets' calibrated ratio
  r(sigma) (§6.1) and held-out gap G(sigma) (§6.8), seed means, sigma_C (§3.5) marked. The JSON is the PNG's
  provenance sidecar with the numbers: per (n, method) the seeds, the copy share's mean and half-width, the
  exact optimum's mean copy share, sigma_C and the sigma grid with the means of M, r and G.

A picture whose cells lack the data (no preview; no ``emp_copy_share``) is left out, or drawn without it, with a
printed line saying so. Every PNG has a provenance sidecar (``sims.artifacts.save_figure``). The set goes to
``runs/figs/image``, or the committed ``paper_figs/image`` with ``--publish``, built aside and swapped in whole.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from memdiff.figs_sim import FAMILY_COLORS, _seed_mean, _write_all
from memdiff.results import load_results
from memdiff.cli import add_output_arguments
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write_json, provenance, save_figure
from sims.stats import t_interval

DRAFT, PUBLISHED = Path("runs/figs/image"), REPO_ROOT / "paper_figs" / "image"
BASELINE = "edm"
COPY_RATIO = 1 / 3  # d1/d2 below it: a copy (sims.metrics.memorization_report)


def _groups(raw: dict[str, dict]) -> dict[tuple[str, int], dict[str, list[dict]]]:
    """Cells by (dataset, n), then by method (the baseline first), each list by seed."""
    out: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for r in sorted(raw.values(), key=lambda r: r["cell"]["seed"]):
        c = r["cell"]
        out.setdefault((c["dataset"], int(c["n"])), {}).setdefault(c["method"], []).append(r)
    return {k: dict(sorted(v.items(), key=lambda kv: (kv[0] != BASELINE, kv[0]))) for k, v in sorted(out.items())}


def _image(item: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` in ``[-1, 1]`` -> ``(H, W)`` (one channel) or ``(H, W, 3)`` in ``[0, 1]`` for ``imshow``."""
    a = (np.clip(item, -1, 1) + 1) / 2
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def samples_figure(by_method: dict[str, list[dict]], dataset: str, n: int):
    """One row per method with a preview: its first seed's samples above their nearest training images; ``None``
    when no cell has a preview."""
    shown = {m: next(r for r in rs if r.get("preview")) for m, rs in by_method.items() if any(r.get("preview") for r in rs)}
    if not shown:
        return None
    k = max(len(r["preview"]["samples"]) for r in shown.values())
    fig = plt.figure(figsize=(max(5.0, 0.9 * k), 2.4 * len(shown)))
    for sub, (method, r) in zip(fig.subfigures(len(shown), 1, squeeze=False).flat, shown.items()):
        p = r["preview"]
        shape = tuple(p["shape"])
        samples = np.asarray(p["samples"], dtype=float).reshape(-1, *shape)
        nearest = np.asarray(p["nearest"], dtype=float).reshape(-1, *shape)
        mean, pm, seeds = t_interval([x["metrics"].get("copy_share", math.nan) for x in by_method[method]])
        sub.suptitle(f"{method} (seed {r['cell']['seed']}): copy share {r['metrics']['copy_share']:.2f} "
                     f"(mean over {seeds} seeds {mean:.2f}" + (f" ± {pm:.2f})" if np.isfinite(pm) else ")"), fontsize=8)
        axes = sub.subplots(2, k, squeeze=False)
        sub.subplots_adjust(top=0.8, hspace=0.3)
        for ax in axes.flat:
            ax.axis("off")
        for j, (s, t, ratio) in enumerate(zip(samples, nearest, p["distance_ratio"])):
            for ax, item in ((axes[0, j], s), (axes[1, j], t)):
                ax.imshow(_image(item), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[0, j].set_title(f"d1/d2 {ratio:.2f}", fontsize=6, color="r" if ratio < COPY_RATIO else "k")
        axes[0, 0].text(-0.15, 0.5, "sample", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=6)
        axes[1, 0].text(-0.15, 0.5, "nearest train", transform=axes[1, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=6)
    fig.suptitle(f"{dataset}, n = {n}: samples (top) above their nearest training images (bottom); red: d1/d2 < 1/3",
                 fontsize=9, y=1.02)
    return fig


def _finite_or_none(v):
    """JSON-ready: a number, or ``None`` for a NaN (no value), element-wise through lists."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_finite_or_none(x) for x in v]
    return float(v) if v is not None and np.isfinite(v) else None


def paired_rows(groups: dict[tuple[str, int], dict[str, list[dict]]], dataset: str) -> list[dict]:
    """Per (n, method) of ``dataset``: seeds, the nets' copy share (mean, 95% half-width), the exact optimum's
    mean copy share (``None`` where no cell has it), sigma_C and per sigma the seed means of M, r and G."""
    rows = []
    for (d, n), by_method in groups.items():
        if d != dataset:
            continue
        for method, rs in by_method.items():
            mean, pm, _ = t_interval([r["metrics"].get("copy_share", math.nan) for r in rs])
            emp = [r["metrics"]["emp_copy_share"] for r in rs if "emp_copy_share" in r["metrics"]]
            rows.append({"n": n, "method": method, "family": rs[0]["family"], "seeds": [r["cell"]["seed"] for r in rs],
                         "copy_share": mean, "copy_share_pm": pm,
                         "emp_copy_share": float(np.mean(emp)) if emp else None, "emp_copy_share_seeds": len(emp),
                         "sigma_c": float(np.nanmean([r.get("sigma_c", math.nan) for r in rs])),
                         "sigma": rs[0]["readout"]["sigma"],
                         **{key: _seed_mean([r["readout"][key] for r in rs]).tolist()
                            for key in ("necessity", "ratio", "heldout_ratio")}})
    return [{k: v if k in ("n", "method", "family", "seeds", "emp_copy_share_seeds") else _finite_or_none(v)
             for k, v in row.items()} for row in rows]


def paired_figure(rows: list[dict], dataset: str):
    """Per n (a row of panels): the nets' copy share per method beside the exact optimum's; M(sigma) beside the
    nets' r(sigma); G(sigma); sigma_C marked."""
    ns = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(len(ns), 3, figsize=(16, 3.8 * len(ns)), squeeze=False)
    nan = lambda v: np.asarray([math.nan if x is None else x for x in v], dtype=float)  # noqa: E731
    for (ax_c, ax_m, ax_g), n in zip(axes, ns):
        rs = [r for r in rows if r["n"] == n]
        x = np.arange(len(rs))
        colors = [FAMILY_COLORS.get(r["family"], "gray") for r in rs]
        ax_c.bar(x, nan([r["copy_share"] for r in rs]), yerr=np.nan_to_num(nan([r["copy_share_pm"] for r in rs])),
                 color=colors, alpha=0.7, capsize=3, label="trained nets (mean ± 95% t-interval)")
        emp = nan([r["emp_copy_share"] for r in rs])
        if np.isfinite(emp).any():
            ax_c.plot(x, emp, "r_", ms=22, mew=2.5, label="exact optimum, same sampler (closed form)")
        ax_c.set_xticks(x, [r["method"] for r in rs], rotation=30, ha="right", fontsize=7)
        ax_c.set_ylim(0, 1.05)
        ax_c.set_ylabel(f"n = {n}: share of copies (d1/d2 < 1/3)")
        ax_c.legend(fontsize=7)
        sig = np.asarray(rs[0]["sigma"], dtype=float)
        ax_m.plot(sig, np.nanmean([nan(r["necessity"]) for r in rs], axis=0), "r-", lw=2.5, alpha=0.7,
                  label="theory: M(σ) (closed forms)")
        for r in rs:
            style = {"color": FAMILY_COLORS.get(r["family"], "gray"), "lw": 2 if r["method"] == BASELINE else 1,
                     "ls": "--" if "high" in r["method"] else "-"}
            ax_m.plot(sig, nan(r["ratio"]), label=f"r(σ) {r['method']}", **style)
            ax_g.plot(sig, nan(r["heldout_ratio"]), label=r["method"], **style)
        sigma_c = np.nanmean(nan([r["sigma_c"] for r in rs]))
        for ax in (ax_m, ax_g):
            ax.set_xscale("log")
            ax.set_xlabel("σ")
            if np.isfinite(sigma_c):
                ax.axvline(sigma_c, color="gray", ls="-.", lw=1, label=f"σ_C = {sigma_c:.2g}")
        ax_m.axhline(0.5, color="gray", ls=":", lw=0.8)
        ax_m.set_ylim(0, 1.6)
        ax_m.set_ylabel("M(σ) (theory) and r(σ) (nets)", fontsize=8)
        ax_m.legend(fontsize=6, ncol=2)
        ax_g.set_yscale("log")
        ax_g.axhline(1.0, color="gray", ls=":", lw=0.8)
        ax_g.set_ylabel("G(σ) = L_test(D_θ) / L_train(D_θ)", fontsize=8)
    fig.suptitle(f"{dataset}: closed form beside the trained nets on the same training subsets (seed means)")
    fig.tight_layout()
    return fig


def make_all(run_dir: str | os.PathLike, out: str | os.PathLike, log: Callable[[str], None] = print) -> list[Path]:
    """``memdiff figs sim``'s set for the grid in ``run_dir`` plus the sample and paired pictures, into ``out`` as
    one set (an earlier set there is replaced whole); returns the paths. Pictures left out are ``log``ged."""
    _, raw = load_results(run_dir)
    groups = _groups(raw)
    grid = Path(run_dir) / "grid.json"
    config = {"run_dir": str(run_dir), "cells": len(raw),
              "grid": json.loads(grid.read_text())["config"] if grid.exists() else None}
    no_preview, no_emp = [], []
    with atomic_folder(out, "results.json") as folder:
        written = _write_all(run_dir, folder, images=True)
        for (dataset, n), by_method in groups.items():
            seeds = sorted({r["cell"]["seed"] for rs in by_method.values() for r in rs})
            fig = samples_figure(by_method, dataset, n)
            if fig is None:
                no_preview.append(f"{dataset} n={n}")
                continue
            written.append(save_figure(fig, folder / f"samples_{dataset}_n{n}.png",
                                       {**config, "dataset": dataset, "n": n}, seeds))
            plt.close(fig)
        for dataset in sorted({d for d, _ in groups}):
            rows = paired_rows(groups, dataset)
            if all(r["emp_copy_share"] is None for r in rows):
                no_emp.append(dataset)
            seeds = sorted({s for r in rows for s in r["seeds"]})
            fig = paired_figure(rows, dataset)
            png = save_figure(fig, folder / f"paired_{dataset}.png", {**config, "dataset": dataset}, seeds)
            plt.close(fig)  # the sidecar, with the numbers:
            written += [png, atomic_write_json(png.with_suffix(".json"),
                                               {**provenance({**config, "dataset": dataset}, seeds), "paired": rows})]
    if no_preview:
        log(f"skipped samples_*.png for {', '.join(no_preview)}: no cell has a preview (run the grid with "
            "eval.preview_samples > 0)")
    if no_emp:
        log(f"paired_*.png without the exact optimum's copy share for {', '.join(no_emp)}: no cell has "
            "emp_copy_share (run the grid with eval.closed_form_samples > 0)")
    return [Path(out) / p.relative_to(folder) for p in written]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs/image_grid"),
                        help="image grid output folder (memdiff image grid --out)")
    add_output_arguments(parser, DRAFT, PUBLISHED)


def run(args: argparse.Namespace) -> int:
    for p in make_all(args.runs, args.out):
        print(p)
    return 0
