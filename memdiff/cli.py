"""The ``memdiff`` command: the top of the layers (``theory`` < ``sims`` < ``image_track`` < ``memdiff``).

Each subcommand is a module of this package with ``add_arguments(parser)`` and ``run(args) -> int | None``,
imported only when used (so ``memdiff demo`` does not load the image track). A subcommand's ``--out`` is
checked writable before it starts, so a bad folder fails at once, not after the computation.

:func:`main` raises, for programmatic callers; :func:`entry`, the console command, turns a user error
(``USER_ERRORS``: a ``ValueError`` of validation, bad configs and missing data files, an ``OSError`` such as
a full disk, a diverged training loss) into one line, ``memdiff: error: <message>``, and exit status 2.
``memdiff --debug COMMAND ...`` (or ``MEMDIFF_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from pathlib import Path
from typing import NoReturn

from sims.artifacts import REPO_ROOT, check_writable

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("memdiff.demo", "the main job: theory diagnostics and closed-form generation, with a report"),
    "theory": ("memdiff.theory_run", "per-noise-level memorization diagnostics of closed-form denoisers"),
    "advise": ("memdiff.advise", "sigma_n for ambient training and the CI intervals, from the closed forms"),
    "sim": ("memdiff.sim", "train 1D diffusion models over an experiment grid (resumable)"),
    "image": ("memdiff.image", "image-track training, evaluation and paired theory-vs-trained runs"),
    "figs theory": ("memdiff.figs_theory", "regenerate the theory figures (runs/figs; --publish: paper_figs/)"),
    "figs sim": ("memdiff.figs_sim", "regenerate the 1D-track table and figures (runs/figs; --publish: paper_figs/)"),
    "figs confirm": ("memdiff.figs_confirm", "the advice of memdiff advise against a trained sweep (runs/figs; --publish)"),
    "figs curve": ("memdiff.figs_curve", "memorization against n, trained beside closed forms (runs/figs; --publish)"),
    "figs image": ("memdiff.figs_image", "image grid: figs sim's set, samples, theory vs trained (runs/figs; --publish)"),
    "figs explain": ("memdiff.figs_explain", "r^2 of closed forms against trained nets per sigma (runs/figs; --publish)"),
    "bench theory": ("memdiff.bench_theory", "empirical denoiser and local patch denoiser against their GEMM time"),
    "bench sim": ("memdiff.bench_sim", "1D training steps/s and sampling throughput"),
    "bench image": ("memdiff.bench_image", "image U-Net training and sampling throughput"),
    "notebooks": ("memdiff.notebooks", "execute the jupytext notebooks into .ipynb files"),
}


USER_ERRORS = (ValueError, OSError, FloatingPointError)


def add_output_arguments(parser: argparse.ArgumentParser, draft: Path, published: Path) -> None:
    """A ``memdiff figs`` command's destination: ``--out DIR`` (default ``draft``) or ``--publish`` (the
    committed ``published``), not both."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=draft, help="output folder")
    where.add_argument("--publish", dest="out", action="store_const", const=published,
                       help=f"write into the committed {published.relative_to(REPO_ROOT)}")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: memdiff [--debug] COMMAND [options]   (memdiff COMMAND --help for its options)", "",
             f"  {'--debug':<{width}}  show the traceback of an error (also MEMDIFF_DEBUG=1)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _unknown(argv: list[str]) -> str:
    """The error line for a command that is not in ``COMMANDS``, with the nearest names."""
    group = [k for k in COMMANDS if k.startswith(argv[0] + " ")]  # e.g. 'figs' -> 'figs theory', 'figs sim'
    if group and (len(argv) == 1 or argv[1].startswith("-")):
        word, close = argv[0], group
    else:
        word = " ".join(argv[:2]) if group else argv[0]
        close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"; did you mean {', '.join(repr(k) for k in close[:-1])}{' or ' if len(close) > 1 else ''}{close[-1]!r}?" \
        if close else ""
    return f"memdiff: error: unknown command {word!r}{hint}"


def main(argv: list[str] | None = None) -> int:
    """Run one command line (default ``sys.argv[1:]``) and return its exit status; errors propagate."""
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv[:1] == ["--debug"]:  # read by entry()
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    key = next((k for k in (" ".join(argv[:2]), argv[0]) if k in COMMANDS), None)
    if key is None:
        print(_unknown(argv), _usage(), sep="\n\n", file=sys.stderr)
        return 2
    module_name, text = COMMANDS[key]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"memdiff {key}", description=text,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv[len(key.split()):])
    if getattr(args, "out", None) is not None:
        check_writable(args.out, "--out")
    return int(module.run(args) or 0)


def entry(argv: list[str] | None = None) -> NoReturn:
    """The console command: :func:`main`, with a user error as one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = argv[:1] == ["--debug"] or os.environ.get("MEMDIFF_DEBUG", "0") not in ("", "0")
    try:
        code = main(argv)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"memdiff: error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    entry()
