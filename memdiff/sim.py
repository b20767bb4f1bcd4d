"""``memdiff sim``: run the 1D experiment grid of a TOML or JSON config, resumably (``sims.grid`` with the
1D track's cells, ``sims.track1d.cell``). Ctrl-C or SIGTERM stops it within seconds, keeping the finished
cells: it exits with code 130 and one line saying to run the same command again to resume. The grid flags and
``--list`` (``add_grid_arguments``, ``grid_command``) serve ``memdiff image grid`` too."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from sims.artifacts import REPO_ROOT, check_writable
from sims.grid import GridInterrupted, expand_grid, load_config, pending, run_grid
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
    add_grid_arguments(parser, "mnist1d-n100-*")


def add_grid_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The flags of every grid command (``memdiff sim``, ``memdiff image grid``) besides ``--config`` and ``--out``."""
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: run.workers)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: run.threads)")
    parser.add_argument("--only", default=None, help=f"glob over cell ids, e.g. '{example}' (several: separated by commas)")
    parser.add_argument("--list", action="store_true", help="list the cells and whether each is done, then exit")


def grid_command(prog: str, config: dict[str, Any], out: Path, args: argparse.Namespace,
                 run_track: Callable[..., dict[str, Any]]) -> int:
    """``--list`` the cells of ``config`` (done or todo in ``out``), or run them with ``run_track(config, out,
    workers=, threads=, only=)``; an interrupt prints one line and returns 130."""
    if args.list:
        cells = expand_grid(config, args.only)
        todo = set(pending(out, cells))
        for c in cells:
            print(("todo " if c in todo else "done ") + c.id)
        return 0
    try:
        run_track(config, out, workers=args.workers or config["run"].get("workers", 1),
                  threads=args.threads or config["run"].get("threads", 1), only=args.only)
    except GridInterrupted as e:
        print(f"{prog}: interrupted by {e}; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def run(args: argparse.Namespace) -> int:
    path = args.config or (SMOKE_CONFIG if args.smoke else GRID_CONFIG)
    config = load_config(path)
    out = args.out or Path("runs") / ("sim_smoke" if args.smoke and args.config is None else "sim_grid")
    check_writable(out, "--out")
    return grid_command("memdiff sim", config, out, args, run_1d_grid)
