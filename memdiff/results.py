"""Grid results as tables: one row per finished cell, mean and 95% t-interval per (dataset, n, method)
(docs/THEORY.md §7.1), and the markdown those tables are printed in.

Every cell file is checked on read (``sims.grid.read_cell``): an invalid one stops ``load_results`` with an
error naming it, rather than being left out of the tables. A NaN metric of a seed (a failed or undefined
measurement, e.g. no copy onset) counts as missing for that metric only: each metric's ``<metric>_n`` is the
number of seeds with a finite value, and the markdown table shows ``(n=k)`` beside a mean over fewer seeds
than the row's ``seeds`` (the number of finished cells)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from memdiff.sim import SMOKE_CONFIG, run_1d_grid
from sims.grid import load_config, read_cell
from sims.methods import canonical
from sims.readout import Readout, copy_onset
from sims.stats import t_interval  # §7.1; lives in sims.stats, imported back for callers of memdiff.results

METRICS = ("copy_share", "nn_distance", "cosine_share", "fd", "wasserstein", "js", "wasserstein_train", "js_train",
           "mmd", "copy_onset",
           "train_loss", "train_s", "ref_copy_share", "ref_nn_distance", "ref_cosine_share", "ref_fd", "ref_wasserstein")


def load_results(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, dict]]:
    """One row per finished cell (ids, family, flat metrics, ``copy_onset`` derived from the readout) and the
    raw results keyed by cell id. ``ValueError`` naming the file when a cell file is invalid (truncated, not
    JSON, wrong schema or checksum): re-running ``memdiff sim`` with the same arguments repairs it."""
    files = sorted((Path(run_dir) / "cells").glob("*.json"))
    if not files:
        raise ValueError(f"run_dir must hold cell results in {Path(run_dir) / 'cells'}, found none")
    raw = {}
    for f in files:
        try:
            raw[f.stem] = read_cell(f)
        except ValueError as e:
            raise ValueError(f"{e}; run `memdiff sim` again with the same arguments to re-run that cell") from None
    for r in raw.values():  # results written before the one registry: its names; before a readout field: NaN
        r["method"] = canonical(r.get("method", {}))
        r["readout"] = Readout.from_dict(r["readout"]).to_dict()
    rows = [{**r["cell"], "family": r["family"], "sigma_c": r.get("sigma_c", math.nan), **r["metrics"],
             "copy_onset": copy_onset(r["readout"]["sigma"], r["readout"]["ratio"]),
             "train_s": r.get("timing", {}).get("train_s", math.nan)} for r in raw.values()]
    return pd.DataFrame(rows), raw


def notebook_results() -> tuple[pd.DataFrame, dict[str, dict]]:
    """The grid results a notebook reads: ``$MEMDIFF_SIM_RUNS`` (default ``runs/sim_grid``) when it holds cells
    and ``MEMDIFF_FAST`` is not ``1``; otherwise the smoke grid's MNIST-1D cells, run into ``sim_fast`` under
    ``$MEMDIFF_NOTEBOOK_OUT`` (default ``runs/notebooks``; ``memdiff notebooks`` sets it to its ``--out``)."""
    runs = Path(os.environ.get("MEMDIFF_SIM_RUNS", "runs/sim_grid"))
    if os.environ.get("MEMDIFF_FAST") == "1" or not (runs / "cells").exists():
        runs = Path(os.environ.get("MEMDIFF_NOTEBOOK_OUT", "runs/notebooks")) / "sim_fast"
        run_1d_grid(load_config(SMOKE_CONFIG), runs, only="mnist1d-*", log=lambda _: None)
    df, raw = load_results(runs)
    print(f"{len(df)} cells from {runs}")
    return df, raw


def summarise(df: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Per (dataset, n, family, method): ``seeds`` (finished cells) and each metric's mean, 95% half-width
    (``_pm``) and number of seeds with a finite value (``_n``; a NaN is a failed or undefined measurement)."""
    rows = []
    for key, g in df.groupby(["dataset", "n", "family", "method"], sort=True):
        row = dict(zip(("dataset", "n", "family", "method"), key), seeds=len(g))
        for m in metrics:
            if m in g:
                row[m], row[m + "_pm"], row[m + "_n"] = t_interval(g[m])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame, metrics=METRICS) -> str:
    """One row per ``summarise`` row; a mean over fewer seeds than ``seeds`` (the others NaN) says ``(n=k)``."""
    cols = [m for m in metrics if m in summary]
    lines = ["| dataset | n | method | seeds | " + " | ".join(cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = [fmt_interval(r[m], r.get(m + "_pm", math.nan)) + _fewer(r.get(m + "_n", r["seeds"]), r["seeds"])
                 for m in cols]
        lines.append(f"| {r['dataset']} | {r['n']} | {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fewer(count: float, seeds: int) -> str:
    """`` (n=k)`` when ``k`` of the ``seeds`` gave a finite value, ``0 < k < seeds``."""
    return f" (n={int(count)})" if 0 < count < seeds else ""


def fmt_interval(mean: float, pm: float, signed: bool = False) -> str:
    """``mean ± pm`` for tables (3 and 2 significant digits; '-' for no value, no ``±`` for no interval)."""
    if not np.isfinite(mean):
        return "-"
    return f"{mean:{'+' if signed else ''}.3g}" + (f" ± {pm:.2g}" if np.isfinite(pm) else "")
