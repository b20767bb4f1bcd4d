"""The ``memdiff`` command. Each subcommand lives in the module that owns it, imported only when used.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("theory.demo", "the main job: theory diagnostics and closed-form generation, with a report"),
    "theory": ("theory.cli", "per-noise-level memorization diagnostics of closed-form denoisers"),
    "sim": ("sims.experiments", "train 1D diffusion models over an experiment grid (resumable)"),
    "image": ("image_track.cli", "image-track training, evaluation and paired theory-vs-trained runs"),
    "figs theory": ("theory.figures", "regenerate the theory figures in paper_figs/"),
    "figs sim": ("sims.figures", "regenerate the 1D-track table and figures in paper_figs/"),
    "bench theory": ("theory.bench", "empirical denoiser against a cdist+softmax baseline"),
    "bench sim": ("sims.bench", "1D training steps/s and sampling throughput"),
    "bench image": ("image_track.bench", "image U-Net training and sampling throughput"),
    "notebooks": ("sims.notebooks", "execute the jupytext notebooks into .ipynb files"),
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
