"""The grid runner of both tracks: expand a TOML/JSON experiment grid into cells and run them, resumably.

A grid is the product seeds x datasets (each with its training sizes ``n`` and its methods) x methods.
Each cell (dataset, n, method, seed) is done by a track's ``runner(config, cell, out) -> dict`` (the 1D
track's is ``sims.track1d.cell.run_cell``); its JSON-ready result is written atomically to
``<out>/cells/<cell id>.json`` with ``"schema": 1`` and ``"sha256"``, the SHA-256 of the canonical JSON
(sorted keys, no spaces) of everything else in the file. Cells run in ``workers`` processes with ``threads``
torch threads each.

Nothing lost, nothing silent:

- Resume: a cell counts as done only when its file reads back valid (``read_cell``); a truncated, empty or
  non-JSON file, one of another schema or with a wrong checksum is named in one log line and its cell runs
  again. Files written before schema 1 (no ``schema`` key) are accepted when they hold ``cell``, ``metrics``
  and ``readout``.
- Interruption: SIGINT or SIGTERM makes ``run_grid`` end its worker processes at once, start no queued cell,
  keep the finished cells and raise ``GridInterrupted`` (``memdiff sim`` then exits with code 130); running
  the grid again resumes it. A failing cell starts no queued cell either, but lets the running ones finish.
- Config: ``check_config`` rejects unknown keys at every level (suggesting the nearest known one), missing
  required keys and values of the wrong type or range, naming the file and the dotted key, before any work.

Config layout of the 1D track (see ``configs/sim_grid.toml``; the checks are ``RUN`` and the schema ``GRID_1D``
of the tables ``TRAIN``, ``EVAL``, ``DATASET`` and ``REQUIRED`` below, the methods are checked by
``sims.methods.build_method``; another track passes its own ``Schema``, e.g. ``image_track.grid_cell.IMAGE_GRID``;
a dataset entry whose schema allows ``seeds`` runs those seeds instead of ``run.seeds``)::

    [run]      seeds (required), workers, threads
    [train]    every cell's training: arch, width, depth, channel_mult, attention, steps, batch_size, lr,
               lr_warmup_steps, lr_decay, ema_decay / ema_halflife_images, ...
    [eval]     sampling and readout: readout_sigmas (required), num_samples, sampler, sampler_steps, ...
    [[datasets]]  name, kind ("mnist1d" | "ecg" | "gmm" | "file"), n = [...], source, test, pool (required);
                  methods = "all" or [...], data_seed, gmm = {...}, beats_per_recording, train = {...} (keys of
                  [train] that override it for this dataset's cells: a recipe sweep); for kind "file": path
                  (required) and labels (``sims.track1d.files.read_signals``)
    [[methods]]   name and a method spec of ``sims.methods`` (loss, noise = {kind = ...}, sigma_n, weighting)
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from sims.artifacts import atomic_write_json
from sims.configs import check_keys, read_config_file
from sims.methods import SPEC_KEYS, build_method
from sims.samplers import DETERMINISTIC

DATASET_KINDS = ("mnist1d", "ecg", "gmm", "file")
SECTIONS = ("run", "train", "eval", "datasets", "methods")
TABLES = ("run", "train", "eval")  # merged key by key under ``extends``; the lists replace the base's
CELL_SCHEMA = 1
LEGACY_KEYS = ("cell", "metrics", "readout")  # what a cell file written before schema 1 must hold
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Cell:
    dataset: str
    n: int
    method: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}-n{self.n}-{self.method}-s{self.seed}"


class GridInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped ``run_grid``: its workers are ended, no queued cell was started and the finished
    cells are kept, so running the grid again resumes it. A ``KeyboardInterrupt``, so ``except Exception`` lets
    it through."""


# ---- config schema: per section, key -> (check, what the value must be) -----------------------------------
Check = tuple[Callable[[Any], bool], str]


def _int(lo: int) -> Check:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo), f"an integer >= {lo}"


def _number(ok: Callable[[float], bool], what: str) -> Check:
    """A finite int or float (TOML writes ``1`` for ``1.0``) for which ``ok`` holds."""
    return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v)), what


def _one_of(*names: str) -> Check:
    return (lambda v: isinstance(v, str) and v in names), f"one of {list(names)}"


def _list_of(item: Check) -> Check:
    ok, what = item
    return (lambda v: isinstance(v, list) and len(v) > 0 and all(ok(x) for x in v)), f"a non-empty list, each {what}"


POSITIVE = _number(lambda v: v > 0, "a finite number > 0")
BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
# names make cell ids (``<dataset>-n<n>-<method>-s<seed>``) and file names: no '-', '/' or spaces
NAME: Check = (lambda v: isinstance(v, str) and re.fullmatch(r"[\w.]+", v) is not None,
               "a non-empty name of letters, digits, '_' and '.'")
RUN: dict[str, Check] = {"seeds": _list_of(_int(0)), "workers": _int(1), "threads": _int(1)}
TRAIN: dict[str, Check] = {  # read by sims.track1d.cell.build_net and sims.cell.train_net (TrainConfig)
    "arch": _one_of("mlp", "unet"), "width": _int(1), "depth": _int(0), "channel_mult": _list_of(_int(1)),
    "attention": BOOL, "steps": _int(1), "batch_size": _int(1),
    "lr": POSITIVE, "lr_warmup_steps": _int(0), "lr_decay": _one_of("none", "cosine"),
    "ema_decay": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"), "ema_halflife_images": POSITIVE,
    "ema_rampup": POSITIVE, "grad_clip": POSITIVE}
EVAL: dict[str, Check] = {
    "num_samples": _int(2), "sampler": _one_of(*sorted(DETERMINISTIC)), "sampler_steps": _int(1),
    "sigma_min": POSITIVE, "sigma_max": POSITIVE, "readout_sigmas": _list_of(POSITIVE), "readout_items": _int(1),
    "classifier_steps": _int(1), "closed_form_samples": _int(0), "explain": BOOL,
    "preview_samples": _int(0),  # > 0: the result's "preview", the first k samples beside their nearest train items
    "explain_patches": _list_of(((lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1 and v % 2 == 1),
                                 "an odd integer >= 1 (a patch size of the local closed forms, §6.10)")),
    "explain_local_items": _int(2),  # the local closed forms use at most this many training items (§6.10)
    "two_net": ((lambda v: isinstance(v, bool) or (isinstance(v, list) and all(isinstance(m, str) for m in v))),
                "true, false or a list of method names (the methods whose cells run the two-net test)"),
    "equivalence_margin": _number(lambda v: v > 0, "a finite number > 0 (a fraction of the baseline's mean)"),
    # the C1 and C6 rule options (memdiff.claims.ReadoutRules, docs/THEORY.md §7.7), fixed before the grid runs
    "c6_onset": _one_of("onset", "band_top"),
    "c1_min_gap": _number(lambda v: v > 1, "a finite number > 1 (C1's floor on the seed-mean G_low)")}
DATASET: dict[str, Check] = {
    "name": NAME, "kind": _one_of(*DATASET_KINDS), "n": _list_of(_int(2)),
    "methods": (lambda v: v == "all" or (isinstance(v, list) and len(v) > 0 and all(isinstance(m, str) for m in v)),
                '"all" or a non-empty list of method names'),
    "source": _int(2), "test": _int(2), "pool": _int(2), "data_seed": _int(0),
    "gmm": (lambda v: isinstance(v, dict), "a table of sims.track1d.data.gaussian_mixture arguments"),
    "beats_per_recording": _int(1),
    "path": (lambda v: isinstance(v, str) and v != "",
             "a path to a .npy, .npz, .csv, .tsv or .ts file of signals (kind 'file'; relative to the working folder)"),
    "labels": (lambda v: isinstance(v, str) and v != "",
               "the name of the label column (.csv) or array (.npz) of the file (kind 'file')"),
    "train": (lambda v: isinstance(v, dict), "a table of [train] keys that override [train] for this dataset's cells")}
REQUIRED = {"run": ("seeds",), "eval": ("readout_sigmas",), "datasets": ("name", "kind", "n", "source", "test", "pool")}


@dataclass(frozen=True)
class Schema:
    """What a track's grid config may hold besides ``[run]`` and ``[[methods]]``: the checks of its ``[train]`` and
    ``[eval]`` keys and ``[[datasets]]`` entries, the required keys per section, and ``check(config, source)``, the
    track's checks across keys (run last; a ``ValueError`` naming ``source`` and the dotted key)."""

    train: dict[str, Check]
    eval: dict[str, Check]
    dataset: dict[str, Check]
    required: dict[str, tuple[str, ...]]
    check: Callable[[dict[str, Any], str], None] | None = None


def _check_files(config: dict[str, Any], source: str) -> None:
    """``datasets.path`` given for every dataset of kind ``"file"``; ``path`` and ``labels`` for no other kind."""
    for d in config["datasets"]:
        where = f"{source}, dataset {d['name']!r}"
        if d["kind"] == "file" and "path" not in d:
            raise ValueError(f"{where}: datasets.path must be given for kind 'file' ({DATASET['path'][1]})")
        if d["kind"] != "file" and ("path" in d or "labels" in d):
            raise ValueError(f"{where}: datasets.path and datasets.labels apply to kind 'file' only, got kind "
                             f"{d['kind']!r}")


GRID_1D = Schema(TRAIN, EVAL, DATASET, REQUIRED, _check_files)  # the 1D track's (sims.track1d.cell)


def load_config(path: str | os.PathLike, schema: Schema = GRID_1D) -> dict[str, Any]:
    """Read a grid config (``.toml`` or ``.json``) and check it against ``schema`` (``check_config``), naming this
    file in errors.

    ``extends = "other.toml"`` (relative to this file) starts from that config, itself loaded and checked first:
    this file's ``[run]``, ``[train]`` and ``[eval]`` keys override the base's one by one, and its ``datasets``
    or ``methods`` lists, where given, replace the base's."""
    path = Path(path)
    config = read_config_file(path)
    extends = config.pop("extends", None) if isinstance(config, dict) else None
    if extends is not None:
        if not isinstance(extends, str):
            raise ValueError(f"{path}: extends must be a config file name relative to this file, got {extends!r}")
        base = load_config(path.parent / extends, schema)
        config = {**base, **{k: {**base[k], **v} if k in TABLES and isinstance(v, dict) else v
                             for k, v in config.items()}}
    check_config(config, str(path), schema)
    return config


def check_config(config: Any, source: str = "config", schema: Schema = GRID_1D) -> None:
    """Raise ``ValueError`` naming ``source`` (the file) and the dotted key when the grid is malformed for ``schema``
    (the track's tables; default the 1D track's): an unknown key (with the nearest known one), a missing section or
    required key, a value of the wrong type or range, a method spec ``sims.methods.build_method`` rejects, a dataset
    naming an unknown method or an ``n`` larger than its ``source``, or whatever ``schema.check`` rejects."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: a grid config must be a table of sections {list(SECTIONS)}")
    check_keys(config, SECTIONS, source)
    for key in SECTIONS:
        if key not in config:
            raise ValueError(f"{source}: config must have a [{key}] section")
    _check_section(config["run"], RUN, source, "run.", schema.required)
    methods = _entries(config, "methods", source)
    names = [m.get("name") for m in methods]
    if not all(NAME[0](m) for m in names) or len(set(names)) != len(names):
        raise ValueError(f"{source}: methods must have unique names, each {NAME[1]}, got {names!r}")
    for m in methods:
        check_keys(m, SPEC_KEYS, f"{source}, method {m['name']!r}", "methods.")
        try:
            build_method(m)
        except ValueError as e:
            raise ValueError(f"{source}: methods entry {m['name']!r}: {e}") from None
    datasets = _entries(config, "datasets", source)
    two_net = config["eval"].get("two_net", False)
    if isinstance(two_net, list) and (unknown := sorted(set(two_net) - set(names))):
        raise ValueError(f"{source}: eval.two_net must name configured methods, unknown: {unknown}")
    sets = 2 if two_net else 1  # the two-net test draws two disjoint subsets
    for d in datasets:
        where = f"{source}, dataset {d.get('name')!r}"
        _check_section(d, schema.dataset, where, "datasets.", schema.required)
        if "train" in d:
            _check_section(d["train"], schema.train, where, "datasets.train.", {})
        unknown = [] if d.get("methods", "all") == "all" else sorted(set(d["methods"]) - set(names))
        if unknown:
            raise ValueError(f"{where}: datasets.methods must name configured methods, unknown: {unknown}")
        if sets * max(d["n"]) > d["source"]:
            bound = "datasets.source" + (" / 2 (eval.two_net draws two disjoint subsets)" if sets == 2 else "")
            raise ValueError(f"{where}: datasets.n must be <= {bound} = {d['source'] // sets} (the subsets are drawn "
                             f"from the source), got {d['n']}")
    if len({d["name"] for d in datasets}) != len(datasets):
        raise ValueError(f"{source}: datasets must have unique names, got {[d['name'] for d in datasets]!r}")
    _check_section(config["train"], schema.train, source, "train.", schema.required)
    _check_section(config["eval"], schema.eval, source, "eval.", schema.required)
    if schema.check is not None:
        schema.check(config, source)


def train_table(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The ``[train]`` table of ``dataset``'s cells: ``[train]`` with the dataset entry's ``train`` keys over it."""
    spec = next(d for d in config["datasets"] if d["name"] == dataset)
    return {**config["train"], **spec.get("train", {})}


def runs_two_net(config: dict[str, Any], method: str) -> bool:
    """Whether cells of ``method`` train the two-net test's second net (``eval.two_net``: true for every method,
    or the list of methods that do)."""
    two_net = config["eval"].get("two_net", False)
    return method in two_net if isinstance(two_net, list) else bool(two_net)


def _entries(config: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    entries = config[key]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{source}: {key} must be a non-empty list of tables ([[{key}]]), got {entries!r}")
    return entries


def _check_section(section: Any, schema: dict[str, Check], source: str, where: str,
                   required: dict[str, tuple[str, ...]]) -> None:
    """Every key of ``section`` known to ``schema``, its value passing the check, the ``required`` keys there."""
    if not isinstance(section, dict):
        raise ValueError(f"{source}: {where.rstrip('.')} must be a table, got {section!r}")
    check_keys(section, schema, source, where)
    for key, value in section.items():
        ok, what = schema[key]
        if not ok(value):
            raise ValueError(f"{source}: {where}{key} must be {what}, got {value!r}")
    for key in required.get(where.rstrip("."), ()):
        if key not in section:
            raise ValueError(f"{source}: {where}{key} must be given ({schema[key][1]})")


def expand_grid(config: dict[str, Any], only: str | None = None) -> list[Cell]:
    """All cells, seed-major (a killed grid leaves whole seeds done), filtered by ``only`` (a glob over cell ids, or
    several separated by commas: a cell matching any of them is kept, in grid order); a dataset entry
    with ``seeds`` runs those instead of ``run.seeds``."""
    methods = [m["name"] for m in config["methods"]]
    seeds = {d["name"]: d.get("seeds", config["run"]["seeds"]) for d in config["datasets"]}
    cells = [Cell(d["name"], n, m, seed)
             for seed in dict.fromkeys(s for d in config["datasets"] for s in seeds[d["name"]])
             for d in config["datasets"] if seed in seeds[d["name"]]
             for n in d["n"]
             for m in (methods if d.get("methods", "all") == "all" else d["methods"])]
    globs = None if only is None else only.split(",")
    return [c for c in cells if globs is None or any(fnmatch(c.id, g) for g in globs)]


# ---- cell files -----------------------------------------------------------------------------------------
def cell_path(out: str | os.PathLike, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.id}.json"


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _seal(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the schema version and the checksum of its JSON form (as it will read back: tuples as
    lists, keys as strings)."""
    payload = json.loads(json.dumps({**result, "schema": CELL_SCHEMA}))
    return {**payload, "sha256": _digest(payload)}


def read_cell(path: str | os.PathLike) -> dict[str, Any]:
    """The result in a cell file, checked (module docstring); ``ValueError`` naming the file and what is wrong
    when it is empty, not JSON (e.g. truncated), not a JSON object, of another schema, has a wrong checksum,
    or (without a schema: written before schema 1) lacks one of ``cell``, ``metrics``, ``readout``."""
    path = Path(path)
    text = path.read_text(errors="replace")
    try:
        result = json.loads(text)
    except ValueError as e:
        raise ValueError(f"cell file {path} is {'empty' if not text.strip() else f'not valid JSON ({e})'}") from None
    if not isinstance(result, dict):
        raise ValueError(f"cell file {path} must hold a JSON object, got {type(result).__name__}")
    if "schema" not in result:
        missing = [k for k in LEGACY_KEYS if k not in result]
        if missing:
            raise ValueError(f"cell file {path} has no schema and lacks {missing}")
    elif result["schema"] != CELL_SCHEMA:
        raise ValueError(f"cell file {path} has schema {result['schema']!r}, expected {CELL_SCHEMA}")
    elif result.get("sha256") != _digest({k: v for k, v in result.items() if k != "sha256"}):
        raise ValueError(f"cell file {path} does not match its sha256 checksum (edited or corrupted)")
    return result


def pending(out: str | os.PathLike, cells: list[Cell], log: Callable[[str], None] = print) -> list[Cell]:
    """The cells without a valid result file in ``out``; each invalid file is logged in one line and its cell
    counts as not done (running it replaces the file)."""
    todo = []
    for c in cells:
        path = cell_path(out, c)
        if path.exists():
            try:
                read_cell(path)
                continue
            except ValueError as e:
                log(f"{e}; counted as not done, so the grid runs that cell again")
        todo.append(c)
    return todo


# ---- running ----------------------------------------------------------------------------------------------
def _run_one(runner: Callable[..., dict[str, Any]], config: dict[str, Any], cell: Cell, out: str) -> tuple[str, float]:
    """Run one cell and write its result file; an error names the cell (a user error's one-line message starts with
    ``cell <id>:``, any other error carries the cell as a note)."""
    t0 = time.perf_counter()
    try:
        result = runner(config, cell, Path(out))
    except (ValueError, FloatingPointError) as e:
        raise type(e)(f"cell {cell.id}: {e}") from e
    except Exception as e:
        e.add_note(f"in grid cell {cell.id}")
        raise
    result["wall_s"] = time.perf_counter() - t0
    atomic_write_json(cell_path(out, cell), _seal(result))
    return cell.id, result["wall_s"]


def _init_worker(threads: int) -> None:
    """A worker ignores SIGINT (a terminal's Ctrl-C reaches the whole process group): the main process ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While the grid runs, SIGINT and SIGTERM raise ``GridInterrupted`` in the main thread (SIGTERM would
    otherwise kill this process and orphan its workers); further signals are ignored during the clean-up, which
    is bounded, and the previous handlers come back afterwards. Elsewhere than the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise GridInterrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes, cancel its queued cells and wait (a few seconds at most) for the processes
    to go. ``pool._processes``: Python < 3.14 has no public handle on the workers."""
    processes = list((pool._processes or {}).values())
    for p in processes:
        p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()


def _run_pool(runner: Callable[..., dict[str, Any]], config: dict[str, Any], todo: list[Cell], out: str,
              workers: int, threads: int, record: Callable[[str, float], None]) -> None:
    """Run ``todo`` in ``workers`` spawned processes. A failed cell starts no queued cell and lets the running ones
    finish; an interrupt (also one during that wait) ends the workers at once."""
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads,))
    try:
        try:
            for f in as_completed([pool.submit(_run_one, runner, config, c, out) for c in todo]):
                record(*f.result())
        except Exception:
            pool.shutdown(cancel_futures=True)
            raise
    except KeyboardInterrupt:
        _end_workers(pool)
        raise
    pool.shutdown()


def run_grid(config: dict[str, Any], out: str | os.PathLike, runner: Callable[..., dict[str, Any]], *,
             prepare: Callable[[dict[str, Any], Path], None] | None = None, workers: int = 1, threads: int = 1,
             only: str | None = None, log: Callable[[str], None] = print, schema: Schema = GRID_1D) -> dict[str, Any]:
    """Check ``config`` against ``schema`` (the track's, default the 1D track's), then run every cell without a valid
    result file; returns ``{"done", "skipped", "wall_s"}``.

    ``runner(config, cell, out) -> dict`` does one cell and returns a JSON-ready dict (a module-level function, so
    that worker processes can import it); ``prepare(config, out)``, when given, makes the shared inputs (data
    pools, feature classifiers) once before any worker starts, of the datasets that have cells to run: it gets
    ``config`` with its ``datasets`` list narrowed to those (nothing else changed) and is not called when no cell
    is pending. SIGINT or SIGTERM raise ``GridInterrupted`` (module docstring).
    """
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got {workers}, {threads}")
    check_config(config, schema=schema)
    out = Path(out)
    cells = expand_grid(config, only)
    todo = pending(out, cells, log)
    atomic_write_json(out / "grid.json", {"config": config, "cells": [c.id for c in cells]})
    log(f"{len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run "
        f"({workers} worker(s) x {threads} thread(s))")
    finished: list[str] = []

    def record(cid: str, wall: float) -> None:
        finished.append(cid)
        log(f"[{len(finished)}/{len(todo)}] {cid} {wall:.1f}s")

    t0 = time.perf_counter()
    with _signals_interrupt():
        try:
            if prepare is not None and todo:
                needed = {c.dataset for c in todo}
                prepare({**config, "datasets": [d for d in config["datasets"] if d["name"] in needed]}, out)
            if workers == 1:
                torch.set_num_threads(threads)
                for c in todo:
                    record(*_run_one(runner, config, c, str(out)))
            else:
                _run_pool(runner, config, todo, str(out), workers, threads, record)
        except GridInterrupted as e:
            raise GridInterrupted(f"{e} after {len(finished)} of {len(todo)} cells; the finished cells are kept "
                                  f"in {out / 'cells'}") from None
    wall = time.perf_counter() - t0
    summary = {"done": len(todo), "skipped": len(cells) - len(todo), "wall_s": wall}
    log(f"grid finished: {summary['done']} cells in {wall:.1f}s")
    return summary
