"""``memdiff notebooks``: execute the jupytext notebooks (``notebooks/*.py``, percent format) into
executed ``.ipynb`` files under ``--out``, with jupytext (read) and nbclient (run in a fresh kernel).

Progress: one line per code cell on stdout, printed as the cell starts (notebook, ``[k/K]``, the cell's first
line) and completed with its run time. Each kernel runs in the ``--out`` folder, so whatever a notebook
writes (the smoke grid of notebooks 03/04 in fast mode, ``runs/notebooks/sim_fast``) lands there and nowhere
else; ``MEMDIFF_SIM_RUNS``, the grid the notebooks read, is resolved first against the folder the command
was started in."""
from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path

from sims.artifacts import REPO_ROOT, atomic_write

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@contextmanager
def _environment(values: dict[str, str]):
    """Temporarily set environment variables (the kernel inherits this process's environment)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _CellProgress:
    """nbclient hooks that print one line per executed (non-empty code) cell: ``name [k/K] first line ... 12.3 s``."""

    def __init__(self, name: str, cells: list) -> None:
        self.name = name
        self.code = [i for i, c in enumerate(cells) if c.cell_type == "code" and c.source.strip()]
        self.t0 = 0.0

    def start(self, cell, cell_index: int) -> None:
        if cell_index not in self.code:  # nbclient announces every cell, and skips these
            return
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        print(f"{self.name} [{self.code.index(cell_index) + 1}/{len(self.code)}] {first[:60]} ...", end="", flush=True)
        self.t0 = time.perf_counter()

    def executed(self, cell, cell_index: int, execute_reply: dict) -> None:
        status = execute_reply["content"]["status"]
        print(f" {time.perf_counter() - self.t0:.1f} s" + ("" if status == "ok" else f" ({status})"), flush=True)


def execute_notebook(source: str | os.PathLike, target: str | os.PathLike, *, workdir: str | os.PathLike | None = None,
                     timeout: int = 1800, env: dict[str, str] | None = None) -> Path:
    """Run the jupytext file ``source`` top to bottom in a fresh ``python3`` kernel (working directory
    ``workdir``, default the current one; extra environment ``env``), printing one line per code cell, and
    write the executed notebook to ``target`` atomically. A failing cell raises
    ``nbclient.exceptions.CellExecutionError``."""
    import jupytext
    import nbclient
    import nbformat

    source = Path(source)
    if not source.is_file():
        raise ValueError(f"source must be an existing notebook file, got {source}")
    nb = jupytext.read(source)
    progress = _CellProgress(source.name, nb.cells)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(Path(workdir or Path.cwd()))}},
                                     on_cell_start=progress.start, on_cell_executed=progress.executed)
    with _environment({"MPLBACKEND": "module://matplotlib_inline.backend_inline", **(env or {})}):
        client.execute()
    return atomic_write(target, lambda tmp: nbformat.write(nb, tmp))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/notebooks", help="folder for the executed .ipynb files")
    parser.add_argument("--only", default="*", help="glob over notebook names, e.g. '01_*'")
    parser.add_argument("--fast", action="store_true", help="MEMDIFF_FAST=1: the notebooks' small configurations")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")


def run(args: argparse.Namespace) -> int:
    sources = sorted(NOTEBOOK_DIR.glob(f"{args.only}.py")) if not args.only.endswith(".py") \
        else sorted(NOTEBOOK_DIR.glob(args.only))
    if not sources:
        raise ValueError(f"--only matched no notebook in {NOTEBOOK_DIR}: {args.only!r}")
    # the kernels run in --out: a relative grid folder (notebook_results' default) is resolved here first
    env = {"MEMDIFF_SIM_RUNS": str(Path(os.environ.get("MEMDIFF_SIM_RUNS", "runs/sim_grid")).resolve()),
           "MEMDIFF_NOTEBOOK_OUT": ".", **({"MEMDIFF_FAST": "1"} if args.fast else {})}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        t0 = time.perf_counter()
        out = execute_notebook(src, out_dir / f"{src.stem}.ipynb", workdir=out_dir, timeout=args.timeout, env=env)
        print(f"{src.name}: {time.perf_counter() - t0:.0f} s -> {out}")
    return 0
