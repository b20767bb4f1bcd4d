"""The papers' claims as paired comparisons over a grid's cells, each judged by verdict rules fixed before
the numbers (``claims.md``, written by ``memdiff figs sim``).

Cells that differ only in the method share their seed, hence their training subset and sampler noise, so
each comparison is the per-seed difference ``method - baseline``, reported as mean and 95% t-interval
(§7.2). A claim is made of parts (:class:`Part`), each a statement about one metric's paired difference:
directional (``lower`` / ``higher``) or ``equal`` (equivalence within a margin fixed in the grid config,
TOST, §7.5). :func:`judge_part` finds whether a part holds, its opposite holds or it is within noise;
:func:`verdict` turns the parts into one word (``reproduced``, ``contradicted``, ``partly``, ``not shown``)
and a sentence naming each part's outcome (the rules: §7.6).

- C1 memorization is necessary only at low noise: per baseline cell, the train/held-out gap ``G`` and the
  calibrated ``r`` averaged below ``sigma_C / 2`` and above ``2 sigma_C`` (beside the two-net ``V`` and the
  theory's ``M``); judged on the per-seed contrasts between the bands (the gap larger, ``r`` smaller, below).
- C2 ambient training lowers memorization at equal quality: ``ambient_*`` against ``edm``; C3 is the same
  comparison and rule on images (an image grid's rows, ``images=True``), Shah et al.'s headline.
- C4 the interval width controls the trade-off: each narrower CI interval against the widest of its form
  and reading (``ci_ddpm_low_0.4`` against ``ci_ddpm_low_0.8``).
- C5 emphasis on later denoising steps lowers memorization and improves alignment: ``ci_ddpm_*`` against
  uniform ``ddpm`` and ``ci_edm_*`` against ``edm``.
- C6 ``sigma_C`` predicts where the trained nets start to copy: ``copy_onset`` (where the band of ``r <= 1/2``
  that starts at the smallest sigma ends, ``sims.readout.copy_onset``) against ``sigma_C``: judged as an
  equivalence of ``log(copy_onset / sigma_C)`` with 0 within ``log 2`` (TOST).
- C7 ambient + CI beats either alone: ``ambient_1.0_ci_edm_*`` against ``ambient_1.0`` and ``ci_edm_*``.

The grid config's ``[eval]`` fixes two options of the C1 and C6 rules before a grid runs (:class:`ReadoutRules`,
§7.7): ``c6_onset = "band_top"`` judges ``log(band_top / sigma_C)`` instead (``sims.readout.copy_band_top``),
``c1_min_gap = g`` lets C1 be reproduced only if the seed-mean ``G_low >= g`` (else ``partly``). Without them
the issue-#9 rules apply.

For the CI claims (C4, C5, C7) the abstract's literal reading of "later denoising steps" (the last reverse
steps: low noise, small t; methods named ``*_low*``) is the headline; the high-noise reading (``*_high*``)
is judged in its own rows, never substituted for it.

Theory: docs/THEORY.md §7.2-7.3, §7.5-7.7."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memdiff.results import fmt_interval
from sims.readout import Readout, copy_band_top, copy_onset
from sims.stats import t_interval, tost

DELTAS = ("copy_share", "nn_distance", "fd", "wasserstein", "js")
DEFAULT_MARGIN = 0.10  # equal-quality margin: a fraction of the baseline's mean (grid config eval.equivalence_margin)
SIDES = ("lower", "higher", "equal")
HOLDS, OPPOSITE, NOISE = "holds", "opposite holds", "within noise"
REPRODUCED, CONTRADICTED, PARTLY, NOT_SHOWN = "reproduced", "contradicted", "partly", "not shown"
METRIC_WORDS = {"copy_share": "copy share", "nn_distance": "nearest-item distance", "fd": "FD",
                "wasserstein": "PCA Wasserstein", "js": "JS",
                "gap_contrast": "log G below sigma_C/2 minus above 2 sigma_C",
                "r_contrast": "r above 2 sigma_C minus below sigma_C/2",
                "log_onset_ratio": "log(copy_onset / sigma_C)", "log_band_top_ratio": "log(band_top / sigma_C)"}


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
    """A claim and its parts; ``parts[0]`` is the core part (the claimed effect), directional unless it is the
    only part (C6: one equivalence statement)."""
    key: str
    text: str
    parts: tuple[Part, ...]

    def __post_init__(self):
        if not self.parts or (self.parts[0].side == "equal" and len(self.parts) > 1):
            raise ValueError(f"parts must start with a directional (core) part, or be one equal part, got {self.parts!r}")


def judge_part(part: Part, differences, baseline_mean: float, margin: float = DEFAULT_MARGIN,
               alpha: float = 0.05, width: float | None = None) -> Judged:
    """Judge ``part`` on the per-seed ``differences`` (``method - baseline``; non-finite ones dropped), §7.6.

    Directional (``lower``): holds if the ``1 - alpha`` t-interval (§7.1) of the mean difference lies below 0,
    its opposite if it lies above 0 (mirrored for ``higher``). ``equal``: with ``m = margin x |baseline_mean|``,
    holds if TOST shows equivalence within ``(-m, m)`` at level ``alpha`` (§7.5: the ``1 - 2 alpha`` interval
    lies inside), its opposite if the ``1 - alpha`` interval lies wholly above ``m`` or wholly below ``-m``.
    ``width`` given: the equal part's margin ``m`` itself (C6's ``log 2`` on a log ratio), not a fraction of
    the baseline. Anything else, and fewer than 2 finite differences, is within noise."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0 (a fraction of the baseline mean), got {margin!r}")
    mean, half, k = t_interval(differences, 1 - alpha)
    if k < 2:
        return Judged(part, NOISE, f"{k} finite difference{'s' * (k != 1)}, no interval; a seed's is undefined where "
                                   f"a cell's sample metrics are, e.g. its sampler diverged (§6.3)")
    lo, hi = mean - half, mean + half
    ci = f"Δ {mean:+.3g}, {1 - alpha:.0%} CI [{lo:+.3g}, {hi:+.3g}]"
    if part.side != "equal":
        below, above = hi < 0, lo > 0
        holds, opposite = (below, above) if part.side == "lower" else (above, below)
        return Judged(part, HOLDS if holds else OPPOSITE if opposite else NOISE, ci)
    against = "" if width is not None else f" ({100 * margin:.3g}% of {baseline_mean:.3g})"
    width = margin * abs(baseline_mean) if width is None else width
    if not (math.isfinite(width) and width > 0):
        return Judged(part, NOISE, f"{ci}; no margin (baseline mean {baseline_mean:.3g})")
    e = tost(differences, width, alpha)
    outcome = HOLDS if e.equivalent else OPPOSITE if lo > width or hi < -width else NOISE
    return Judged(part, outcome, f"{ci}, {1 - 2 * alpha:.0%} CI [{e.ci[0]:+.3g}, {e.ci[1]:+.3g}] against "
                                 f"±{width:.3g}{against}, TOST p = {e.p:.2g}")


def verdict(judged: Sequence[Judged]) -> tuple[str, str]:
    """The claim's word and sentence from its judged parts, ``judged[0]`` the core part (§7.6); first match:

    - ``reproduced``: every part holds;
    - ``contradicted``: the core part's opposite holds;
    - ``partly``: some directional part holds (an ``equal`` part alone does not count);
    - ``not shown``: otherwise.

    The sentence lists every part with its outcome and numbers."""
    if not judged or (judged[0].part.side == "equal" and len(judged) > 1):
        raise ValueError("judged must start with the core part, a directional one unless it is the only part")
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
    # C1 and C6 are judged per cell group (dataset, n, baseline method) on per-seed readout values, not on
    # paired differences between methods; their parts' metrics are the columns of ``readout_bands``.
    "C1": Claim("C1", "a trained net copies at low noise only: its train/held-out gap is larger below sigma_C / 2 "
                "than above 2 sigma_C, and it is nearer the copier there",
                (Part("gap_contrast", "higher"), Part("r_contrast", "higher"))),
    "C6": Claim("C6", "sigma_C predicts where a trained net starts to copy: copy_onset within a factor of 2 of "
                "sigma_C", (Part("log_onset_ratio", "equal"),)),
}
CLAIMS["C3"] = Claim("C3", CLAIMS["C2"].text + " on images", CLAIMS["C2"].parts)  # C2's rule on an image grid
C6_FACTOR = 2.0  # C6's margin: |log(copy_onset / sigma_C)| < log 2, i.e. the onset within [sigma_C / 2, 2 sigma_C]
C6_QUANTITIES = {"onset": CLAIMS["C6"],  # eval.c6_onset -> C6 judged on that quantity (§7.7)
                 "band_top": Claim("C6", "sigma_C predicts where a trained net starts to copy: band_top (the upper "
                                   "end of the band of r <= 1/2 around r's minimum) within a factor of 2 of sigma_C",
                                   (Part("log_band_top_ratio", "equal"),))}


@dataclass(frozen=True)
class ReadoutRules:
    """The options of the C1 and C6 rules fixed in the grid config's ``[eval]`` before the grid runs (§7.7); the
    defaults are the issue-#9 rules. ``c6_onset``: C6's quantity, ``"onset"`` (``copy_onset``) or ``"band_top"``
    (``copy_band_top``), each over ``sigma_C``; ``c1_min_gap``: None, or a number ``g > 1`` that C1's seed-mean
    ``G_low`` must reach for ``reproduced`` (else ``partly``)."""
    c6_onset: str = "onset"
    c1_min_gap: float | None = None

    def __post_init__(self):
        if self.c6_onset not in C6_QUANTITIES:
            raise ValueError(f"eval.c6_onset must be one of {list(C6_QUANTITIES)}, got {self.c6_onset!r}")
        g = self.c1_min_gap
        if g is not None and (isinstance(g, bool) or not (isinstance(g, (int, float)) and math.isfinite(g) and g > 1)):
            raise ValueError(f"eval.c1_min_gap must be a finite number > 1, got {g!r}")

    def claim(self, key: str) -> Claim:
        """The claim judged on the readout bands: C6 on the quantity of ``c6_onset``, C1 as it stands."""
        return C6_QUANTITIES[self.c6_onset] if key == "C6" else CLAIMS[key]


def readout_rules(grid: Mapping | None) -> ReadoutRules:
    """The C1 and C6 rule options of a grid config (``eval.c6_onset``, ``eval.c1_min_gap``), the issue-#9
    defaults when the config or keys are absent."""
    ev = (grid or {}).get("eval") or {}
    return ReadoutRules(ev.get("c6_onset", "onset"), ev.get("c1_min_gap"))


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


def _paired_verdict(row: dict, claim: Claim, margin: float) -> tuple[str, str]:
    """``claim``'s word and sentence on one ``paired`` row (§7.6)."""
    return verdict([judge_part(p, row["diffs"][p.metric], row[p.metric + "_base"], margin) for p in claim.parts])


def _band_verdict(g: pd.DataFrame, claim: Claim, rules: ReadoutRules = ReadoutRules()) -> tuple[str, str]:
    """``claim`` (C1, C6) on one (dataset, n, method) group of ``readout_bands`` (§7.7); C6 on the quantity of
    ``rules.c6_onset``, and with ``rules.c1_min_gap = g`` a reproduced C1 whose seed-mean ``G_low < g`` is partly."""
    claim = rules.claim(claim.key)
    word, sentence = verdict([judge_part(p, g[p.metric].to_numpy(dtype=float), math.nan, width=math.log(C6_FACTOR))
                              for p in claim.parts])
    if claim.key == "C1" and rules.c1_min_gap is not None:
        gap = g["G_low"].to_numpy(dtype=float)
        gap = float(gap[np.isfinite(gap)].mean()) if np.isfinite(gap).any() else math.nan
        below = not gap >= rules.c1_min_gap  # NaN: no gap to show
        if word == REPRODUCED and below:
            word = PARTLY
        sentence += f" Seed-mean G_low = {gap:.3g} {'<' if below else '>='} {rules.c1_min_gap:g} (eval.c1_min_gap)."
    return word, sentence


def verdict_table(rows: list[dict], claim: Claim, margin: float = DEFAULT_MARGIN) -> str:
    """One line per paired row: the claim's verdict word and sentence (§7.6)."""
    lines = ["| dataset | n | method - baseline | seeds | verdict | parts |", "|---|---|---|---|---|---|"]
    for r in rows:
        word, sentence = _paired_verdict(r, claim, margin)
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


def comparisons(methods: set[str], images: bool = False) -> dict[str, list[tuple[str, str]]]:
    """Per judged claim, the ``(method, baseline)`` pairs whose methods are both in ``methods``; ambient against
    EDM is C3 in an image grid (``images``), C2 otherwise."""
    ambient = sorted(m for m in methods if m.startswith("ambient_") and "_ci_" not in m)
    ci = sorted(m for m in methods if m.startswith(("ci_ddpm", "ci_edm")))
    widths: dict[tuple[str, str], dict[str, float]] = {}
    for m in ci:
        if found := re.fullmatch(r"(ci_\w+?)_(low|high)_([0-9.]+)", m):
            widths.setdefault(found.group(1, 2), {})[m] = float(found.group(3))
    c4 = [(m, max(w, key=w.get)) for w in widths.values() for m in sorted(w) if w[m] < max(w.values())]
    c7 = [(m, other) for m in sorted(m for m in methods if m.startswith("ambient_") and "_ci_" in m)
          for other in (m.split("_ci_")[0], "ci_" + m.split("_ci_")[1])]
    found = {"C3" if images else "C2": [(m, "edm") for m in ambient], "C4": c4,
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
    """C1 and C6, per cell of ``methods``: the band means (§7.3) below ``sigma_C / 2`` (``_low``) and above
    ``2 sigma_C`` (``_high``) of the calibrated ``r`` (§6.1), the train/held-out gap ``G`` (§6.8; ``G_*`` its
    geometric mean), the two-net ratio ``V`` (§6.9; NaN without the test) and the theory's ``M``; the contrasts
    C1 judges, ``gap_contrast = log G_low - log G_high`` and ``r_contrast = r_high - r_low``; and C6's
    ``log_onset_ratio = log(copy_onset / sigma_C)`` or, with ``eval.c6_onset = "band_top"``,
    ``log_band_top_ratio = log(band_top / sigma_C)``."""
    rows = []
    for r in raw.values():
        cell = r["cell"]
        if cell["method"] not in methods or not np.isfinite(r.get("sigma_c", math.nan)):
            continue
        ro = Readout.from_dict(r["readout"])  # fields a cell file predates read as NaN
        s = ro.sigma
        curves = {"r": ro.ratio, "logG": np.log(ro.heldout_ratio), "V": (r.get("two_net") or {}).get("v", s * math.nan),
                  "M": ro.necessity}
        low, high = s <= r["sigma_c"] / 2, s >= 2 * r["sigma_c"]
        row = {"dataset": cell["dataset"], "n": cell["n"], "method": cell["method"], "seed": cell["seed"],
               "sigma_c": r["sigma_c"]}
        for key, curve in curves.items():
            curve = np.asarray(curve, dtype=float)
            row[key + "_low"], row[key + "_high"] = _band_mean(curve, low), _band_mean(curve, high)
        onset = copy_onset(s, ro.ratio)
        row.update(G_low=math.exp(row.pop("logG_low")), G_high=math.exp(row.pop("logG_high")),
                   onset_over_sigma_c=onset / r["sigma_c"])
        row.update(band_top=copy_band_top(s, ro.ratio),
                   gap_contrast=math.log(row["G_low"]) - math.log(row["G_high"]),
                   r_contrast=row["r_high"] - row["r_low"], log_onset_ratio=math.log(row["onset_over_sigma_c"]))
        row["log_band_top_ratio"] = math.log(row["band_top"] / r["sigma_c"])
        rows.append(row)
    return pd.DataFrame(rows)


def readout_verdicts(bands: pd.DataFrame, claim: Claim, rules: ReadoutRules = ReadoutRules()) -> str:
    """C1 or C6 per (dataset, n, method): the claim's parts judged on the per-seed values of their metric
    (``readout_bands``) by the rules of §7.6, C6's equal part with the absolute margin ``log C6_FACTOR``, with
    the options ``rules`` of §7.7."""
    if bands.empty:
        return "No cells for this table in this grid.\n"
    lines = ["| dataset | n | method | seeds | verdict | parts |", "|---|---|---|---|---|---|"]
    for (dataset, n, method), g in bands.groupby(["dataset", "n", "method"], sort=True):
        word, sentence = _band_verdict(g, claim, rules)
        lines.append(f"| {dataset} | {n} | {method} | {len(g)} | **{word}** | {sentence} |")
    return "\n".join(lines) + "\n"


def _summary_table(df: pd.DataFrame, keys: list[str], cols: list[str]) -> str:
    if df.empty:  # e.g. C1 in a grid without edm or ddpm cells
        return "No cells for this table in this grid.\n"
    lines = ["| " + " | ".join(keys) + " | seeds | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(keys) + 1 + len(cols))]
    for key, g in df.groupby(keys, sort=True):
        cells = [fmt_interval(*t_interval(g[c])[:2]) for c in cols]
        lines.append("| " + " | ".join(map(str, key)) + f" | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parts_line(claim: Claim, margin: float, equal_means: str | None = None) -> str:
    parts = [p.words + (" (core)" if i == 0 else "") for i, p in enumerate(claim.parts)]
    equal = any(p.side == "equal" for p in claim.parts)
    equal_means = equal_means or f"TOST within ±{100 * margin:.3g}% of the baseline's mean"
    return f"Claim: {claim.text}. Parts: {'; '.join(parts)}" + (f"; equal = {equal_means}" if equal else "") + ".\n"


def _rules_lines(rules: ReadoutRules) -> dict[str, str]:
    """Per readout claim, the line naming the rule option that applied (§7.7)."""
    default = " (the default, issue #9)"
    c6 = {"onset": "onset = `copy_onset`, where the band of r <= 1/2 that starts at the smallest sigma ends",
          "band_top": "band_top = `copy_band_top`, the upper end of the band of r <= 1/2 around r's minimum"}
    gap = ("none: reproduced needs only the two contrasts" + default if rules.c1_min_gap is None else
           f"seed-mean G_low >= {rules.c1_min_gap:g} for reproduced, else partly")
    return {"C1": f"C1 gap floor (eval.c1_min_gap): {gap}.\n",
            "C6": f"C6 quantity (eval.c6_onset): {c6[rules.c6_onset]}" + (default if rules.c6_onset == "onset" else "")
                  + "; judged: its log over sigma_C.\n"}


def claims_markdown(df: pd.DataFrame, raw: dict[str, dict], margin: float = DEFAULT_MARGIN,
                    rules: ReadoutRules = ReadoutRules(), images: bool = False) -> str:
    """All claim tables, for the methods present in ``df``: per judged claim (C2, or C3 for an image grid, C4,
    C5, C7) a verdict per paired row (§7.6, equal-quality ``margin`` a fraction of the baseline's mean) above its
    paired table; C1 and C6 per baseline cell group by the rules of §7.7 with the options ``rules``."""
    pairs = comparisons(set(df.method), images)
    ambient = "C3" if images else "C2"
    bands = readout_bands(raw)
    said = _rules_lines(rules)
    judged_c6 = "band_top" if rules.c6_onset == "band_top" else "onset_over_sigma_c"

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
             _parts_line(CLAIMS["C1"], margin), said["C1"], readout_verdicts(bands, CLAIMS["C1"], rules),
             _summary_table(bands, ["dataset", "n", "method"],
                            ["sigma_c", "r_low", "r_high", "G_low", "G_high", "V_low", "V_high", "M_low", "M_high"]),
             "`_low`: mean over readout levels sigma <= sigma_C / 2; `_high`: sigma >= 2 sigma_C. `r`: calibrated "
             "ratio (NaN where the reference denoises held-out items worse than the net); `G`: held-out over "
             "training loss (geometric mean over the band); `V`: two-net ratio (cells with `eval.two_net`); `M`: "
             "the theory's necessity on the same training set. The verdict judges the per-seed contrasts "
             "`log G_low - log G_high` and `r_high - r_low` (§7.6); `V` and `M` are shown, not judged (`V -> 1` "
             "at high noise for every denoiser fitted to n items).\n",
             f"## {ambient}: ambient training against EDM" + (" on images" if images else "") + "\n",
             *section(ambient),
             "## C4: CI interval width, each narrower interval against the widest of its reading\n",
             *section("C4"),
             "## C5: CI timestep sampling against uniform DDPM steps (`ci_ddpm_*`, epsilon loss) and against EDM "
             "(`ci_edm_*`, EDM loss)\n",
             *section("C5"),
             f"## C6: copy onset against sigma_C (quantity: {rules.c6_onset}, eval.c6_onset)\n",
             _parts_line(rules.claim("C6"), margin, f"TOST within ±log {C6_FACTOR:g} (a factor of {C6_FACTOR:g})"),
             said["C6"], readout_verdicts(bands, CLAIMS["C6"], rules),
             _summary_table(bands.assign(band_top_over_sigma_c=bands.band_top / bands.sigma_c) if len(bands) else bands,
                            ["dataset", "n", "method"],
                            ["sigma_c", "onset_over_sigma_c", "band_top", "band_top_over_sigma_c"]),
             "`onset_over_sigma_c`: `copy_onset / sigma_C`: `copy_onset` is where the copying "
             "band that starts at the smallest readout sigma ends (the first sigma at which r rises above 1/2); "
             "NaN where r is above 1/2 already at the smallest sigma. Post hoc, added after the re-run showed "
             "r ~ 1 at sigma = 0.01 for every net (there every denoiser is near the identity, so r's numerator "
             "and denominator are both ~ sigma^2 d and the rule's onset is undefined): `band_top`, the upper end "
             "of the band of r <= 1/2 around r's minimum (`band_top`; NaN if r never falls to 1/2). Judged here: "
             f"`{judged_c6}` (" + ("eval.c6_onset = \"band_top\", fixed in the grid config before the grid ran"
                                   if rules.c6_onset == "band_top" else "the issue-#9 rule, eval.c6_onset = \"onset\"")
             + ", §7.7); the other is shown, not judged.\n",
             "## C7: ambient + CI against each alone\n", *section("C7")]
    return "\n".join(parts)


WORDS = (REPRODUCED, PARTLY, CONTRADICTED, NOT_SHOWN)


def verdict_summary(df: pd.DataFrame, raw: dict[str, dict], margin: float = DEFAULT_MARGIN,
                    rules: ReadoutRules = ReadoutRules(), images: bool = False) -> str:
    """One line per claim (and, for the CI claims, per reading, the literal low-noise one first): how many of
    its judged rows (a comparison, or a baseline for C1 and C6, at one dataset and n) got each word, naming the
    rows. Counts only: no word is chosen for a claim as a whole; ``claims.md`` has every row's numbers."""
    found: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
    bands = readout_bands(raw)
    for key in ("C1", "C6"):
        for (dataset, n, method), g in (bands.groupby(["dataset", "n", "method"], sort=True) if len(bands) else ()):
            found.setdefault((key, None), []).append((_band_verdict(g, CLAIMS[key], rules)[0],
                                                      f"{dataset} {n} {method}"))
    for key, pairs in comparisons(set(df.method), images).items():
        for m, b in pairs:
            for r in paired(df, m, b):
                found.setdefault((key, reading(m)), []).append(
                    (_paired_verdict(r, CLAIMS[key], margin)[0], f"{r['dataset']} {r['n']} {m} - {b}"))
    order = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
    lines = ["| claim | reading | rows | " + " | ".join(WORDS) + " |", "|---|---|---|" + "---|" * len(WORDS)]
    for (key, rd) in sorted(found, key=lambda k: (order.index(k[0]), ("low", "high", None).index(k[1]))):
        rows = found[key, rd]
        cells = []
        for w in WORDS:
            names = [name for word, name in rows if word == w]
            cells.append(f"**{len(names)}**" + (f": {', '.join(names)}" if names else ""))
        label = {"low": "low noise (headline)", "high": "high noise", None: "-"}[rd]
        lines.append(f"| {key} {CLAIMS[key].text.split(':')[0]} | {label} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
