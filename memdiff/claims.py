"""The papers' claims as paired comparisons over a grid's cells, each judged by verdict rules fixed before
the numbers (``claims.md``, written by ``memdiff figs sim``).

Cells that differ only in the method share their seed, hence their training subset and sampler noise, so
each comparison is the per-seed difference ``method - baseline``, reported as mean and 95% t-interval
(§7.2). A claim is made of parts (:class:`Part`), each a statement about one metric's paired difference:
directional (``lower`` / ``higher``) or ``equal`` (equivalence within a margin fixed in the grid config,
TOST, §7.5). :func:`judge_part` finds whether a part holds, its opposite holds or it is within noise;
:func:`verdict` turns the parts into one word (``reproduced``, ``contradicted``, ``partly``, ``not shown``)
and a sentence naming each part's outcome (the rules: §7.6).

- C1 memorization is necessary only at low noise: the trained net's readout ``r(sigma)`` (0: the empirical
  optimum, 1: the generalizing reference) averaged below ``sigma_C / 2`` and above ``2 sigma_C``, beside the
  theory's necessity ``M`` there (descriptive: no paired difference, no verdict rule).
- C2 ambient training lowers memorization at equal quality: ``ambient_*`` against ``edm``.
- C4 the interval width controls the trade-off: each narrower CI interval against the widest of its form
  and reading (``ci_ddpm_low_0.4`` against ``ci_ddpm_low_0.8``).
- C5 emphasis on later denoising steps lowers memorization and improves alignment: ``ci_ddpm_*`` against
  uniform ``ddpm`` and ``ci_edm_*`` against ``edm``.
- C6 ``sigma_C`` predicts where the trained nets start to copy: ``copy_onset`` (where the band of ``r <= 1/2``
  that starts at the smallest sigma ends, ``sims.readout.copy_onset``) against ``sigma_C`` (descriptive).
- C7 ambient + CI beats either alone: ``ambient_1.0_ci_edm_*`` against ``ambient_1.0`` and ``ci_edm_*``.

For the CI claims (C4, C5, C7) the abstract's literal reading of "later denoising steps" (the last reverse
steps: low noise, small t; methods named ``*_low*``) is the headline; the high-noise reading (``*_high*``)
is judged in its own rows, never substituted for it.

Theory: docs/THEORY.md §7.2-7.3, §7.5-7.6."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memdiff.results import fmt_interval
from sims.stats import t_interval, tost

DELTAS = ("copy_share", "nn_distance", "fd", "wasserstein", "js")
DEFAULT_MARGIN = 0.10  # equal-quality margin: a fraction of the baseline's mean (grid config eval.equivalence_margin)
SIDES = ("lower", "higher", "equal")
HOLDS, OPPOSITE, NOISE = "holds", "opposite holds", "within noise"
REPRODUCED, CONTRADICTED, PARTLY, NOT_SHOWN = "reproduced", "contradicted", "partly", "not shown"
METRIC_WORDS = {"copy_share": "copy share", "nn_distance": "nearest-item distance", "fd": "FD",
                "wasserstein": "PCA Wasserstein", "js": "JS"}


# ---- verdict rules (§7.6) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One statement about the paired difference ``method - baseline`` of ``metric``: ``side`` is ``lower`` or
    ``higher`` (directional) or ``equal`` (within ``+- margin x |baseline mean|``)."""
    metric: str
    side: str

    def __post_init__(self):
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {list(SIDES)}, got {self.side!r}")

    @property
    def words(self) -> str:
        return f"{self.side} {METRIC_WORDS.get(self.metric, self.metric)}"


@dataclass(frozen=True)
class Judged:
    """A part's outcome (``HOLDS``, ``OPPOSITE`` or ``NOISE``) and the numbers behind it."""
    part: Part
    outcome: str
    evidence: str


@dataclass(frozen=True)
class Claim:
    """A claim and its parts; ``parts[0]`` is the core part (the claimed effect), and is directional."""
    key: str
    text: str
    parts: tuple[Part, ...]

    def __post_init__(self):
        if not self.parts or self.parts[0].side == "equal":
            raise ValueError(f"parts must start with a directional (core) part, got {self.parts!r}")


def judge_part(part: Part, differences, baseline_mean: float, margin: float = DEFAULT_MARGIN,
               alpha: float = 0.05) -> Judged:
    """Judge ``part`` on the per-seed ``differences`` (``method - baseline``; non-finite ones dropped), §7.6.

    Directional (``lower``): holds if the ``1 - alpha`` t-interval (§7.1) of the mean difference lies below 0,
    its opposite if it lies above 0 (mirrored for ``higher``). ``equal``: with ``m = margin x |baseline_mean|``,
    holds if TOST shows equivalence within ``(-m, m)`` at level ``alpha`` (§7.5: the ``1 - 2 alpha`` interval
    lies inside), its opposite if the ``1 - alpha`` interval lies wholly above ``m`` or wholly below ``-m``.
    Anything else, and fewer than 2 finite differences, is within noise."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0 (a fraction of the baseline mean), got {margin!r}")
    mean, half, k = t_interval(differences, 1 - alpha)
    if k < 2:
        return Judged(part, NOISE, f"{k} finite difference{'s' * (k != 1)}, no interval")
    lo, hi = mean - half, mean + half
    ci = f"Δ {mean:+.3g}, {1 - alpha:.0%} CI [{lo:+.3g}, {hi:+.3g}]"
    if part.side != "equal":
        below, above = hi < 0, lo > 0
        holds, opposite = (below, above) if part.side == "lower" else (above, below)
        return Judged(part, HOLDS if holds else OPPOSITE if opposite else NOISE, ci)
    width = margin * abs(baseline_mean)
    if not (math.isfinite(width) and width > 0):
        return Judged(part, NOISE, f"{ci}; no margin (baseline mean {baseline_mean:.3g})")
    e = tost(differences, width, alpha)
    outcome = HOLDS if e.equivalent else OPPOSITE if lo > width or hi < -width else NOISE
    return Judged(part, outcome, f"{ci}, {1 - 2 * alpha:.0%} CI [{e.ci[0]:+.3g}, {e.ci[1]:+.3g}] against "
                                 f"±{width:.3g} ({100 * margin:.3g}% of {baseline_mean:.3g}), TOST p = {e.p:.2g}")


def verdict(judged: Sequence[Judged]) -> tuple[str, str]:
    """The claim's word and sentence from its judged parts, ``judged[0]`` the core part (§7.6); first match:

    - ``reproduced``: every part holds;
    - ``contradicted``: the core part's opposite holds;
    - ``partly``: some directional part holds (an ``equal`` part alone does not count);
    - ``not shown``: otherwise.

    The sentence lists every part with its outcome and numbers."""
    if not judged or judged[0].part.side == "equal":
        raise ValueError("judged must start with the core part, a directional one")
    if all(j.outcome == HOLDS for j in judged):
        word = REPRODUCED
    elif judged[0].outcome == OPPOSITE:
        word = CONTRADICTED
    elif any(j.outcome == HOLDS and j.part.side != "equal" for j in judged):
        word = PARTLY
    else:
        word = NOT_SHOWN
    return word, "; ".join(f"{j.part.words}: {j.outcome} ({j.evidence})" for j in judged) + "."


LOWER_COPY = Part("copy_share", "lower")
CLAIMS = {
    "C2": Claim("C2", "ambient training lowers memorization at equal quality", (LOWER_COPY, Part("fd", "equal"))),
    "C4": Claim("C4", "the interval width controls the trade-off: a narrower interval (more weight on its steps) "
                "lowers memorization against the widest one", (LOWER_COPY,)),
    "C5": Claim("C5", "emphasis on later denoising steps lowers memorization and improves alignment",
                (LOWER_COPY, Part("fd", "lower"), Part("wasserstein", "lower"))),
    "C7": Claim("C7", "ambient + CI beats either alone: lower memorization at equal quality",
                (LOWER_COPY, Part("fd", "equal"))),
}


def equivalence_margin(grid: Mapping | None) -> float:
    """The equal-quality margin of a grid config (``eval.equivalence_margin``, a fraction of the baseline's
    mean), ``DEFAULT_MARGIN`` when the config or key is absent."""
    margin = ((grid or {}).get("eval") or {}).get("equivalence_margin", DEFAULT_MARGIN)
    if isinstance(margin, bool) or not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"eval.equivalence_margin must be a finite number > 0, got {margin!r}")
    return float(margin)


# ---- paired comparisons (§7.2) ----------------------------------------------------------------------------
def paired(df: pd.DataFrame, method: str, baseline: str, metrics=DELTAS) -> list[dict]:
    """Per (dataset, n) where both ran: mean and 95% interval of ``method - baseline`` over shared seeds;
    ``seeds`` counts the shared seeds, ``<metric>_n`` the finite differences behind each interval (a NaN
    metric is a failed seed for that metric), ``diffs`` the per-seed differences by metric."""
    rows = []
    for (dataset, n), g in df.groupby(["dataset", "n"], sort=True):
        a = g[g.method == method].set_index("seed")
        b = g[g.method == baseline].set_index("seed")
        seeds = a.index.intersection(b.index)
        if len(seeds) == 0:
            continue
        row = {"dataset": dataset, "n": int(n), "method": method, "baseline": baseline, "seeds": len(seeds),
               "diffs": {}}
        for m in metrics:
            row["diffs"][m] = (a.loc[seeds, m] - b.loc[seeds, m]).to_numpy(dtype=float)
            row[m], row[m + "_pm"], row[m + "_n"] = t_interval(row["diffs"][m])
            row[m + "_base"] = float(b.loc[seeds, m].mean())
        rows.append(row)
    return rows


def paired_table(rows: list[dict], metrics=DELTAS) -> str:
    head = "| dataset | n | method - baseline | seeds | " + " | ".join(f"Δ {m} (baseline)" for m in metrics) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(metrics)]
    for r in rows:
        cells = [f"{fmt_interval(r[m], r[m + '_pm'], signed=True)} ({r[m + '_base']:.3g})"
                 + (f" (n={r[m + '_n']})" if 0 < r[m + "_n"] < r["seeds"] else "") for m in metrics]
        lines.append(f"| {r['dataset']} | {r['n']} | {r['method']} - {r['baseline']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict_table(rows: list[dict], claim: Claim, margin: float = DEFAULT_MARGIN) -> str:
    """One line per paired row: the claim's verdict word and sentence (§7.6)."""
    lines = ["| dataset | n | method - baseline | seeds | verdict | parts |", "|---|---|---|---|---|---|"]
    for r in rows:
        word, sentence = verdict([judge_part(p, r["diffs"][p.metric], r[p.metric + "_base"], margin)
                                  for p in claim.parts])
        lines.append(f"| {r['dataset']} | {r['n']} | {r['method']} - {r['baseline']} | {r['seeds']} | **{word}** | {sentence} |")
    return "\n".join(lines) + "\n"


def reading(method: str) -> str | None:
    """``low`` / ``high`` for a CI interval named ``*_low*`` / ``*_high*``, else None."""
    found = re.search(r"_(low|high)(?:_|$)", method)
    return found.group(1) if found else None


READINGS = {"low": "Headline: \"later denoising steps\" read literally, the last reverse steps = low noise, small t "
                   "(`*_low*` intervals)",
            "high": "The other reading, judged on its own and never in the headline's place: high noise, large t "
                    "(`*_high*` intervals)",
            None: "CI intervals named neither low nor high"}


def comparisons(methods: set[str]) -> dict[str, list[tuple[str, str]]]:
    """Per judged claim, the ``(method, baseline)`` pairs whose methods are both in ``methods``."""
    ambient = sorted(m for m in methods if m.startswith("ambient_") and "_ci_" not in m)
    ci = sorted(m for m in methods if m.startswith(("ci_ddpm", "ci_edm")))
    widths: dict[tuple[str, str], dict[str, float]] = {}
    for m in ci:
        if found := re.fullmatch(r"(ci_\w+?)_(low|high)_([0-9.]+)", m):
            widths.setdefault(found.group(1, 2), {})[m] = float(found.group(3))
    c4 = [(m, max(w, key=w.get)) for w in widths.values() for m in sorted(w) if w[m] < max(w.values())]
    c7 = [(m, other) for m in sorted(m for m in methods if m.startswith("ambient_") and "_ci_" in m)
          for other in (m.split("_ci_")[0], "ci_" + m.split("_ci_")[1])]
    found = {"C2": [(m, "edm") for m in ambient], "C4": c4,
             "C5": [(m, "ddpm" if m.startswith("ci_ddpm") else "edm") for m in ci], "C7": c7}
    return {key: [(m, b) for m, b in pairs if b in methods] for key, pairs in found.items()}


def _claim_section(df: pd.DataFrame, claim: Claim, pairs: list[tuple[str, str]], margin: float) -> list[str]:
    """The claim's verdict and paired tables; for CI methods one block per reading, the headline first."""
    by_reading: dict[str | None, list[tuple[str, str]]] = {}
    for m, b in pairs:
        by_reading.setdefault(reading(m), []).append((m, b))
    out = []
    for key in sorted(by_reading, key=lambda r: ("low", "high", None).index(r)):
        rows = [r for m, b in by_reading[key] for r in paired(df, m, b)]
        if key is not None or len(by_reading) > 1:
            out.append(f"### {READINGS[key]}\n")
        out += [verdict_table(rows, claim, margin), paired_table(rows)]
    return out or ["No pair of these methods in this grid.\n"]


def _band_mean(values: np.ndarray, band: np.ndarray) -> float:
    """Mean over the finite values in ``band`` (the calibrated ``r`` is NaN where its reference is not
    trusted), NaN when there are none."""
    v = values[band]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


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
                     "sigma_c": r["sigma_c"], "r_low": _band_mean(ratio, low), "r_high": _band_mean(ratio, high),
                     "M_low": _band_mean(m, low), "M_high": _band_mean(m, high)})
    return pd.DataFrame(rows)


def _summary_table(df: pd.DataFrame, keys: list[str], cols: list[str]) -> str:
    if df.empty:  # e.g. C1 in a grid without edm or ddpm cells
        return "No cells for this table in this grid.\n"
    lines = ["| " + " | ".join(keys) + " | seeds | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(keys) + 1 + len(cols))]
    for key, g in df.groupby(keys, sort=True):
        cells = [fmt_interval(*t_interval(g[c])[:2]) for c in cols]
        lines.append("| " + " | ".join(map(str, key)) + f" | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parts_line(claim: Claim, margin: float) -> str:
    parts = [p.words + (" (core)" if i == 0 else "") for i, p in enumerate(claim.parts)]
    equal = any(p.side == "equal" for p in claim.parts)
    return (f"Claim: {claim.text}. Parts: {'; '.join(parts)}"
            + (f"; equal = TOST within ±{100 * margin:.3g}% of the baseline's mean" if equal else "") + ".\n")


def claims_markdown(df: pd.DataFrame, raw: dict[str, dict], margin: float = DEFAULT_MARGIN) -> str:
    """All claim tables, for the methods present in ``df``: per judged claim (C2, C4, C5, C7) a verdict per
    paired row (§7.6, equal-quality ``margin`` a fraction of the baseline's mean) above its paired table."""
    pairs = comparisons(set(df.method))

    def section(key: str) -> list[str]:
        return [_parts_line(CLAIMS[key], margin), *_claim_section(df, CLAIMS[key], pairs[key], margin)]

    parts = ["# Claims as paired comparisons, with verdicts by rules fixed before the numbers\n",
             "Per-seed differences `method - baseline` (same training subset and sampler noise), mean ± 95% "
             "t-interval over seeds; the baseline's mean in brackets. Lower copy share = less memorization; "
             "lower FD / Wasserstein / JS = better alignment with held-out data. Regenerate: `memdiff figs sim`.\n",
             "Verdicts (docs/THEORY.md §7.6). A directional part holds if the 95% t-interval of its paired "
             "difference lies wholly on the claimed side of 0, its opposite if wholly on the other side. An "
             f"equal part holds if TOST shows equivalence within ±{100 * margin:.3g}% of the baseline's mean "
             "(the 90% interval inside the margin), its opposite if the 95% interval lies wholly beyond the "
             "margin on one side. Otherwise a part is within noise. The claim is **reproduced** if every part "
             "holds; else **contradicted** if its core (first) part's opposite holds; else **partly** if some "
             "directional part holds; else **not shown**.\n",
             "## C1: where the trained net copies (r = 0: empirical optimum, 1: generalizing reference)\n",
             _summary_table(readout_bands(raw), ["dataset", "n", "method"], ["sigma_c", "r_low", "r_high", "M_low", "M_high"]),
             "`r_low`, `M_low`: mean over readout levels sigma <= sigma_C / 2; `r_high`, `M_high`: sigma >= 2 sigma_C. "
             "Descriptive: no verdict rule.\n",
             "## C2: ambient training against EDM\n", *section("C2"),
             "## C4: CI interval width, each narrower interval against the widest of its reading\n",
             *section("C4"),
             "## C5: CI timestep sampling against uniform steps (DDPM form) and EDM (log-sigma form)\n",
             *section("C5"),
             "## C6: copy onset against sigma_C\n",
             _summary_table(df.assign(onset_over_sigma_c=df.copy_onset / df.sigma_c),
                            ["dataset", "n", "method"], ["sigma_c", "copy_onset", "onset_over_sigma_c", "copy_share"]),
             "`copy_onset`: where the copying band that starts at the smallest readout sigma ends, i.e. the first "
             "sigma at which r rises above 1/2 (below it the net is nearer the copier than the generalizer); "
             "NaN where r is above 1/2 already at the smallest sigma. Descriptive: no verdict rule.\n",
             "## C7: ambient + CI against each alone\n", *section("C7")]
    return "\n".join(parts)
