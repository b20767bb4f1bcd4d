"""``memdiff figs confirm``: does ``memdiff advise`` pick the right corruption level and CI interval on trained nets?
(issue #14 item 2; docs/THEORY.md §7.8)

Reads a grid's cells (``--runs``, e.g. ``memdiff sim --config configs/sim_fitted.toml``) and one or more
``advice.json`` (``--advice``, written by ``memdiff advise``; a file or a folder holding one).

**Matching.** An advice names its data (``config.data``: a data set of ``memdiff.advise.DATASETS`` or a file's path)
and its ``n`` (``config.n``). A grid dataset matches when its kind (``grid.json``'s ``[[datasets]]``; without
``grid.json`` the dataset's name is read as its kind) equals the advice's data set at the same resolution (the
grid dataset's ``resolution``, the advice's ``config.resolution``; unset: the native side), or, for kind ``file``,
when its ``path`` has the same file name as the advice's file; and it has cells at that ``n``. An advice that matches no
(dataset, n) with cells, or two advices matching the same one, is a ``ValueError`` naming ``--advice``.

**Sweeps** per matched (dataset, n):

- ambient: the cells whose method spec has loss ``hybrid_ambient`` and noise ``edm_lognormal``, each at its spec's
  ``sigma_n`` (``ambient_0.5`` ... ``ambient_3.5``; the advice's own ``advised_*_ambient`` when the grid ran it);
- CI, one sweep per form and reading: the cells with a non-ambient loss and noise ``ci_t`` (form ``ddpm``) or
  ``ci_log_sigma`` (form ``edm``), the reading ``low`` / ``high`` from the name (``memdiff.claims.reading``). Each
  interval is placed by its boundary at the split on ``u = t / T`` of the linear DDPM schedule, T = 1000 (the
  advice's axis): ``low`` its upper end, ``high`` its lower end; a ``ci_log_sigma`` boundary ``b`` (and a ``ci_t``
  one on another schedule) at the step whose ``sigma_t`` is nearest ``e^b`` in ``log sigma`` (§4.4), as the advice
  places ``u_n``.

A sweep needs two methods; a set with fewer is listed as not a sweep.

**The rule** (fixed before any number of a trained grid was looked at; §7.8). Baseline ``edm`` (``--baseline``),
margin ``f`` = the grid config's ``eval.equivalence_margin`` (``memdiff.claims.equivalence_margin``, default 0.10):

1. A swept method *qualifies* (FD not worse than the baseline's by more than the margin) when the upper end of the
   95% t-interval (§7.1) of its paired per-seed FD difference ``method - baseline`` (§7.2) is at most
   ``f x`` the baseline's mean FD over the same seeds. Fewer than two paired seeds: it does not qualify.
2. Order: the qualifying methods by mean copy share, then the others by mean FD (ascending; ties by the swept
   value, ascending). Rank 1 is the *best swept*; when none qualifies it is the one with the lowest FD, and the
   table says so.
3. The advice's position: the swept method *nearest* the advice (ambient: in ``|ln sigma_n - ln sigma_advised|``;
   CI: in ``|u_boundary - u_n|``, ``u_n`` the advice's boundary of that reading; ties to the smaller value), its
   rank, and the *frontier loss* ``nearest - best``: per-seed differences of copy share and FD over the seeds both
   have, mean +- 95% t-interval (0 when the nearest is the best). *Bracketed*: the advice lies within the swept
   range; beside it the factor ``max(s/a, a/s)`` between the advised and the nearest swept ``sigma_n`` (CI: the
   distance in ``u`` and the factor between the two boundaries' ``sigma_t``).

Words: "advice right (rank 1)"; "advice off by k ranks, costing +x ± y copy share / +f ± g FD"; with
"not bracketed: ..." added when the sweep does not reach the advice.

Writes ``confirm.md`` (an ambient table, a CI table, each sweep in detail), ``confirm.json`` (every number, with
provenance), ``frontier_<dataset>_n<n>.png`` (copy share against FD of each sweep with 95% intervals, the baseline,
the nearest swept value marked, the best ringed; ambient left, CI right) with sidecars, and, so that ``--runs`` /
``--advice`` on the output re-compute it, ``cells/`` (the matched rows' cells), ``grid.json`` and
``advice/<tag>/advice.json``. Into ``--out`` (default ``runs/figs/confirm``) or, with ``--publish``,
``paper_figs/confirm``, built aside and swapped in whole.
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

from memdiff.advise import DATASETS as ADVICE_DATA, MARKER as ADVICE_FILE, SCHEDULE, advice_tag
from memdiff.claims import DEFAULT_MARGIN, equivalence_margin, reading
from memdiff.results import fmt_interval, load_results
from memdiff.cli import add_output_arguments
from image_track.train import IMAGE_SHAPES
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write_json, atomic_write_text, provenance, save_figure
from sims.methods import AMBIENT
from sims.schedules import DDPMSchedule
from sims.stats import t_interval

DRAFT, PUBLISHED = Path("runs/figs/confirm"), REPO_ROOT / "paper_figs" / "confirm"
METRICS = ("copy_share", "fd")
FORMS = {"ci_t": "ddpm", "ci_log_sigma": "edm"}
RIGHT = "advice right (rank 1)"


# ---- inputs and matching ----------------------------------------------------------------------------------
def read_advice(paths) -> list[dict]:
    """Each ``--advice`` path (an ``advice.json`` or a folder holding one) as ``{path, data, name, n, sigma_n, u,
    raw}``: ``u`` the advice's CI boundary per reading (``ci[r]["ci_t"]`` at the split). ``ValueError`` naming
    ``--advice`` for a missing or malformed one."""
    out = []
    for p in paths:
        p = Path(p)
        f = p / ADVICE_FILE if p.is_dir() else p
        if not f.is_file():
            raise ValueError(f"--advice must name an {ADVICE_FILE} or a folder holding one (memdiff advise --out), "
                             f"got {str(p)!r}")
        try:
            a = json.loads(f.read_text())
            data, n, sigma_n = str(a["config"]["data"]), int(a["config"]["n"]), float(a["sigma_n"])
            resolution = pooled_side(data, a["config"].get("resolution"))
            u = {"low": float(a["ci"]["low"]["ci_t"][1]), "high": float(a["ci"]["high"]["ci_t"][0])}
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"--advice {f} is not an advice of memdiff advise (needs config.data, config.n, "
                             f"sigma_n and ci.low/high.ci_t): {type(e).__name__} {e}") from None
        if not (math.isfinite(sigma_n) and sigma_n > 0):
            raise ValueError(f"--advice {f} has sigma_n = {sigma_n!r}, not a number > 0")
        name = data if data in ADVICE_DATA else Path(data).stem
        out.append({"path": str(f), "data": data, "resolution": resolution, "name": name, "n": n, "sigma_n": sigma_n,
                    "u": u, "raw": a, "tag": advice_tag(name, n, resolution)})
    if not out:
        raise ValueError("--advice must name at least one advice.json")
    return out


def pooled_side(kind: str, resolution: int | None) -> int | None:
    """An image data set's side after average pooling, None for its native side (unset or equal to it)."""
    return None if resolution == IMAGE_SHAPES.get(kind, (None, None))[1] else resolution


def grid_datasets(run_dir, df: pd.DataFrame) -> tuple[dict[str, dict], dict | None]:
    """Per dataset name of the cells, its ``kind``, ``path`` and ``resolution`` from ``grid.json`` (a name absent
    there, or no ``grid.json``: the name read as the kind), and the grid config (None without ``grid.json``)."""
    grid = Path(run_dir) / "grid.json"
    config = json.loads(grid.read_text())["config"] if grid.exists() else None
    known = {d["name"]: d for d in (config or {}).get("datasets", [])}
    specs = {name: known.get(name, {}) for name in sorted(set(df.dataset))}
    return ({name: {"kind": (kind := d.get("kind", name)), "path": d.get("path"),
                    "resolution": pooled_side(kind, d.get("resolution"))} for name, d in specs.items()}, config)


def match(advices: list[dict], df: pd.DataFrame, datasets: dict[str, dict]) -> list[tuple[dict, str, int]]:
    """``(advice, dataset, n)`` for each grid (dataset, n) with cells that an advice matches (module docstring)."""
    pairs, seen = [], {}
    have = set(zip(df.dataset, df.n.astype(int)))
    for a in advices:
        found = []
        for name, d in datasets.items():
            same = (d["kind"] == a["data"] and d["resolution"] == a["resolution"] if a["data"] in ADVICE_DATA
                    else d["kind"] == "file" and d["path"] is not None and Path(d["path"]).name == Path(a["data"]).name)
            if same and (name, a["n"]) in have:
                found.append((a, name, a["n"]))
        if not found:
            grid = sorted(f"{name} (kind {d['kind']}) n = {n}" for name, d in datasets.items()
                          for nm, n in sorted(have) if nm == name)
            raise ValueError(f"--advice {a['path']} (data {a['data']!r}, n = {a['n']}) matches no rows of the grid, "
                             f"which has {', '.join(grid)}")
        for f in found:
            if (f[1], f[2]) in seen:
                raise ValueError(f"--advice names two advices for {f[1]} n = {f[2]}: {seen[f[1], f[2]]} and "
                                 f"{a['path']}; pass one")
            seen[f[1], f[2]] = a["path"]
        pairs += found
    return pairs


# ---- the sweeps -------------------------------------------------------------------------------------------
def u_of(spec: dict, side: int) -> float:
    """A CI spec's interval end ``side`` (0 lower, 1 upper) on ``u = t / T`` of the advice's schedule."""
    noise = spec["noise"]
    b = float(noise["interval"][side])
    if noise["kind"] == "ci_log_sigma":
        return int(SCHEDULE.t_from_sigma(math.exp(b))) / SCHEDULE.T
    own = DDPMSchedule(kind=noise.get("schedule", "linear"), T=noise.get("T", SCHEDULE.T))
    if (own.kind, own.T) == (SCHEDULE.kind, SCHEDULE.T):
        return b
    t = min(math.floor(b * own.T), own.T - 1)
    return int(SCHEDULE.t_from_sigma(own.sigma(t).item())) / SCHEDULE.T


def sigma_of_u(u: float) -> float:
    """``sigma_t`` of the advice's schedule at ``u`` (``t = min(round(u T), T - 1)``)."""
    return float(SCHEDULE.sigma(min(round(u * SCHEDULE.T), SCHEDULE.T - 1)))


def sweeps(raw: dict[str, dict], dataset: str, n: int) -> dict[tuple, dict[str, float]]:
    """The sweeps of one (dataset, n): ``("ambient", None, None)`` -> {method: sigma_n} and
    ``("ci", form, reading)`` -> {method: boundary u}."""
    out: dict[tuple, dict[str, float]] = {}
    for r in raw.values():
        cell, spec = r["cell"], r["method"]
        if cell["dataset"] != dataset or int(cell["n"]) != n:
            continue
        kind = spec["noise"]["kind"]
        if spec["loss"] == "hybrid_ambient" and kind == "edm_lognormal" and "sigma_n" in spec:
            out.setdefault(("ambient", None, None), {})[cell["method"]] = float(spec["sigma_n"])
        elif spec["loss"] not in AMBIENT and kind in FORMS and (rd := reading(cell["method"])):
            out.setdefault(("ci", FORMS[kind], rd), {})[cell["method"]] = u_of(spec, 1 if rd == "low" else 0)
    return out


def _per_seed(g: pd.DataFrame, method: str) -> pd.DataFrame:
    return g[g.method == method].set_index("seed")[list(METRICS)]


def paired_diff(g: pd.DataFrame, a: str, b: str, metric: str) -> tuple[np.ndarray, list[int]]:
    """Per-seed ``a - b`` of ``metric`` over the seeds both have, and those seeds."""
    x, y = _per_seed(g, a), _per_seed(g, b)
    seeds = sorted(x.index.intersection(y.index))
    return (x.loc[seeds, metric] - y.loc[seeds, metric]).to_numpy(dtype=float), [int(s) for s in seeds]


def stats(g: pd.DataFrame, method: str) -> dict:
    """Seeds and, per metric, mean, 95% half-width and per-seed values of one method."""
    x = _per_seed(g, method).sort_index()
    out = {"method": method, "seeds": [int(s) for s in x.index]}
    for m in METRICS:
        out[m], out[m + "_pm"], _ = t_interval(x[m])
        out[m + "_values"] = x[m].to_numpy(dtype=float).tolist()
    return out


def rank_key(row: dict) -> tuple:
    """Rule step 2: qualifying first by mean copy share, then the others by mean FD; ties by the swept value."""
    key = row["copy_share"] if row["qualifies"] else row["fd"]
    return (0 if row["qualifies"] else 1, key if math.isfinite(key) else math.inf, row["value"])


def confirm_sweep(g: pd.DataFrame, members: dict[str, float], advised: float, kind: str, baseline: str,
                  margin: float) -> dict:
    """Rule steps 1-3 on one sweep of one (dataset, n) (``g`` its rows): each member's numbers, the best, the
    nearest to ``advised`` (ambient: in log sigma; ci: in u), its rank, the frontier loss, bracketing."""
    has_base = baseline in set(g.method)
    rows = []
    for method, value in members.items():
        row = {**stats(g, method), "value": value}
        if has_base:
            d, seeds = paired_diff(g, method, baseline, "fd")
            mean, half, k = t_interval(d)
            base_fd = float(_per_seed(g, baseline).loc[seeds, "fd"].mean()) if seeds else math.nan
            bar = margin * abs(base_fd)
            row.update(fd_diff=mean, fd_diff_pm=half, fd_diff_upper=mean + half, fd_bar=bar, paired_seeds=k)
            row["qualifies"] = bool(k >= 2 and math.isfinite(mean + half) and mean + half <= bar)
        else:
            row.update(fd_diff=math.nan, fd_diff_pm=math.nan, fd_diff_upper=math.nan, fd_bar=math.nan,
                       paired_seeds=0, qualifies=False)
        rows.append(row)
    rows.sort(key=rank_key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    dist = ((lambda v: abs(math.log(v) - math.log(advised))) if kind == "ambient" else (lambda v: abs(v - advised)))
    nearest = min(rows, key=lambda r: (dist(r["value"]), r["value"]))
    best = rows[0]
    loss = {}
    for m in METRICS:
        d, seeds = paired_diff(g, nearest["method"], best["method"], m)
        mean, half, k = t_interval(d)
        loss[m], loss[m + "_pm"], loss["seeds"] = mean, half, seeds
    values = [r["value"] for r in rows]
    lo, hi = min(values), max(values)
    distance = dist(nearest["value"])
    factor = (math.exp(distance) if kind == "ambient"
              else math.exp(abs(math.log(sigma_of_u(nearest["value"]) / sigma_of_u(advised)))))
    out = {"kind": kind, "advised": advised, "members": rows, "best": best["method"], "best_value": best["value"],
           "best_qualifies": best["qualifies"], "nearest": nearest["method"], "nearest_value": nearest["value"],
           "rank": nearest["rank"], "of": len(rows), "distance": distance, "factor": factor,
           "bracketed": bool(lo <= advised <= hi), "range": [lo, hi], "loss": loss, "baseline_present": has_base}
    out["words"] = words(out)
    return out


def words(s: dict) -> str:
    """The verdict in plain words (module docstring)."""
    if s["rank"] == 1:
        text = RIGHT
    else:
        k = s["rank"] - 1
        loss = s["loss"]
        text = (f"advice off by {k} rank{'s' * (k != 1)}, costing "
                f"{fmt_interval(loss['copy_share'], loss['copy_share_pm'], signed=True)} copy share / "
                f"{fmt_interval(loss['fd'], loss['fd_pm'], signed=True)} FD")
    if not s["bracketed"]:
        lo, hi = s["range"]
        a = s["advised"]
        if s["kind"] == "ambient":
            where = (f"a factor {a / hi:.3g} above the largest swept ({hi:g})" if a > hi
                     else f"a factor {lo / a:.3g} below the smallest swept ({lo:g})")
            text += f"; not bracketed: the advised sigma_n = {a:g} lies {where}"
        else:
            where = (f"{a - hi:.3g} above the largest swept boundary ({hi:g})" if a > hi
                     else f"{lo - a:.3g} below the smallest swept boundary ({lo:g})")
            text += f"; not bracketed: the advised u_n = {a:g} lies {where}"
    if not s["best_qualifies"]:
        text += "; none within the FD margin, best = lowest FD"
    return text


def confirm(df: pd.DataFrame, raw: dict[str, dict], pairs: list[tuple[dict, str, int]], baseline: str = "edm",
            margin: float = DEFAULT_MARGIN) -> list[dict]:
    """Per matched (dataset, n): the advice, the baseline's numbers, each sweep's confirmation, and the sets too
    small to be a sweep."""
    out = []
    for a, dataset, n in pairs:
        g = df[(df.dataset == dataset) & (df.n == n)]
        row = {"dataset": dataset, "n": n, "advice": a["path"], "sigma_n": a["sigma_n"], "u_n": a["u"],
               "baseline": stats(g, baseline) if baseline in set(g.method) else None, "sweeps": [], "not_sweeps": []}
        order = lambda kv: (kv[0][0] != "ambient", kv[0][1] or "", ("low", "high").index(kv[0][2] or "low"))
        for (kind, form, rd), members in sorted(sweeps(raw, dataset, n).items(), key=order):
            if len(members) < 2:
                row["not_sweeps"].append({"kind": kind, "form": form, "reading": rd, "methods": sorted(members)})
                continue
            advised = a["sigma_n"] if kind == "ambient" else a["u"][rd]
            row["sweeps"].append({"form": form, "reading": rd,
                                  **confirm_sweep(g, members, advised, kind, baseline, margin)})
        out.append(row)
    return out


# ---- outputs ----------------------------------------------------------------------------------------------
def _loss(s: dict, m: str) -> str:
    return fmt_interval(s["loss"][m], s["loss"][m + "_pm"], signed=True)


def confirm_markdown(rows: list[dict], baseline: str, margin: float) -> str:
    lines = ["# Confirming `memdiff advise` on a trained sweep\n",
             f"Rule fixed before the numbers (docs/THEORY.md §7.8): a swept method is within the FD margin when the "
             f"upper end of the 95% t-interval of its paired per-seed FD difference against `{baseline}` is at most "
             f"{100 * margin:.3g}% of `{baseline}`'s mean FD; ranks: those within the margin by mean copy share, then "
             "the others by mean FD (rank 1 = best swept). The advice's position is the swept value nearest it "
             "(ambient: in log sigma_n; CI: the interval's boundary at the split in u = t/T); loss = paired per-seed "
             "(nearest - best) copy share and FD, mean ± 95% t-interval. Regenerate: `memdiff figs confirm`.\n",
             "## Ambient training: sigma_n\n",
             "| dataset | n | advised σ_n | swept σ_n | best swept | nearest (factor) | rank | Δ copy share | Δ FD | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for s in (s for s in r["sweeps"] if s["kind"] == "ambient"):
            swept = ", ".join(f"{m['value']:g}" for m in sorted(s["members"], key=lambda m: m["value"]))
            lines.append(f"| {r['dataset']} | {r['n']} | {s['advised']:g} | {swept} | {s['best_value']:g} | "
                         f"{s['nearest_value']:g} ({s['factor']:.3g}x) | {s['rank']} of {s['of']} | "
                         f"{_loss(s, 'copy_share')} | {_loss(s, 'fd')} | {s['words']} |")
    if not any(s["kind"] == "ambient" for r in rows for s in r["sweeps"]):
        lines.append("\nNo ambient sweep (two or more sigma_n) at the matched (dataset, n).")
    lines += ["", "## CI timestep sampling: the interval's boundary at the split (u = t/T)\n",
              "| dataset | n | form | reading | advised u_n | swept boundaries | best | nearest (Δu, σ factor) | rank | "
              "Δ copy share | Δ FD | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for s in (s for s in r["sweeps"] if s["kind"] == "ci"):
            swept = ", ".join(f"{m['value']:g}" for m in sorted(s["members"], key=lambda m: m["value"]))
            lines.append(f"| {r['dataset']} | {r['n']} | {s['form']} | {s['reading']} | {s['advised']:g} | {swept} | "
                         f"{s['best']} | {s['nearest']} ({s['distance']:.3g}, {s['factor']:.3g}x) | "
                         f"{s['rank']} of {s['of']} | {_loss(s, 'copy_share')} | {_loss(s, 'fd')} | {s['words']} |")
    if not any(s["kind"] == "ci" for r in rows for s in r["sweeps"]):
        lines.append("\nNo CI sweep (two or more intervals of one form and reading) at the matched (dataset, n).")
    lines += ["", "## Each sweep\n"]
    for r in rows:
        b = r["baseline"]
        base = (f"`{baseline}`: copy share {fmt_interval(b['copy_share'], b['copy_share_pm'])}, FD "
                f"{fmt_interval(b['fd'], b['fd_pm'])} ({len(b['seeds'])} seeds)" if b else
                f"no `{baseline}` cells: no method can be within the FD margin")
        lines += [f"### {r['dataset']} n = {r['n']} (advice {r['advice']})\n", base + "\n"]
        for s in r["sweeps"]:
            label = "ambient σ_n" if s["kind"] == "ambient" else f"CI {s['form']} {s['reading']}, boundary u"
            lines += [f"{label}:\n", "| method | value | seeds | copy share | FD | ΔFD vs baseline | 95% upper / bar | "
                      "within margin | rank |", "|---|---|---|---|---|---|---|---|---|"]
            for m in s["members"]:
                mark = (" (best)" if m["method"] == s["best"] else "") + (" (nearest the advice)"
                                                                          if m["method"] == s["nearest"] else "")
                lines.append(f"| {m['method']}{mark} | {m['value']:g} | {len(m['seeds'])} | "
                             f"{fmt_interval(m['copy_share'], m['copy_share_pm'])} | {fmt_interval(m['fd'], m['fd_pm'])} | "
                             f"{fmt_interval(m['fd_diff'], m['fd_diff_pm'], signed=True)} | "
                             f"{m['fd_diff_upper']:.3g} / {m['fd_bar']:.3g} | {'yes' if m['qualifies'] else 'no'} | "
                             f"{m['rank']} |")
            lines.append("")
        for ns in r["not_sweeps"]:
            what = "ambient" if ns["kind"] == "ambient" else f"CI {ns['form']} {ns['reading']}"
            lines.append(f"- {what}: {', '.join(ns['methods'])} only, not a sweep")
        lines.append("")
    return "\n".join(lines)


def _point(ax, row: dict, **kw):
    return ax.errorbar(row["fd"], row["copy_share"], xerr=np.nan_to_num(row["fd_pm"]),
                       yerr=np.nan_to_num(row["copy_share_pm"]), capsize=2, **kw)


def frontier_figure(row: dict, baseline: str, margin: float):
    """Copy share against FD (seed means, 95% intervals) of each sweep: ambient left, CI right; the baseline as a
    black square with its FD bar (mean x (1 + margin), a guide: the rule is paired), the nearest to the advice
    as a red star, the best swept ringed."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for ax, kind in zip(axes, ("ambient", "ci")):
        b = row["baseline"]
        if b:
            _point(ax, b, fmt="s", color="k", ms=6, label=baseline)
            ax.axvline(b["fd"] * (1 + margin), color="k", ls=":", lw=0.8, label=f"{baseline} FD + {100 * margin:g}%")
        for s in (s for s in row["sweeps"] if s["kind"] == kind):
            c = next(colors)
            ms = sorted(s["members"], key=lambda m: m["value"])
            label = "ambient σ_n" if kind == "ambient" else f"{s['form']} {s['reading']}"
            ax.plot([m["fd"] for m in ms], [m["copy_share"] for m in ms], "-", color=c, lw=0.8, alpha=0.6)
            for m in ms:
                _point(ax, m, fmt="o", color=c, ms=4, label=label if m is ms[0] else None)
                ax.annotate(f"{m['value']:g}", (m["fd"], m["copy_share"]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
                if m["method"] == s["best"]:
                    ax.plot(m["fd"], m["copy_share"], "o", ms=14, mfc="none", mec=c, mew=1.5)
                if m["method"] == s["nearest"]:
                    ax.plot(m["fd"], m["copy_share"], "*", ms=12, color="r", zorder=5)
        ax.plot([], [], "*", color="r", ms=10, label="nearest the advice")
        ax.plot([], [], "o", ms=12, mfc="none", mec="0.3", label="best swept")
        ax.set_xscale("log")
        ax.set_xlabel("Frechet distance (own features)")
        ax.set_ylabel("copy share (d1/d2 < 1/3)")
        ax.set_ylim(-0.03, 1.03)
        what = (f"ambient: advised σ_n = {row['sigma_n']:g}" if kind == "ambient"
                else f"CI: advised u_n = {row['u_n']['low']:g} (value = boundary u)")
        ax.set_title(what, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{row['dataset']} n = {row['n']}: sweeps against the advice (mean ± 95% t-interval over seeds)")
    fig.tight_layout()
    return fig


def _jsonable(rows: list[dict]) -> list[dict]:
    return json.loads(json.dumps(rows, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def make_all(run_dir: str | os.PathLike, advice, out: str | os.PathLike, baseline: str = "edm") -> list[Path]:
    """The confirmation of every advice in ``advice`` on ``run_dir``'s cells, into ``out`` as one set (an earlier
    set is replaced whole); returns the paths."""
    advices = read_advice(advice)
    df, raw = load_results(run_dir)
    datasets, grid = grid_datasets(run_dir, df)
    pairs = match(advices, df, datasets)
    margin = equivalence_margin(grid)
    rows = confirm(df, raw, pairs, baseline, margin)
    keys = {(d, n) for _, d, n in pairs}
    seeds = sorted(int(s) for s in df[[(d, n) in keys for d, n in zip(df.dataset, df.n)]].seed.unique())
    config = {"run_dir": str(run_dir), "advice": [a["path"] for a in advices], "baseline": baseline,
              "margin": margin, "matched": [{"advice": a["path"], "dataset": d, "n": n} for a, d, n in pairs]}
    with atomic_folder(out, "confirm.md") as folder:
        (folder / "cells").mkdir()
        written = [Path(shutil.copy2(Path(run_dir) / "cells" / f"{cid}.json", folder / "cells" / f"{cid}.json"))
                   for cid in sorted(raw) if (raw[cid]["cell"]["dataset"], int(raw[cid]["cell"]["n"])) in keys]
        if (Path(run_dir) / "grid.json").exists():
            written.append(Path(shutil.copy2(Path(run_dir) / "grid.json", folder / "grid.json")))
        for a in advices:
            (folder / "advice" / a["tag"]).mkdir(parents=True)
            written.append(Path(shutil.copy2(a["path"], folder / "advice" / a["tag"] / ADVICE_FILE)))
        written.append(atomic_write_text(folder / "confirm.md", confirm_markdown(rows, baseline, margin)))
        for r in rows:
            fig = frontier_figure(r, baseline, margin)
            written.append(save_figure(fig, folder / f"frontier_{r['dataset']}_n{r['n']}.png",
                                       {**config, "dataset": r["dataset"], "n": r["n"]}, seeds))
            plt.close(fig)
        written.append(atomic_write_json(folder / "confirm.json", {**provenance(config, seeds), "rows": _jsonable(rows)}))
    return [Path(out) / p.relative_to(folder) for p in written]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs/sim_fitted"), help="grid output folder (memdiff sim --out)")
    parser.add_argument("--advice", type=Path, nargs="+", required=True,
                        help="advice.json files of memdiff advise, or folders holding one")
    parser.add_argument("--baseline", default="edm", help="the method whose FD sets the quality bar")
    add_output_arguments(parser, DRAFT, PUBLISHED)


def run(args: argparse.Namespace) -> int:
    for p in make_all(args.runs, args.advice, args.out, args.baseline):
        print(p)
    return 0
