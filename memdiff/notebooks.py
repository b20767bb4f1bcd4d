"""``memdiff notebooks``: execute the jupytext notebooks (``notebooks/*.py``, percent format) into
executed ``.ipynb`` files under ``--out``, with jupytext (read) and nbclient (run in a fresh kernel)."""
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


def execute_notebook(source: str | os.PathLike, target: str | os.PathLike, *, workdir: str | os.PathLike | None = None,
                     timeout: int = 1800, env: dict[str, str] | None = None) -> Path:
    """Run the jupytext file ``source`` top to bottom in a fresh ``python3`` kernel (working directory
    ``workdir``, default the current one; extra environment ``env``) and write the executed notebook to
    ``target`` atomically. A failing cell raises ``nbclient.exceptions.CellExecutionError``."""
    import jupytext
    import nbclient
    import nbformat

    source = Path(source)
    if not source.is_file():
        raise ValueError(f"source must be an existing notebook file, got {source}")
    nb = jupytext.read(source)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(Path(workdir or Path.cwd()))}})
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
    env = {"MEMDIFF_FAST": "1"} if args.fast else {}
    for src in sources:
        t0 = time.perf_counter()
        out = execute_notebook(src, Path(args.out) / f"{src.stem}.ipynb", timeout=args.timeout, env=env)
        print(f"{src.name}: {time.perf_counter() - t0:.0f} s -> {out}")
    return 0
