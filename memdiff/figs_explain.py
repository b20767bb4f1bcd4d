"""``memdiff figs explain``: what a trained net is, per noise level (issue #14) — the explained share ``r^2`` of
the net's corrections by each closed form (docs/THEORY.md §6.10), from the cells of a grid run with
``eval.explain = true``.

Per (dataset, n, method), over seeds (mean and 95% t-interval, §7.1):

- ``r^2`` of every closed form per sigma (``explain.csv``; the figure);
- the best fit per noise band: ``sigma <= sigma_C / 2``, between, ``sigma >= 2 sigma_C`` (``sigma_C`` each cell's,
  §3.5): the closed form with the largest band mean of ``r^2`` (per cell the mean over the band's levels, a form
  competing only where it is defined at every one of them, then over seeds);
- the answers, computed from the per-sigma best fits (the form with the largest seed-mean ``r^2`` at that level):
  for methods trained on noisy copies (those with an ``ambient`` closed form) whether ``ambient`` is the best
  fit at every level above ``sigma_n`` and ``empirical`` at every level at or below it (the hybrid ambient
  optimum, §2.6); for the baselines (``BASELINES``) the largest sigma at which ``empirical`` is the clear best fit
  (by more than ``TIE`` = 0.01 of ``r^2`` over the runner-up: at high sigma every form reaches ``r^2 ~ 1``),
  the form that is best at the level above it, and that sigma over ``sigma_C``.

Writes ``explain.md`` (bands and answers), ``explain.csv``, ``explain_<dataset>_n<n>.png`` (one panel per method:
``r^2`` per closed form against sigma, ``sigma_C`` and ``sigma_n`` marked) with provenance sidecars, and ``cells/``
(the cells read, so ``--runs <that folder>`` re-computes everything).
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
import numpy as np
import pandas as pd

from memdiff.results import fmt_interval, load_results
from memdiff.cli import add_output_arguments
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write_json, atomic_write_text, provenance, save_figure
from sims.stats import t_interval

DRAFT, PUBLISHED = Path("runs/figs/explain"), REPO_ROOT / "paper_figs" / "explain"
BASELINES = ("edm", "ddpm")  # the methods whose switch to the copier is located (as memdiff.claims' baselines)
BANDS = ("σ ≤ σ_C/2", "between", "σ ≥ 2σ_C")
TIE = 0.01  # two forms whose seed-mean r^2 differ by less than this explain the net equally well at that level
FIXED_COLORS = {"empirical": "r", "wiener": "tab:blue", "gmm": "tab:green", "ambient": "tab:purple"}


def explained_cells(raw: dict[str, dict]) -> dict[str, dict]:
    """The cells that hold ``explained`` (run with ``eval.explain``); ``ValueError`` if there are none."""
    cells = {cid: r for cid, r in raw.items() if r.get("explained")}
    if not cells:
        raise ValueError("runs must hold cells run with eval.explain = true (an \"explained\" entry), found none "
                         f"among {len(raw)} cells")
    return cells


def _local_items(cell: dict) -> int:
    """How many training items a cell's local forms were built from: ``explained.local_items`` where
    ``eval.explain_local_items`` capped them, else all ``n`` (a cap at or above ``n`` changes nothing)."""
    return int(cell["explained"].get("local_items", cell["cell"]["n"]))


def _groups(cells: dict[str, dict]) -> dict[tuple[str, int, str], list[dict]]:
    """The cells per (dataset, n, method), seeds in increasing order; one sigma grid and set of forms per group."""
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for r in sorted(cells.values(), key=lambda r: r["cell"]["seed"]):
        c = r["cell"]
        groups.setdefault((c["dataset"], int(c["n"]), c["method"]), []).append(r)
    for key, rs in groups.items():
        first = rs[0]["explained"]
        for r in rs[1:]:
            e = r["explained"]
            if not np.allclose(e["sigma"], first["sigma"]) or list(e["r2"]) != list(first["r2"]) \
                    or _local_items(r) != _local_items(rs[0]):  # a capped local form is another form
                raise ValueError(f"cells of {key} must share one sigma grid, set of closed forms and local-form "
                                 f"training items (eval.explain_local_items); "
                                 f"{r['cell'].get('id', r['cell'])} differs from seed {rs[0]['cell']['seed']}")
    return groups


def _form_order(form: str) -> tuple:
    """Global forms first (``FIXED_COLORS``' order), then local ones by patch size, plain before equivariant
    (a cell file sorts its keys alphabetically)."""
    if form in FIXED_COLORS:
        return (0, list(FIXED_COLORS).index(form), 0)
    size = form.rsplit("_p", 1)[-1]
    return (1, int(size) if size.isdigit() else 0, form.startswith("local_eq"), form)


class Group:
    """One (dataset, n, method): ``sigma`` (S,), ``forms`` (F names), ``r2`` (seeds, F, S), per-seed ``sigma_c``,
    ``sigma_n`` (NaN for a method on clean items), ``family``."""

    def __init__(self, rs: list[dict]) -> None:
        e0 = rs[0]["explained"]
        self.sigma = np.asarray(e0["sigma"], dtype=float)
        self.forms = sorted(e0["r2"], key=_form_order)
        self.r2 = np.asarray([[r["explained"]["r2"][f] for f in self.forms] for r in rs], dtype=float)
        self.sigma_cs = np.asarray([r.get("sigma_c", math.nan) for r in rs], dtype=float)
        self.sigma_n = float(rs[0].get("method", {}).get("sigma_n") or math.nan)
        self.family = rs[0].get("family", "?")
        self.seeds = len(rs)

    @property
    def sigma_c(self) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no finite sigma_C
            return float(np.nanmean(self.sigma_cs))

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed mean and 95% half-width of ``r^2`` per form and sigma, (F, S) each."""
        out = np.array([[t_interval(self.r2[:, f, j])[:2] for j in range(self.sigma.size)]
                        for f in range(len(self.forms))])
        return out[..., 0], out[..., 1]

    def best_per_sigma(self) -> list[str | None]:
        """The form with the largest seed-mean ``r^2`` at each sigma (``None`` where no form has a value)."""
        mean, _ = self.interval()
        return [self.forms[int(np.nanargmax(col))] if np.isfinite(col).any() else None for col in mean.T]

    def clear_best_per_sigma(self) -> list[str | None]:
        """``best_per_sigma``, but ``None`` where the runner-up's seed-mean ``r^2`` is within ``TIE`` of the best:
        at high sigma every form explains the net (``r^2 -> 1``) and the order among them is noise."""
        mean, _ = self.interval()
        out: list[str | None] = []
        for col in mean.T:
            top = np.sort(col[np.isfinite(col)])[::-1]
            out.append(self.forms[int(np.nanargmax(col))] if top.size and (top.size == 1 or top[0] - top[1] > TIE)
                       else None)
        return out

    def band_masks(self) -> np.ndarray:
        """(seeds, 3, S): per cell the levels of its bands by its own ``sigma_C`` (§7.3's bands and the middle)."""
        s, c = self.sigma[None, :], self.sigma_cs[:, None]
        low, high = s <= c / 2, s >= 2 * c
        return np.stack([low, ~low & ~high & np.isfinite(c), high], axis=1)

    def band_best(self) -> list[tuple[str, float, float] | None]:
        """Per band: ``(form, mean, half-width)`` of the largest band mean of ``r^2`` over seeds, or ``None``.
        Per cell a form's band mean is NaN unless it has a value at every level of the band."""
        masks, out = self.band_masks(), []
        for b in range(len(BANDS)):
            vals = np.full((self.seeds, len(self.forms)), math.nan)
            for i in range(self.seeds):
                m = masks[i, b]
                if m.any():
                    v = self.r2[i][:, m]
                    vals[i] = np.where(np.isfinite(v).all(axis=1), v.mean(axis=1), math.nan)
            stats = [t_interval(vals[:, f])[:2] for f in range(len(self.forms))]
            means = np.asarray([s[0] for s in stats])
            if not np.isfinite(means).any():
                out.append(None)
                continue
            f = int(np.nanargmax(means))
            out.append((self.forms[f], *stats[f]))
        return out

    def ambient_answer(self) -> dict | None:
        """For a method with an ``ambient`` form: is ``ambient`` the best fit at every level above ``sigma_n``
        and ``empirical`` at every level at or below it? Counts of levels and the verdict ``holds``."""
        if "ambient" not in self.forms or not np.isfinite(self.sigma_n):
            return None
        best = np.asarray(self.best_per_sigma(), dtype=object)
        above = self.sigma > self.sigma_n
        a, b = int(np.sum(best[above] == "ambient")), int(np.sum(best[~above] == "empirical"))
        return {"sigma_n": self.sigma_n, "ambient_above": a, "levels_above": int(above.sum()),
                "empirical_below": b, "levels_below": int((~above).sum()),
                "holds": bool(above.any() and a == above.sum() and b == (~above).sum())}

    def switch_answer(self) -> dict:
        """The largest sigma at which ``empirical`` is the clear best fit (``clear_best_per_sigma``; NaN if at none),
        the form best at the next level above it (``None`` at the largest level; ``"tie"`` where no form is the
        clear best there) and that sigma over the seed-mean ``sigma_C``."""
        best = [b or "tie" for b in self.clear_best_per_sigma()]
        order = np.argsort(self.sigma)
        emp = [k for k in order if best[k] == "empirical"]
        if not emp:
            return {"sigma": math.nan, "above": None, "ratio": math.nan}
        k = emp[-1]
        pos = int(np.flatnonzero(order == k)[0])
        above = best[order[pos + 1]] if pos + 1 < order.size else None
        return {"sigma": float(self.sigma[k]), "above": above, "ratio": float(self.sigma[k]) / self.sigma_c}


def explain_groups(raw: dict[str, dict]) -> dict[tuple[str, int, str], Group]:
    """The :class:`Group` of every (dataset, n, method) with explained cells."""
    return {key: Group(rs) for key, rs in sorted(_groups(explained_cells(raw)).items())}


def explain_frame(groups: dict[tuple[str, int, str], Group]) -> pd.DataFrame:
    """Long table: one row per (dataset, n, method, form, sigma) with the seed mean ``r2``, ``r2_pm`` and
    ``best`` (whether the form is the best fit at that sigma)."""
    rows = []
    for (dataset, n, method), g in groups.items():
        mean, pm = g.interval()
        best = g.best_per_sigma()
        for f, form in enumerate(g.forms):
            for j, s in enumerate(g.sigma):
                rows.append({"dataset": dataset, "n": n, "method": method, "seeds": g.seeds, "form": form, "sigma": s,
                             "r2": mean[f, j], "r2_pm": pm[f, j], "best": best[j] == form, "sigma_c": g.sigma_c})
    return pd.DataFrame(rows)


def _answer_lines(key: tuple[str, int, str], g: Group) -> list[str]:
    dataset, n, method = key
    lines = []
    if (a := g.ambient_answer()) is not None:
        word = "yes" if a["holds"] else "no"
        lines.append(f"- {dataset}, n = {n}, `{method}`: ambient above σ_n = {a['sigma_n']:g} and empirical below? "
                     f"**{word}** (ambient best at {a['ambient_above']}/{a['levels_above']} levels above σ_n, "
                     f"empirical best at {a['empirical_below']}/{a['levels_below']} at or below)")
    if method in BASELINES:
        s = g.switch_answer()
        if not np.isfinite(s["sigma"]):
            text = "empirical is the clear best fit at no level"
        elif s["above"] is None:
            text = f"empirical is the clear best fit up to the largest level σ = {s['sigma']:g} (σ/σ_C = {s['ratio']:.3g})"
        else:
            text = (f"the clear best fit switches from `{s['above']}` (above) to empirical at σ = {s['sigma']:g} "
                    f"(σ/σ_C = {s['ratio']:.3g}, σ_C = {g.sigma_c:.3g})")
        lines.append(f"- {dataset}, n = {n}, `{method}`: {text}")
    return lines


def explain_markdown(groups: dict[tuple[str, int, str], Group]) -> str:
    lines = [("What a trained net is, per noise level (docs/THEORY.md §6.10): r² = 1 − Σ‖c_net − c_cf‖² / "
              "Σ‖c_net − mean c_net‖² of the corrections c = D(x) − x on held-out inputs. Best fit per band: the "
              "closed form with the largest band mean of r² (mean ± 95% t-interval over seeds; σ_C each cell's). "
              "Regenerate: `memdiff figs explain`.\n")]
    for dataset in sorted({k[0] for k in groups}):
        lines += [f"## {dataset}\n", "| n | method | seeds | σ_C | " + " | ".join(BANDS) + " |",
                  "|---|---|---|---|" + "---|" * len(BANDS)]
        for key, g in groups.items():
            if key[0] != dataset:
                continue
            cols = [f"`{b[0]}` {fmt_interval(b[1], b[2])}" if b else "-" for b in g.band_best()]
            lines.append(f"| {key[1]} | {key[2]} | {g.seeds} | {g.sigma_c:.3g} | " + " | ".join(cols) + " |")
        lines.append("")
    answers = [line for key, g in groups.items() for line in _answer_lines(key, g)]
    lines += ["## Answers\n", *(answers or ["- no ambient or baseline cells"]), ""]
    return "\n".join(lines)


def _style(form: str, forms: list[str]) -> dict:
    """Fixed colours for the global forms; local forms coloured by patch size, equivariant ones dashed."""
    if form in FIXED_COLORS:
        return {"color": FIXED_COLORS[form], "ls": "-", "lw": 1.8}
    if not form.startswith("local"):
        return {"color": "gray", "ls": "-", "lw": 1.2}
    sizes = sorted({int(f.rsplit("_p", 1)[1]) for f in forms if f.startswith("local")})
    k = int(form.rsplit("_p", 1)[1])
    shade = plt.cm.YlOrBr(0.45 + 0.5 * sizes.index(k) / max(1, len(sizes) - 1))
    return {"color": shade, "ls": "--" if form.startswith("local_eq") else "-", "lw": 1.2}


def explain_figure(groups: dict[tuple[str, int, str], Group], dataset: str, n: int):
    """One panel per method: seed-mean ``r^2`` per closed form against sigma (log axis) with its 95% band,
    ``sigma_C`` and ``sigma_n`` marked; the axis reaches down to the lowest mean, at most to -1 (lower values
    leave the panel)."""
    keys = [k for k in groups if k[0] == dataset and k[1] == n]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        g = groups[key]
        mean, pm = g.interval()
        for f, form in enumerate(g.forms):
            st = _style(form, g.forms)
            ax.plot(g.sigma, mean[f], marker="o", ms=2.5, label=form, **st)
            ax.fill_between(g.sigma, mean[f] - np.nan_to_num(pm[f]), mean[f] + np.nan_to_num(pm[f]),
                            color=st["color"], alpha=0.12, lw=0)
        if np.isfinite(g.sigma_c):
            ax.axvline(g.sigma_c, color="gray", ls="-.", lw=1, label=f"σ_C = {g.sigma_c:.2g}")
        if np.isfinite(g.sigma_n):
            ax.axvline(g.sigma_n, color="tab:purple", ls=":", lw=1, label=f"σ_n = {g.sigma_n:g}")
        ax.axhline(1.0, color="gray", ls=":", lw=0.6)
        ax.axhline(0.0, color="gray", ls=":", lw=0.6)
        ax.set_xscale("log")
        low = np.nanmin(mean) if np.isfinite(mean).any() else 0.0
        ax.set_ylim(max(-1.0, min(0.0, low) - 0.05), 1.05)
        ax.set_xlabel("σ")
        ax.set_ylabel("r² of the net's corrections")
        ax.set_title(f"{key[2]} ({g.seeds} seeds)", fontsize=9)
        ax.legend(fontsize=6, ncol=2, loc="best")
    fig.suptitle(f"{dataset}, n = {n}: closed forms explaining the trained net (mean ± 95% t-interval over seeds)")
    fig.tight_layout()
    return fig


def make_all(run_dir: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Table, answers and figures of ``run_dir``'s explained cells into ``out`` as one set (an earlier set is
    replaced whole); returns the paths."""
    _, raw = load_results(run_dir)
    groups = explain_groups(raw)
    cells = explained_cells(raw)
    with atomic_folder(out, "explain.md") as folder:
        (folder / "cells").mkdir()
        written = [Path(shutil.copy2(Path(run_dir) / "cells" / f"{cid}.json", folder / "cells" / f"{cid}.json"))
                   for cid in sorted(cells)]
        grid = Path(run_dir) / "grid.json"
        config = {"run_dir": str(run_dir), "cells": len(cells),
                  "grid": json.loads(grid.read_text())["config"] if grid.exists() else None}
        if grid.exists():
            written.append(Path(shutil.copy2(grid, folder / "grid.json")))
        seeds = sorted({int(r["cell"]["seed"]) for r in cells.values()})
        written.append(atomic_write_text(folder / "explain.md", explain_markdown(groups)))
        written.append(atomic_write_text(folder / "explain.csv", explain_frame(groups).to_csv(index=False)))
        for dataset, n in sorted({k[:2] for k in groups}):
            fig = explain_figure(groups, dataset, n)
            written.append(save_figure(fig, folder / f"explain_{dataset}_n{n}.png",
                                       {**config, "dataset": dataset, "n": n}, seeds))
            plt.close(fig)
        written.append(atomic_write_json(folder / "explain.json", provenance(config, seeds)))
    return [Path(out) / p.relative_to(folder) for p in written]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs/sim_grid"),
                        help="grid output folder (memdiff sim --out) with cells run with eval.explain = true")
    add_output_arguments(parser, DRAFT, PUBLISHED)


def run(args: argparse.Namespace) -> int:
    for p in make_all(args.runs, args.out):
        print(p)
    return 0
