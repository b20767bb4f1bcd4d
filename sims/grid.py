"""The grid runner of both tracks: expand a TOML/JSON experiment grid into cells and run them, resumably.

A grid is the product seeds x datasets (each with its training sizes ``n`` and its methods) x methods.
Each cell (dataset, n, method, seed) is done by a track's ``runner(config, cell, out) -> dict`` (the 1D
track's is ``sims.track1d.cell.run_cell``); its result is written atomically to
``<out>/cells/<cell id>.json``, and a cell whose file exists is skipped, so a grid can be killed and
restarted. Cells run in ``workers`` processes with ``threads`` torch threads each.

Config layout (see ``configs/sim_grid.toml``)::

    [run]      seeds, workers, threads
    [train]    defaults of every cell's training (arch, width, steps, batch_size, lr, ...)
    [eval]     sampling and readout settings
    [[datasets]]  name, kind ("mnist1d" | "ecg" | "gmm"), n = [...], methods = "all" or [...], size keys
    [[methods]]   name and a method spec of ``sims.methods`` (loss, noise = {kind = ...}, sigma_n, ...)
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable

import torch

from sims.artifacts import atomic_write_json
from sims.configs import read_config_file
from sims.methods import build_method

DATASET_KINDS = ("mnist1d", "ecg", "gmm")


@dataclass(frozen=True)
class Cell:
    dataset: str
    n: int
    method: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}-n{self.n}-{self.method}-s{self.seed}"


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a grid config (``.toml`` or ``.json``) and check its structure.

    ``extends = "other.toml"`` (relative to this file) starts from that config: this file's ``[run]``,
    ``[train]`` and ``[eval]`` keys override the base's one by one, and its ``datasets`` or ``methods`` lists,
    where given, replace the base's."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config must be an existing .toml or .json file, got {str(path)!r}")
    config = read_config_file(path)
    if "extends" in config:
        base = load_config(path.parent / config.pop("extends"))
        for key, value in config.items():
            base[key] = {**base.get(key, {}), **value} if key in ("run", "train", "eval") else value
        config = base
    check_config(config)
    return config


def check_config(config: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the offending key when the grid is malformed."""
    for key in ("run", "train", "eval", "datasets", "methods"):
        if key not in config:
            raise ValueError(f"config must have a [{key}] section")
    seeds = config["run"].get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"run.seeds must be a non-empty list of integers, got {seeds!r}")
    methods = [m.get("name") for m in config["methods"]]
    if not methods or len(set(methods)) != len(methods) or not all(isinstance(m, str) and m for m in methods):
        raise ValueError(f"methods must have unique non-empty names, got {methods!r}")
    for m in config["methods"]:
        try:
            build_method(m)
        except ValueError as e:
            raise ValueError(f"methods entry {m['name']!r}: {e}") from None
    names = [d.get("name") for d in config["datasets"]]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"datasets must have unique names, got {names!r}")
    for d in config["datasets"]:
        if d.get("kind") not in DATASET_KINDS:
            raise ValueError(f"datasets.kind must be one of {DATASET_KINDS}, got {d.get('kind')!r} for {d.get('name')!r}")
        ns = d.get("n")
        if not isinstance(ns, list) or not ns or not all(isinstance(n, int) and n >= 2 for n in ns):
            raise ValueError(f"datasets.n must be a non-empty list of integers >= 2, got {ns!r} for {d['name']!r}")
        chosen = d.get("methods", "all")
        unknown = set() if chosen == "all" else set(chosen) - set(methods)
        if unknown:
            raise ValueError(f"datasets.methods of {d['name']!r} must name configured methods, unknown: {sorted(unknown)}")


def expand_grid(config: dict[str, Any], only: str | None = None) -> list[Cell]:
    """All cells, seed-major (a killed grid leaves whole seeds done), filtered by the glob ``only``."""
    methods = [m["name"] for m in config["methods"]]
    cells = [Cell(d["name"], n, m, seed)
             for seed in config["run"]["seeds"]
             for d in config["datasets"]
             for n in d["n"]
             for m in (methods if d.get("methods", "all") == "all" else d["methods"])]
    return [c for c in cells if only is None or fnmatch(c.id, only)]


def cell_path(out: str | os.PathLike, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.id}.json"


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_one(runner: Callable[..., dict[str, Any]], config: dict[str, Any], cell: Cell, out: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    result = runner(config, cell, Path(out))
    result["wall_s"] = time.perf_counter() - t0
    atomic_write_json(cell_path(out, cell), result)
    return cell.id, result["wall_s"]


def run_grid(config: dict[str, Any], out: str | os.PathLike, runner: Callable[..., dict[str, Any]], *,
             prepare: Callable[[dict[str, Any], Path], None] | None = None, workers: int = 1, threads: int = 1,
             only: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every cell without a result file; returns ``{"done", "skipped", "wall_s"}``.

    ``runner(config, cell, out) -> dict`` does one cell (a module-level function, so that worker processes
    can import it); ``prepare(config, out)``, when given, makes the shared inputs (data pools, feature
    classifiers) once before any worker starts.
    """
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got {workers}, {threads}")
    out = Path(out)
    if prepare is not None:
        prepare(config, out)
    cells = expand_grid(config, only)
    todo = [c for c in cells if not cell_path(out, c).exists()]
    atomic_write_json(out / "grid.json", {"config": config, "cells": [c.id for c in cells]})
    log(f"{len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run "
        f"({workers} worker(s) x {threads} thread(s))")
    t0 = time.perf_counter()
    if workers == 1:
        _init_worker(threads)
        for i, c in enumerate(todo):
            cid, w = _run_one(runner, config, c, str(out))
            log(f"[{i + 1}/{len(todo)}] {cid} {w:.1f}s")
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            futures = [pool.submit(_run_one, runner, config, c, str(out)) for c in todo]
            for i, f in enumerate(as_completed(futures)):
                cid, w = f.result()
                log(f"[{i + 1}/{len(todo)}] {cid} {w:.1f}s")
    wall = time.perf_counter() - t0
    summary = {"done": len(todo), "skipped": len(cells) - len(todo), "wall_s": wall}
    log(f"grid finished: {summary['done']} cells in {wall:.1f}s")
    return summary
