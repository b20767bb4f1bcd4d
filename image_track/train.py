"""Image-track training: a seeded subset of an image dataset, an EDM-preconditioned U-Net, any loss and
noise-level distribution from ``sims``, trained by the shared trainer ``sims.training.train``.

A run folder holds ``run.json`` (this module's ``ImageRun``, enough to rebuild data and model),
``checkpoint.pt`` and ``log.jsonl``. Multi-GPU: ``torchrun --nproc_per_node=G -m memdiff.cli image train ...``;
``init_distributed`` joins the process group (NCCL on CUDA, gloo on CPU) and the trainer shards each
global batch over the ranks.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from image_track.data import Split, load_images, make_split
from image_track.unet import UNet, UNetConfig, describe
from sims.artifacts import atomic_write_json, move_aside
from sims.methods import AMBIENT, build_method, canonical
from sims.preconditioning import EDMPrecond
from sims.training import CHECKPOINT, LOG, TrainConfig, TrainResult, load_checkpoint, train

RUN_FILE = "run.json"
IMAGE_SHAPES = {"fashion-mnist": (1, 28), "cifar10": (3, 32), "digits": (1, 8)}  # (channels, side)
UNET_PRESETS = {  # cifar10: the layout of EDM's DDPM++ CIFAR-10 network (~60M parameters)
    "fashion-mnist": dict(model_channels=64, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(14,)),
    "cifar10": dict(model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,)),
    "digits": dict(model_channels=32, channel_mult=(1, 2), num_blocks=2, attn_resolutions=(4,)),
}


@dataclass
class ImageRun:
    """Everything that defines an image-track run. ``loss``, ``noise`` and ``sigma_n`` are a method spec of
    the one registry (``sims.methods``): ``noise`` is ``{kind = ..., ...}``, e.g.
    ``{"kind": "ci_t", "interval": [0.0, 0.5]}``; ``sigma_n`` is the ambient corruption level of the
    losses ``ambient`` and ``hybrid_ambient``."""

    dataset: str = "fashion-mnist"
    data_path: str | None = None
    n: int = 300
    data_seed: int = 0
    loss: str = "edm"
    noise: dict[str, Any] = field(default_factory=lambda: {"kind": "edm_lognormal"})
    sigma_n: float | None = None
    sigma_data: float = 0.5
    unet: UNetConfig = field(default_factory=UNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        spec = canonical(self.method)
        self.loss, self.noise = spec["loss"], spec["noise"]
        if self.loss in AMBIENT and not (self.sigma_n is not None and self.sigma_n > 0):
            raise ValueError(f"sigma_n must be > 0 for loss={self.loss!r}, got {self.sigma_n}")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")
        build_method(self.method, self.sigma_data)  # every other check of the spec, once

    @property
    def method(self) -> dict[str, Any]:
        """The run's method spec (``sims.methods``)."""
        return {"loss": self.loss, "noise": self.noise, "sigma_n": self.sigma_n}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImageRun":
        """From ``to_dict``'s output, or a ``run.json`` written before the one registry (``dist``, ``ci_low``,
        ``ci_high`` become ``noise``)."""
        d = dict(d)
        if "dist" in d:
            dist_name, lo, hi = d.pop("dist"), d.pop("ci_low", 0.0), d.pop("ci_high", 0.5)
            d["noise"] = {"kind": dist_name, **({"interval": [lo, hi]} if dist_name == "ci" else {})}
        unet = d["unet"] | {k: tuple(d["unet"][k]) for k in ("channel_mult", "attn_resolutions")}
        return cls(**{**d, "unet": UNetConfig(**unet), "train": TrainConfig(**d["train"])})


def unet_preset(dataset: str, channels: int | None = None, channel_mult: tuple[int, ...] | None = None,
                blocks: int | None = None, attn: tuple[int, ...] | None = None, dropout: float | None = None,
                embedding: str | None = None) -> UNetConfig:
    """The dataset's U-Net preset with any given field overridden."""
    if dataset not in UNET_PRESETS:
        raise ValueError(f"dataset must be one of {tuple(UNET_PRESETS)}, got {dataset!r}")
    c, side = IMAGE_SHAPES[dataset]
    over = {"model_channels": channels, "channel_mult": channel_mult, "num_blocks": blocks,
            "attn_resolutions": attn, "dropout": dropout, "embedding": embedding}
    return UNetConfig(in_channels=c, resolution=side,
                      **{**UNET_PRESETS[dataset], **{k: v for k, v in over.items() if v is not None}})


def init_distributed() -> str:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, else gloo); return the
    device this process should use (``cuda:LOCAL_RANK``, ``cuda`` or ``cpu``)."""
    cuda = torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cuda" if cuda else "cpu"


def build_denoiser(run: ImageRun) -> nn.Module:
    """``EDMPrecond(UNet(run.unet), sigma_data)`` with weights seeded by ``run.train.seed``."""
    torch.manual_seed(run.train.seed)
    return EDMPrecond(UNet(run.unet), sigma_data=run.sigma_data)


def build_loss(run: ImageRun):
    """The loss of the run's method spec (``sims.methods.build_method``)."""
    return build_method(run.method, run.sigma_data).loss


def load_split(run: ImageRun) -> Split:
    """The run's training subset (with its fixed noisy copies for ambient losses) and held-out pool."""
    images, labels = load_images(run.dataset, run.data_path, "train")
    sigma_n = run.sigma_n if run.loss in AMBIENT else None
    return make_split(images, labels, run.n, run.data_seed, sigma_n=sigma_n)


def _check_run_folder(out_dir: str | Path, resume: bool, overwrite: bool) -> list[str]:
    """Keep an earlier run from being clobbered: a folder holding one (``run.json``, ``checkpoint.pt`` or
    ``log.jsonl``) is refused unless ``resume`` (then its checkpoint is read now, so a damaged one fails
    before ``run.json`` is rewritten) or ``overwrite``. Returns the run files to move aside (overwrite)."""
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run in the folder or replace it")
    if resume:
        if (out_dir / CHECKPOINT).exists():
            load_checkpoint(out_dir, mmap=True)
        return []
    held = [name for name in (RUN_FILE, CHECKPOINT, LOG) if (out_dir / name).exists()]
    if held and not overwrite:
        raise ValueError(f"out_dir {out_dir} already holds a run ({', '.join(held)}): continue it with --resume, "
                         f"move it aside with --overwrite, or choose another folder")
    return held


def train_image_model(run: ImageRun, resume: bool = False, verbose: bool = True, overwrite: bool = False) -> TrainResult:
    """Train ``run`` and write ``run.json`` beside the checkpoint (rank 0 only). An earlier run in the folder
    is continued (``resume``), renamed to ``<folder>.old-<timestamp>`` once the data and model are built
    (``overwrite``), or refused before any work (:func:`_check_run_folder`)."""
    out = run.train.out_dir
    held = _check_run_folder(out, resume, overwrite) if out else []
    split = load_split(run)
    if tuple(split.train.shape[1:]) != (run.unet.in_channels, run.unet.resolution, run.unet.resolution):
        raise ValueError(f"unet in_channels/resolution must match the data {tuple(split.train.shape[1:])}, got "
                         f"({run.unet.in_channels}, {run.unet.resolution}, {run.unet.resolution})")
    if run.train.device.startswith("cuda"):  # TF32 matmuls and tuned convolutions for the fp32 parts
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = build_denoiser(run)
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    if rank0 and verbose:
        print(describe(model.net if hasattr(model, "net") else model), flush=True)
    if rank0 and held:
        print(f"moved the earlier run aside to {move_aside(out)}", flush=True)
    if rank0 and out:
        atomic_write_json(Path(out) / RUN_FILE, run.to_dict())
    return train(model, build_loss(run), split.train, run.train, y=split.y, resume=resume)


def load_run(out_dir: str | Path, device: str = "cpu", use_ema: bool = True) -> tuple[ImageRun, nn.Module]:
    """Rebuild a finished run's denoiser from ``out_dir`` (EMA weights by default), in eval mode."""
    out_dir = Path(out_dir)
    if not (out_dir / RUN_FILE).exists():
        raise ValueError(f"out_dir must be an image-track run folder holding {RUN_FILE}, got {out_dir}")
    run = ImageRun.from_dict(json.loads((out_dir / RUN_FILE).read_text()))
    model = build_denoiser(run)
    ckpt = load_checkpoint(out_dir)
    model.load_state_dict(ckpt["ema" if use_ema else "model"])
    return run, model.to(device).eval().requires_grad_(False)
