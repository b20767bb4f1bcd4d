"""A small 1D conv classifier whose penultimate features stand in for Inception / DINOv2 on 1D signals.

No pretrained feature network exists for these data, so the package trains its own on the population
pool (never on a model's training subset alone) and uses ``features(x)`` for Frechet distance and cosine
memorization. Labels: MNIST-1D digits, ECG morphology classes, GMM component indices. Trained classifiers
are cached by a hash of the data and the settings.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sims.artifacts import atomic_write
from sims.labels import check_labelled


def conv_body(in_channels: int, width: int) -> nn.Sequential:
    """Four Conv(5) + GroupNorm(4) + SiLU stages, the middle two of stride 2: ``(B, in_channels, L)`` to
    ``(B, 2 width, ceil(L / 4))``."""
    def stage(a: int, b: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv1d(a, b, 5, stride=stride, padding=2), nn.GroupNorm(4, b), nn.SiLU())

    return nn.Sequential(stage(in_channels, width, 1), stage(width, width, 2), stage(width, 2 * width, 2),
                         stage(2 * width, 2 * width, 1))


def as_3d(x: Tensor, channels: int) -> Tensor:
    """``x`` of shape ``(B, L)`` (one channel) or ``(B, channels, L)`` as ``(B, channels, L)``."""
    x3 = x[:, None, :] if x.ndim == 2 else x
    if x3.ndim != 3 or x3.shape[1] != channels or x3.shape[0] < 1:
        raise ValueError(f"x must have shape (B, L) or (B, {channels}, L), got {tuple(x.shape)}")
    return x3


class Classifier1d(nn.Module):
    """Conv(5) blocks with GroupNorm and SiLU, two stride-2 stages, mean+max pooling, then
    ``features = SiLU(Linear(pool))`` of size ``feature_dim`` and ``logits = Linear(features)``."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32, feature_dim: int = 64):
        super().__init__()
        if num_classes < 2 or in_channels < 1 or width < 4 or width % 4 or feature_dim < 1:
            raise ValueError(f"need num_classes >= 2, in_channels >= 1, width a multiple of 4 >= 4 and feature_dim >= 1, "
                             f"got {num_classes}, {in_channels}, {width}, {feature_dim}")
        self.in_channels = in_channels
        self.body = conv_body(in_channels, width)
        self.proj = nn.Linear(4 * width, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)``."""
        h = self.body(as_3d(x, self.in_channels))
        return F.silu(self.proj(torch.cat([h.mean(-1), h.amax(-1)], dim=1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class ClassifierConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32
    feature_dim: int = 64
    seed: int = 0


def train_classifier(x: Tensor, labels: Tensor, config: ClassifierConfig = ClassifierConfig()) -> Classifier1d:
    """Minimise cross-entropy with Adam (cosine learning-rate decay) on ``(x, labels)``; returns it in eval mode."""
    num_classes = check_labelled(x, labels, (1, 2))
    torch.manual_seed(config.seed)
    clf = Classifier1d(num_classes, 1 if x.ndim == 2 else x.shape[1], config.width, config.feature_dim)
    return fit_minibatches(clf, F.cross_entropy, x.float(), labels.long(), config)


def fit_minibatches(model: nn.Module, loss_fn, x: Tensor, target: Tensor, config) -> nn.Module:
    """Minimise ``loss_fn(model(x[idx]), target[idx])`` over ``config.steps`` batches of ``config.batch_size`` items
    drawn with replacement by a generator seeded with ``config.seed``, with Adam (``config.lr``, cosine decay to 0);
    returns ``model`` in eval mode without gradients. The one training loop of the feature nets."""
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    model.train()
    for _ in range(config.steps):
        idx = torch.randint(x.shape[0], (config.batch_size,), generator=gen)
        loss = loss_fn(model(x[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(clf: Classifier1d, x: Tensor, labels: Tensor, chunk: int = 4096) -> float:
    """Share of ``x`` whose arg-max logit equals its label (streamed in chunks)."""
    check_labelled(x, labels, (1, 2))
    hits = sum(int((clf(x[i:i + chunk].float()).argmax(1) == labels[i:i + chunk]).sum()) for i in range(0, len(x), chunk))
    return hits / x.shape[0]


@torch.no_grad()
def features(clf: nn.Module, x: Tensor, chunk: int = 4096) -> Tensor:
    """``clf.features`` of ``x`` in float64, streamed in chunks: the classifier's penultimate features, or the
    label-free encoder's (``sims.track1d.encoder.AutoEncoder1d``) code."""
    return torch.cat([clf.features(x[i:i + chunk].float()).double() for i in range(0, x.shape[0], chunk)])


def cached_fit(cache_dir: str | os.PathLike, prefix: str, tensors: tuple[Tensor, ...], config: Any,
               build: Callable[[], nn.Module], fit: Callable[[], nn.Module]) -> nn.Module:
    """``fit()`` memoised on disk as ``<cache_dir>/<prefix>_<hash>.pt`` (its state dict), the hash (SHA-1) of the
    shapes and bytes of ``tensors`` (the training data) and of the dataclass ``config``; a cached state dict is
    loaded into ``build()``. Returns the module in eval mode without gradients."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(asdict(config).items())).encode())
    path = Path(cache_dir) / f"{prefix}_{h.hexdigest()[:16]}.pt"
    if path.exists():
        model = build()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        model = fit()
        atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return model.eval().requires_grad_(False)


def cached_classifier(x: Tensor, labels: Tensor, cache_dir: str | os.PathLike,
                      config: ClassifierConfig = ClassifierConfig()) -> Classifier1d:
    """``train_classifier`` memoised on disk (``cached_fit``) by a hash of ``x``, ``labels`` and ``config``."""
    num_classes = check_labelled(x, labels, (1, 2))
    return cached_fit(cache_dir, "classifier1d", (x.float(), labels.long()), config,
                      lambda: Classifier1d(num_classes, 1 if x.ndim == 2 else x.shape[1], config.width, config.feature_dim),
                      lambda: train_classifier(x, labels, config))
