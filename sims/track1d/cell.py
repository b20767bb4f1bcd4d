"""The 1D track's grid cells: its data, feature classifier and nets, for the shared cell of ``sims.cell``.

Per dataset (prepared once, cached under ``<out>/cache``): a source of training candidates, a held-out
test set, a population pool with labels, the non-memorizing reference (``sims.readout.Reference``: the
exact GMM denoiser for the Gaussian mixture, the Wiener fit of the pool otherwise; docs/THEORY.md §3.7)
and a feature classifier trained on the pool (``sims.track1d.classifier``). Per cell: ``sims.cell.train_and_measure``
(training subset, training, samples, memorization, alignment, readout, two-net test, sigma_C) with the net named by
``train.arch``.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sims.artifacts import atomic_write
from sims.cell import Bundle, train_and_measure
from sims.grid import Cell
from sims.readout import Reference
from sims.track1d.classifier import ClassifierConfig, cached_classifier, features
from sims.track1d.data import gaussian_mixture, mnist1d
from sims.track1d.ecg import simulate_beats
from sims.track1d.encoder import EncoderConfig, cached_encoder
from sims.track1d.files import file_digest, read_signals
from sims.track1d.mlp import MLP1d
from sims.track1d.unet import UNet1d
from theory import GMMDenoiser


# ---- data -----------------------------------------------------------------------------------------------
def _make_data(spec: dict[str, Any], cache: Path) -> dict[str, Tensor | None]:
    """Disjoint source / test / pool draws of one dataset kind (labels for the pool; ``None`` for a file without
    labels). A ``file`` dataset draws them from the items of ``spec["path"]`` (``sims.track1d.files``), which must
    hold at least source + test + pool."""
    kind, sizes = spec["kind"], (spec["source"], spec["test"], spec["pool"])
    total = sum(sizes)
    if kind == "mnist1d":
        x, y = mnist1d(total, seed=spec.get("data_seed", 0))
        extra: dict[str, Tensor] = {}
    elif kind == "ecg":
        x, y = simulate_beats(total, seed=spec.get("data_seed", 0), beats_per_recording=spec.get("beats_per_recording", 10),
                              cache_dir=cache)
        extra = {}
    elif kind == "file":
        x, y = read_signals(spec["path"], spec.get("labels"))
        if x.shape[0] < total:
            raise ValueError(f"dataset {spec['name']!r}: source + test + pool = {total} items, but data file "
                             f"{spec['path']!r} holds {x.shape[0]}")
        extra = {}
    else:
        gmm = gaussian_mixture(**spec.get("gmm", {}), seed=spec.get("data_seed", 0))
        x, y = gmm.sample(total, generator=torch.Generator().manual_seed(spec.get("data_seed", 0) + 1), return_labels=True)
        extra = {"gmm_weights": gmm.weights, "gmm_means": gmm.means, "gmm_covs": gmm.covs}
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(12345))[:total]
    x = x[perm].float()
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"source": x[:a], "test": x[a:b], "pool": x[b:], "pool_labels": None if y is None else y[perm][b:].long(),
            **extra}


def _data_path(out: Path, spec: dict[str, Any]) -> Path:
    """Keyed by what the draws depend on, so dataset entries that differ only in ``n`` or methods share them; a
    ``file`` dataset's key adds the file's absolute path, its labels key and the SHA-256 of its bytes, so an
    edited file is read again."""
    keys = ("kind", "source", "test", "pool", "data_seed", "gmm", "beats_per_recording")
    key = {k: spec.get(k) for k in keys}
    if spec["kind"] == "file":
        key.update(path=str(Path(spec["path"]).resolve()), labels=spec.get("labels"), sha256=file_digest(spec["path"]))
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return out / "cache" / f"data_{spec['kind']}_{digest}.pt"


def prepare(config: dict[str, Any], out: str | Path) -> None:
    """Make (or reuse) the cached draws, reference and feature net of each dataset in ``config`` before workers
    start (``sims.grid.run_grid`` passes only the datasets that have cells to run)."""
    out, frozen = str(Path(out)), _freeze(config)
    for spec in config["datasets"]:
        _bundle(out, spec["name"], frozen)
        _classifier(out, spec["name"], frozen)


def _freeze(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@lru_cache(maxsize=8)
def _data(out: str, name: str, frozen: str) -> dict[str, Tensor]:
    """The dataset's cached draws (made and cached on first use)."""
    config = json.loads(frozen)
    spec = next(d for d in config["datasets"] if d["name"] == name)
    path = _data_path(Path(out), spec)
    if path.exists():
        return torch.load(path, weights_only=True)
    data = _make_data(spec, Path(out) / "cache")
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    return data


@lru_cache(maxsize=8)
def _bundle(out: str, name: str, frozen: str) -> Bundle:
    data = _data(out, name, frozen)
    gmm = next(d for d in json.loads(frozen)["datasets"] if d["name"] == name)["kind"] == "gmm"
    exact = GMMDenoiser(data["gmm_weights"], data["gmm_means"], data["gmm_covs"]) if gmm else None
    return Bundle(source=data["source"], test=data["test"], pool=data["pool"], ref=Reference.of(data["pool"], exact),
                  sigma_data=float(data["pool"].std()))


@lru_cache(maxsize=8)
def _classifier(out: str, name: str, frozen: str) -> nn.Module:
    """The feature net of FD and the cosine metric, trained on the pool for ``eval.classifier_steps``: the
    classifier of the pool's labels, or, where the pool has no labels or only one class, the label-free
    autoencoder (``sims.track1d.encoder``)."""
    config = json.loads(frozen)
    data = _data(out, name, frozen)
    steps, labels = config["eval"].get("classifier_steps", 1500), data["pool_labels"]
    if labels is None or labels.unique().numel() < 2:
        return cached_encoder(data["pool"], Path(out) / "cache", EncoderConfig(steps=steps))
    return cached_classifier(data["pool"], labels, Path(out) / "cache", ClassifierConfig(steps=steps))


# ---- model and method -----------------------------------------------------------------------------------
def build_net(train_cfg: dict[str, Any], item_shape: tuple[int, ...]) -> nn.Module:
    """The raw net ``F(x_in, c_noise)`` named by ``train.arch``."""
    arch = train_cfg.get("arch", "mlp")
    if arch == "mlp":
        return MLP1d(item_shape, width=train_cfg.get("width", 256), depth=train_cfg.get("depth", 2))
    if arch == "unet":
        ch = train_cfg.get("width", 16)
        return UNet1d(in_channels=1 if len(item_shape) == 1 else item_shape[0], channels=ch,
                      channel_mult=tuple(train_cfg.get("channel_mult", (1, 2))), groups=min(8, ch // 2),
                      attention=train_cfg.get("attention", False))
    raise ValueError(f"train.arch must be 'mlp' or 'unet', got {arch!r}")


def run_cell(config: dict[str, Any], cell: Cell, out: Path) -> dict[str, Any]:
    """Train and evaluate one cell (``sims.cell.train_and_measure``); returns its JSON-ready result (the caller
    writes it)."""
    frozen = _freeze(config)
    clf = _classifier(str(out), cell.dataset, frozen)
    return train_and_measure(config, cell, _bundle(str(out), cell.dataset, frozen), lambda x: features(clf, x),
                             build_net)
