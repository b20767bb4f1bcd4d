"""``memdiff sim``: run the 1D experiment grid of a TOML or JSON config, resumably (``sims.grid`` with the
1D track's cells, ``sims.track1d.cell``)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

from sims.artifacts import REPO_ROOT
from sims.grid import cell_path, expand_grid, load_config, run_grid
from sims.track1d.cell import prepare, run_cell

GRID_CONFIG = REPO_ROOT / "configs" / "sim_grid.toml"
SMOKE_CONFIG = REPO_ROOT / "configs" / "sim_smoke.toml"


def run_1d_grid(config: dict[str, Any], out: str | os.PathLike, workers: int = 1, threads: int = 1,
                only: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``sims.grid.run_grid`` with the 1D track's ``prepare`` and ``run_cell``."""
    return run_grid(config, out, run_cell, prepare=prepare, workers=workers, threads=threads, only=only, log=log)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help=f"grid config (.toml/.json); default {GRID_CONFIG.name}")
    parser.add_argument("--smoke", action="store_true", help=f"run the tiny grid {SMOKE_CONFIG.name}")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/sim_grid or runs/sim_smoke)")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: run.workers)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: run.threads)")
    parser.add_argument("--only", default=None, help="glob over cell ids, e.g. 'mnist1d-n100-*'")
    parser.add_argument("--list", action="store_true", help="list the cells and whether each is done, then exit")


def run(args: argparse.Namespace) -> int:
    path = args.config or (SMOKE_CONFIG if args.smoke else GRID_CONFIG)
    config = load_config(path)
    out = args.out or Path("runs") / ("sim_smoke" if args.smoke and args.config is None else "sim_grid")
    if args.list:
        for c in expand_grid(config, args.only):
            print(("done " if cell_path(out, c).exists() else "todo ") + c.id)
        return 0
    run_1d_grid(config, out, workers=args.workers or config["run"].get("workers", 1),
                threads=args.threads or config["run"].get("threads", 1), only=args.only)
    return 0
