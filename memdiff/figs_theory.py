"""``memdiff figs theory``: regenerate ``<out>/<name>`` (PNGs with provenance sidecars, plus the CSV tables)
from ``configs/theory_<name>.toml`` through the ``memdiff theory`` pipeline, and the memorization crossover
against the training-set size (``collapse_by_n.csv`` / ``.png``). ``<out>`` is ``runs/figs/theory``, or the
committed ``paper_figs/theory`` with ``--publish``; each ``<name>`` set is built aside and swapped in whole.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from memdiff.theory_plots import plot_collapse_by_n
from memdiff.theory_run import TheoryConfig, load_population, noise_levels, run_theory
from memdiff.cli import add_output_arguments
from sims.artifacts import REPO_ROOT, atomic_folder, atomic_write, save_figure
from theory.diagnostics import diagnose, necessity_crossing

PAPER_CONFIGS = {name: REPO_ROOT / "configs" / f"theory_{name}.toml" for name in ("gmm", "mnist1d")}
SIZES = (30, 100, 300, 1000, 3000)
DRAFT, PUBLISHED = Path("runs/figs/theory"), REPO_ROOT / "paper_figs" / "theory"


def collapse_by_n(cfg, sizes=SIZES) -> pd.DataFrame:
    """Per training-set size (nested prefixes of one draw, same held-out set and reference): where the
    empirical optimum's necessity falls through 1/2, and the collapse / speciation levels."""
    big = load_population(replace(cfg, n=max(sizes)))
    rows = []
    for n in sizes:
        pop = replace(big, train=big.train[:n])
        diag = diagnose(pop.train, pop.test, pop.gen, cfg.sigmas, num_items=cfg.num_items, seed=cfg.seed)
        rows.append({**noise_levels(pop, cfg), "M_half": necessity_crossing(diag)})
    return pd.DataFrame(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_arguments(parser, DRAFT, PUBLISHED)
    parser.add_argument("--only", choices=sorted(PAPER_CONFIGS), default=None, help="one dataset only")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    names = [args.only] if args.only else list(PAPER_CONFIGS)
    for name in names:
        cfg = TheoryConfig.from_file(PAPER_CONFIGS[name], seed=args.seed)
        with atomic_folder(args.out / name, "summary.json") as out:
            run_theory(cfg, out)
            table = collapse_by_n(cfg, SIZES)
            atomic_write(out / "collapse_by_n.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
            save_figure(plot_collapse_by_n(table, f"{name}: memorization crossover against n"),
                        out / "collapse_by_n.png", {**asdict(cfg), "sizes": list(SIZES)}, args.seed)
            plt.close("all")
        print(f"wrote {args.out / name}")
    return 0
