"""Grid results as tables: one row per finished cell, mean and 95% t-interval per (dataset, n, method)
(docs/THEORY.md §7.1), and the markdown those tables are printed in."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from memdiff.sim import SMOKE_CONFIG, run_1d_grid
from sims.grid import load_config
from sims.methods import canonical
from sims.readout import copy_onset

METRICS = ("copy_share", "nn_distance", "cosine_share", "fd", "wasserstein", "js", "mmd", "copy_onset",
           "train_loss", "ref_copy_share", "ref_nn_distance", "ref_cosine_share", "ref_fd", "ref_wasserstein")


def load_results(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, dict]]:
    """One row per finished cell (ids, family, flat metrics, ``copy_onset`` derived from the readout) and the
    raw results keyed by cell id."""
    files = sorted((Path(run_dir) / "cells").glob("*.json"))
    if not files:
        raise ValueError(f"run_dir must hold cell results in {Path(run_dir) / 'cells'}, found none")
    raw = {f.stem: json.loads(f.read_text()) for f in files}
    for r in raw.values():  # results written before the one registry: its names
        r["method"] = canonical(r.get("method", {}))
    rows = [{**r["cell"], "family": r["family"], "sigma_c": r.get("sigma_c", math.nan), **r["metrics"],
             "copy_onset": copy_onset(r["readout"]["sigma"], r["readout"]["ratio"])} for r in raw.values()]
    return pd.DataFrame(rows), raw


def notebook_results() -> tuple[pd.DataFrame, dict[str, dict]]:
    """The grid results a notebook reads: ``$MEMDIFF_SIM_RUNS`` (default ``runs/sim_grid``) when it holds cells
    and ``MEMDIFF_FAST`` is not ``1``; otherwise the smoke grid's MNIST-1D cells, run into ``runs/notebooks/sim_fast``."""
    runs = Path(os.environ.get("MEMDIFF_SIM_RUNS", "runs/sim_grid"))
    if os.environ.get("MEMDIFF_FAST") == "1" or not (runs / "cells").exists():
        runs = Path("runs/notebooks/sim_fast")
        run_1d_grid(load_config(SMOKE_CONFIG), runs, only="mnist1d-*", log=lambda _: None)
    df, raw = load_results(runs)
    print(f"{len(df)} cells from {runs}")
    return df, raw


def t_interval(values) -> tuple[float, float, int]:
    """``(mean, half-width of the 95% t-interval, count)`` over the finite values (half-width nan if < 2)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    if v.size == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)), int(v.size)


def summarise(df: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Mean, 95% half-width and seed count of each metric per (dataset, n, family, method)."""
    rows = []
    for key, g in df.groupby(["dataset", "n", "family", "method"], sort=True):
        row = dict(zip(("dataset", "n", "family", "method"), key), seeds=len(g))
        for m in metrics:
            if m in g:
                row[m], row[m + "_pm"], _ = t_interval(g[m])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame, metrics=METRICS) -> str:
    cols = [m for m in metrics if m in summary]
    lines = ["| dataset | n | method | seeds | " + " | ".join(cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = [fmt_interval(r[m], r.get(m + "_pm", math.nan)) for m in cols]
        lines.append(f"| {r['dataset']} | {r['n']} | {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_interval(mean: float, pm: float, signed: bool = False) -> str:
    """``mean ± pm`` for tables (3 and 2 significant digits; '-' for no value, no ``±`` for no interval)."""
    if not np.isfinite(mean):
        return "-"
    return f"{mean:{'+' if signed else ''}.3g}" + (f" ± {pm:.2g}" if np.isfinite(pm) else "")
