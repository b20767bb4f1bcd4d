"""The ``memdiff`` command: the top of the layers (``theory`` < ``sims`` < ``image_track`` < ``memdiff``).

Each subcommand is a module of this package with ``add_arguments(parser)`` and ``run(args) -> int | None``,
imported only when used (so ``memdiff demo`` does not load the image track).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("memdiff.demo", "the main job: theory diagnostics and closed-form generation, with a report"),
    "theory": ("memdiff.theory_run", "per-noise-level memorization diagnostics of closed-form denoisers"),
    "sim": ("memdiff.sim", "train 1D diffusion models over an experiment grid (resumable)"),
    "image": ("memdiff.image", "image-track training, evaluation and paired theory-vs-trained runs"),
    "figs theory": ("memdiff.figs_theory", "regenerate the theory figures in paper_figs/"),
    "figs sim": ("memdiff.figs_sim", "regenerate the 1D-track table and figures in paper_figs/"),
    "bench theory": ("memdiff.bench_theory", "empirical denoiser against a cdist+softmax baseline"),
    "bench sim": ("memdiff.bench_sim", "1D training steps/s and sampling throughput"),
    "bench image": ("memdiff.bench_image", "image U-Net training and sampling throughput"),
    "notebooks": ("memdiff.notebooks", "execute the jupytext notebooks into .ipynb files"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: memdiff COMMAND [options]   (memdiff COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for words in (2, 1):
        key = " ".join(argv[:words])
        if key in COMMANDS:
            break
    else:
        print(_usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module_name, text = COMMANDS[key]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"memdiff {key}", description=text,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser)
    result = module.run(parser.parse_args(argv[len(key.split()):]))
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
