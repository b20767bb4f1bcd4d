"""Theory figures from the tables of ``memdiff theory`` (``memdiff.theory_run``).

* ``plot_diagnostics``: per-sigma losses, memorization necessity ``M``, held-out loss ratio,
  posterior concentration and the excess entropy ``f`` on a log-sigma axis, with ``sigma_C`` and
  ``sigma_S`` (and ``sigma_n``) marked (docs/THEORY.md §3);
* ``plot_switch_sweep``: copy share of closed-form hybrids against the switch level (§2.6);
* ``plot_collapse_by_n``: where the necessity ``M`` falls through 1/2, against the training-set size,
  beside the collapse-level estimates (§3.5).
"""
from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
COLORS = {"empirical": "tab:red", "generalizing": "k", "ambient": "tab:blue", "local": "tab:orange"}


LEVELS = (("sigma_C", "tab:green", "-", r"$\sigma_C$"), ("sigma_C_isotropic", "tab:green", ":", r"$\sigma_C$ iso"),
          ("sigma_S", "tab:purple", "--", r"$\sigma_S$"), ("sigma_n", "tab:blue", "-.", r"$\sigma_n$"))


def mark_levels(ax, scales: dict[str, Any], label: bool = False) -> None:
    """Vertical lines at the collapse / speciation / corruption levels present (finite) in ``scales``."""
    for key, color, style, text in LEVELS:
        v = scales.get(key)
        if v is not None and math.isfinite(v):
            ax.axvline(v, color=color, ls=style, lw=1, alpha=0.8, label=text if label else None)


def plot_diagnostics(diag: pd.DataFrame, entropy: pd.DataFrame, scales: dict[str, Any], title: str = ""):
    """Six panels of :func:`theory.diagnostics.diagnose` output and the excess-entropy curve(s)."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    (a_loss, a_nec, a_gap), (a_top, a_eff, a_ent) = axes
    gen = diag[diag.denoiser == "generalizing"].set_index("sigma")
    for name, g in diag.groupby("denoiser", sort=False):
        g = g.set_index("sigma").dropna(subset=["loss_train"])
        c = COLORS.get(name.split("_")[0])
        a_loss.plot(g.index, g.loss_train, color=c, label=f"{name} train")
        a_loss.plot(g.index, g.loss_test, color=c, ls="--", label=f"{name} test")
        if name != "generalizing":
            a_nec.plot(g.index, g.necessity, color=c, marker=".", label=name)
            a_gap.plot(g.index, g.loss_test / gen.loss_test.loc[g.index], color=c, marker=".", label=name)
        if g.max_weight.notna().any():
            a_top.plot(g.index, g.max_weight, color=c, marker=".", label=f"{name} (train queries)")
            a_top.plot(g.index, g.max_weight_test, color=c, ls="--", label=f"{name} (held-out queries)")
            a_eff.plot(g.index, g.eff_items, color=c, marker=".", label=f"{name} (train queries)")
            a_eff.plot(g.index, g.eff_items_test, color=c, ls="--", label=f"{name} (held-out queries)")
    for col in entropy.columns.drop("sigma"):
        a_ent.plot(entropy.sigma, entropy[col], marker=".", label=col.replace("f_", "density: "))
    floor, top = gen.loss_train.min(), max(gen.loss_train.max(), gen.loss_test.max())
    if floor > 0:  # the memorizer's loss reaches 0 at small sigma, the ambient one blows up at sigma_n+
        a_loss.set_ylim(1e-2 * floor, 3 * top)
    a_nec.set_ylim(max(a_nec.get_ylim()[0], -1.05), 1.05)  # the ambient optimum's M -> -inf at sigma_n+
    a_ent.axhline(0, color="0.5", lw=0.8)
    a_nec.axhline(0, color="0.5", lw=0.8)
    a_gap.axhline(1, color="0.5", lw=0.8)
    panels = ((a_loss, r"$L(D,\sigma)$ per coordinate", "log"),
              (a_nec, r"necessity $M = 1 - L_{train}(D) / L_{train}(D_{gen})$", "linear"),
              (a_gap, r"held-out loss ratio $L_{test}(D) / L_{test}(D_{gen})$", "log"),
              (a_top, "mean largest posterior weight", "linear"),
              (a_eff, r"effective items $\exp H(w)$", "log"),
              (a_ent, r"excess entropy $f(\sigma) = (\log n - I)/d$", "symlog"))
    for ax, ylabel, yscale in panels:
        ax.set_xscale("log")
        ax.set_yscale(yscale, **({"linthresh": 0.1} if yscale == "symlog" else {}))
        ax.set_xlabel(r"$\sigma$")
        ax.set_ylabel(ylabel)
        mark_levels(ax, scales, label=ax is a_nec)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_switch_sweep(sweep: pd.DataFrame, scales: dict[str, Any], title: str = ""):
    """Copy share against ``sigma_switch``, one line per hybrid of :func:`sims.generation.switch_sweep`."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for hybrid, g in sweep.groupby("hybrid", sort=False):
        ax.plot(g.sigma_switch, g.copy_share, marker="o", label=hybrid.replace("_", " "))
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(r"$\sigma_{switch}$")
    ax.set_ylabel(r"copy share ($d_1 / d_2 < 1/3$)")
    mark_levels(ax, scales, label=True)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return fig


def plot_collapse_by_n(table: pd.DataFrame, title: str = ""):
    """``sigma`` where ``M = 1/2`` against ``n``, beside the collapse-level estimates (columns ``sigma_*``)."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(table.n, table.M_half, "ko-", lw=2, label=r"$\sigma$ where $M = 1/2$")
    styles = {"sigma_C": ("tab:green", "-"), "sigma_C_gaussian_fit": ("tab:olive", "--"),
              "sigma_C_isotropic": ("tab:green", ":"), "sigma_S": ("tab:purple", "--")}
    for col, (color, ls) in styles.items():
        ax.plot(table.n, table[col], color=color, ls=ls, marker=".", label=col.replace("_", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training-set size n")
    ax.set_ylabel(r"$\sigma$")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return fig
