"""The papers' claims as paired comparisons over a grid's cells (``claims.md``, written by ``memdiff figs sim``).

Cells that differ only in the method share their seed, hence their training subset and sampler noise, so
each comparison is the per-seed difference ``method - baseline``, reported as mean and 95% t-interval.
The README's verdicts quote these tables; nothing here decides a verdict.

- C1 memorization is necessary only at low noise: the trained net's readout ``r(sigma)`` (0: the empirical
  optimum, 1: the generalizing reference) averaged below ``sigma_C / 2`` and above ``2 sigma_C``, beside the
  theory's necessity ``M`` there.
- C2 ambient training lowers memorization at equal quality: ``ambient_*`` against ``edm``.
- C4 the interval width controls the trade-off, C5 "later" steps lower memorization and improve alignment:
  ``ci_ddpm_*`` against uniform ``ddpm`` and ``ci_edm_*`` against ``edm``.
- C6 ``sigma_C`` predicts where the trained nets start to copy: ``copy_onset`` (where the band of ``r <= 1/2``
  that starts at the smallest sigma ends, ``sims.readout.copy_onset``) against ``sigma_C``.
- C7 ambient + CI beats either alone: ``ambient_1.0_ci_edm_*`` against ``ambient_1.0`` and ``ci_edm_*``.

Theory: docs/THEORY.md §7.2-7.3."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from memdiff.results import fmt_interval, t_interval

DELTAS = ("copy_share", "nn_distance", "fd", "wasserstein", "js")


def paired(df: pd.DataFrame, method: str, baseline: str, metrics=DELTAS) -> list[dict]:
    """Per (dataset, n) where both ran: mean and 95% interval of ``method - baseline`` over shared seeds."""
    rows = []
    for (dataset, n), g in df.groupby(["dataset", "n"], sort=True):
        a = g[g.method == method].set_index("seed")
        b = g[g.method == baseline].set_index("seed")
        seeds = a.index.intersection(b.index)
        if len(seeds) == 0:
            continue
        row = {"dataset": dataset, "n": int(n), "method": method, "baseline": baseline, "seeds": len(seeds)}
        for m in metrics:
            row[m], row[m + "_pm"], _ = t_interval(a.loc[seeds, m] - b.loc[seeds, m])
            row[m + "_base"] = float(b.loc[seeds, m].mean())
        rows.append(row)
    return rows


def paired_table(rows: list[dict], metrics=DELTAS) -> str:
    head = "| dataset | n | method - baseline | seeds | " + " | ".join(f"Δ {m} (baseline)" for m in metrics) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(metrics)]
    for r in rows:
        cells = [f"{fmt_interval(r[m], r[m + '_pm'], signed=True)} ({r[m + '_base']:.3g})" for m in metrics]
        lines.append(f"| {r['dataset']} | {r['n']} | {r['method']} - {r['baseline']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readout_bands(raw: dict[str, dict], methods=("edm", "ddpm")) -> pd.DataFrame:
    """C1: mean ``r`` and theory ``M`` below ``sigma_C / 2`` and above ``2 sigma_C``, per (dataset, n, method)."""
    rows = []
    for r in raw.values():
        cell = r["cell"]
        if cell["method"] not in methods or not np.isfinite(r.get("sigma_c", math.nan)):
            continue
        s, ratio, m = (np.asarray(r["readout"][k], dtype=float) for k in ("sigma", "ratio", "necessity"))
        low, high = s <= r["sigma_c"] / 2, s >= 2 * r["sigma_c"]
        rows.append({"dataset": cell["dataset"], "n": cell["n"], "method": cell["method"], "seed": cell["seed"],
                     "sigma_c": r["sigma_c"], "r_low": ratio[low].mean() if low.any() else math.nan,
                     "r_high": ratio[high].mean() if high.any() else math.nan,
                     "M_low": m[low].mean() if low.any() else math.nan,
                     "M_high": m[high].mean() if high.any() else math.nan})
    return pd.DataFrame(rows)


def _summary_table(df: pd.DataFrame, keys: list[str], cols: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " | seeds | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(keys) + 1 + len(cols))]
    for key, g in df.groupby(keys, sort=True):
        cells = [fmt_interval(*t_interval(g[c])[:2]) for c in cols]
        lines.append("| " + " | ".join(map(str, key)) + f" | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def claims_markdown(df: pd.DataFrame, raw: dict[str, dict]) -> str:
    """All claim tables, for the methods present in ``df``."""
    have = set(df.method)
    pairs = lambda ms, base: [r for m in ms if m in have and base in have for r in paired(df, m, base)]  # noqa: E731
    ambient = sorted(m for m in have if m.startswith("ambient_") and "ci" not in m)
    ci_ddpm = sorted(m for m in have if m.startswith("ci_ddpm"))
    ci_edm = sorted(m for m in have if m.startswith("ci_edm"))
    combined = sorted(m for m in have if m.startswith("ambient_") and "_ci_" in m)
    parts = ["# Claims as paired comparisons\n",
             "Per-seed differences `method - baseline` (same training subset and sampler noise), mean ± 95% "
             "t-interval over seeds; the baseline's mean in brackets. Lower copy share = less memorization; "
             "lower FD / Wasserstein / JS = better alignment with held-out data. Regenerate: `memdiff figs sim`.\n",
             "## C1: where the trained net copies (r = 0: empirical optimum, 1: generalizing reference)\n",
             _summary_table(readout_bands(raw), ["dataset", "n", "method"], ["sigma_c", "r_low", "r_high", "M_low", "M_high"]),
             "`r_low`, `M_low`: mean over readout levels sigma <= sigma_C / 2; `r_high`, `M_high`: sigma >= 2 sigma_C.\n",
             "## C2: ambient training against EDM\n", paired_table(pairs(ambient, "edm")),
             "## C4 and C5: CI timestep sampling against uniform steps (DDPM form) and EDM (log-sigma form)\n",
             paired_table(pairs(ci_ddpm, "ddpm") + pairs(ci_edm, "edm")),
             "## C6: copy onset against sigma_C\n",
             _summary_table(df.assign(onset_over_sigma_c=df.copy_onset / df.sigma_c),
                            ["dataset", "n", "method"], ["sigma_c", "copy_onset", "onset_over_sigma_c", "copy_share"]),
             "`copy_onset`: where the copying band that starts at the smallest readout sigma ends, i.e. the first "
             "sigma at which r rises above 1/2 (below it the net is nearer the copier than the generalizer); "
             "NaN where r is above 1/2 already at the smallest sigma.\n",
             "## C7: ambient + CI against each alone\n"]
    c7 = []
    for m in combined:
        c7 += pairs([m], "ambient_1.0") + pairs([m], m.replace("ambient_1.0_", ""))
    parts.append(paired_table(c7))
    return "\n".join(parts)
