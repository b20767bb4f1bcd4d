"""The image track's grid (``memdiff image grid``): the one grid runner (``sims.grid``) and cell (``sims.cell``) of
both tracks, with image data, the image U-Net (``image_track.unet``) and the image classifier's features
(``image_track.features``).

Config (``configs/image_cpu.toml``; checked by the schema ``IMAGE_GRID``)::

    [run]      seeds (required), workers, threads
    [train]    the U-Net (``UNetConfig`` fields: model_channels, channel_mult, num_blocks, attn_resolutions, dropout,
               embedding) and its training (``sims.training.TrainConfig`` fields: steps, batch_size, lr,
               lr_warmup_steps, ema_decay, ema_halflife_images, ema_rampup, grad_clip)
    [eval]     as the 1D grid's (readout_sigmas required), with classifier_epochs for the feature classifier
    [[datasets]]  name, kind ("digits" | "fashion-mnist" | "cifar10"), n = [...], source, test, pool (required);
                  resolution (the side after average pooling, default the native one), seeds (default run.seeds),
                  methods, data_seed, data_path
    [[methods]]   name and a method spec of ``sims.methods``

Per dataset (made once by ``prepare``): the training split at ``resolution``, permuted by ``data_seed`` and cut
into disjoint source (training candidates), test (held-out reals) and pool; the reference is the Wiener fit of
the pool (``sims.readout.Reference``); the features are the penultimate layer of the dataset's classifier
(``image_track.features.feature_net``: trained on the full training split at that resolution, cached under
``<out>/cache``). EDM's ``sigma_data`` is 0.5, as for ``memdiff image train``. A cell's result is
``sims.cell.train_and_measure``'s plus ``features``, the feature network's name.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from image_track.data import DATASETS, load_images
from image_track.features import ClassifierConfig, FeatureNet, feature_net
from image_track.train import IMAGE_SHAPES, ImageRun
from image_track.unet import UNet, UNetConfig
from sims.cell import Bundle, train_and_measure
from sims.grid import (DATASET, EVAL, POSITIVE, REQUIRED, RUN, TRAIN, Cell, Check, Schema, _int, _number, _one_of,
                       run_grid)
from sims.readout import Reference

UNET_KEYS = ("model_channels", "channel_mult", "num_blocks", "attn_resolutions", "dropout", "embedding")
TRAIN_IMAGE: dict[str, Check] = {
    "model_channels": ((lambda v: _int(4)[0](v) and v % 4 == 0), "a multiple of 4, >= 4"),
    "channel_mult": TRAIN["channel_mult"], "num_blocks": _int(1),
    "attn_resolutions": ((lambda v: isinstance(v, list) and all(_int(1)[0](s) for s in v)),
                         "a list of integers >= 1 (the sides whose blocks get self-attention)"),
    "dropout": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"), "embedding": _one_of("positional", "fourier"),
    **{k: TRAIN[k] for k in ("steps", "batch_size", "lr", "lr_warmup_steps", "ema_decay", "grad_clip")},
    "ema_halflife_images": POSITIVE, "ema_rampup": POSITIVE}
EVAL_IMAGE: dict[str, Check] = {**{k: c for k, c in EVAL.items() if k != "classifier_steps"},
                                "classifier_epochs": _int(1)}
DATASET_IMAGE: dict[str, Check] = {
    **{k: DATASET[k] for k in ("name", "n", "methods", "source", "test", "pool", "data_seed")},
    "kind": _one_of(*DATASETS), "resolution": _int(1), "seeds": RUN["seeds"],
    "data_path": ((lambda v: isinstance(v, str) and v != ""), "a folder or archive path")}


def _check_images(config: dict[str, Any], source: str) -> None:
    """Across keys: a dataset's ``resolution`` divides its native side; CIFAR-10 names its ``data_path``."""
    for d in config["datasets"]:
        side, where = IMAGE_SHAPES[d["kind"]][1], f"{source}, dataset {d['name']!r}"
        if side % d.get("resolution", side):
            raise ValueError(f"{where}: datasets.resolution must divide the native side {side} of {d['kind']} "
                             f"(average pooling), got {d['resolution']}")
        if d["kind"] == "cifar10" and "data_path" not in d:
            raise ValueError(f"{where}: datasets.data_path must be given for kind 'cifar10' (the python archive)")


IMAGE_GRID = Schema(TRAIN_IMAGE, EVAL_IMAGE, DATASET_IMAGE, REQUIRED, _check_images)


def _spec(config: dict[str, Any], name: str) -> str:
    """The dataset entry ``name`` as canonical JSON: the key of its in-process caches."""
    return json.dumps(next(d for d in config["datasets"] if d["name"] == name), sort_keys=True)


@lru_cache(maxsize=8)
def _bundle(spec_json: str) -> Bundle:
    spec = json.loads(spec_json)
    images, _ = load_images(spec["kind"], spec.get("data_path"), "train", spec.get("resolution"))
    sizes = (spec["source"], spec["test"], spec["pool"])
    if sum(sizes) > images.shape[0]:
        raise ValueError(f"dataset {spec['name']!r}: datasets.source + test + pool = {sum(sizes)} must be <= the "
                         f"{images.shape[0]} training images of {spec['kind']}")
    x = images[torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(spec.get("data_seed", 0)))]
    a, b = sizes[0], sizes[0] + sizes[1]
    pool = x[b:b + sizes[2]]
    return Bundle(source=x[:a], test=x[a:b], pool=pool, ref=Reference.of(pool), sigma_data=ImageRun.sigma_data)


@lru_cache(maxsize=8)
def _features(out: str, spec_json: str, epochs: int) -> FeatureNet:
    spec = json.loads(spec_json)
    return feature_net(spec["kind"], spec.get("data_path"), Path(out) / "cache", ClassifierConfig(epochs=epochs),
                       resolution=spec.get("resolution"))


def _epochs(config: dict[str, Any]) -> int:
    return config["eval"].get("classifier_epochs", ClassifierConfig.epochs)


def prepare(config: dict[str, Any], out: str | os.PathLike) -> None:
    """Load every dataset and train (or load) its feature classifier before workers start."""
    for d in config["datasets"]:
        spec = _spec(config, d["name"])
        _bundle(spec)
        _features(str(out), spec, _epochs(config))


def build_net(train_cfg: dict[str, Any], item_shape: tuple[int, ...]) -> nn.Module:
    """The image U-Net ``F(x_in, c_noise)`` of the ``[train]`` table for items ``(C, H, H)``."""
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in train_cfg.items() if k in UNET_KEYS}
    return UNet(UNetConfig(in_channels=item_shape[0], resolution=item_shape[-1], **given))


def run_cell(config: dict[str, Any], cell: Cell, out: Path) -> dict[str, Any]:
    """Train and evaluate one image cell (``sims.cell.train_and_measure``); returns its JSON-ready result."""
    spec = _spec(config, cell.dataset)
    feats = _features(str(out), spec, _epochs(config))
    return {**train_and_measure(config, cell, _bundle(spec), feats, build_net), "features": feats.name}


def run_image_grid(config: dict[str, Any], out: str | os.PathLike, workers: int = 1, threads: int = 1,
                   only: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``sims.grid.run_grid`` with the image schema, ``prepare`` and ``run_cell``."""
    return run_grid(config, out, run_cell, prepare=prepare, workers=workers, threads=threads, only=only, log=log,
                    schema=IMAGE_GRID)
