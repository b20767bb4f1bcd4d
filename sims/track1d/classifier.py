"""A small 1D conv classifier whose penultimate features stand in for Inception / DINOv2 on 1D signals.

No pretrained feature network exists for these data, so the package trains its own on the population
pool (never on a model's training subset alone) and uses ``features(x)`` for Frechet distance and cosine
memorization. Labels: MNIST-1D digits, ECG morphology classes, GMM component indices. Trained classifiers
are cached by a hash of the data and the settings.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sims.artifacts import atomic_write
from sims.labels import check_labelled


class Classifier1d(nn.Module):
    """Conv(5) blocks with GroupNorm and SiLU, two stride-2 stages, mean+max pooling, then
    ``features = SiLU(Linear(pool))`` of size ``feature_dim`` and ``logits = Linear(features)``."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32, feature_dim: int = 64):
        super().__init__()
        if num_classes < 2 or in_channels < 1 or width < 4 or width % 4 or feature_dim < 1:
            raise ValueError(f"need num_classes >= 2, in_channels >= 1, width a multiple of 4 >= 4 and feature_dim >= 1, "
                             f"got {num_classes}, {in_channels}, {width}, {feature_dim}")
        self.in_channels = in_channels

        def stage(a: int, b: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(a, b, 5, stride=stride, padding=2), nn.GroupNorm(4, b), nn.SiLU())

        self.body = nn.Sequential(stage(in_channels, width, 1), stage(width, width, 2), stage(width, 2 * width, 2),
                                  stage(2 * width, 2 * width, 1))
        self.proj = nn.Linear(4 * width, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def _as_3d(self, x: Tensor) -> Tensor:
        x3 = x[:, None, :] if x.ndim == 2 else x
        if x3.ndim != 3 or x3.shape[1] != self.in_channels or x3.shape[0] < 1:
            raise ValueError(f"x must have shape (B, L) or (B, {self.in_channels}, L), got {tuple(x.shape)}")
        return x3

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)``."""
        h = self.body(self._as_3d(x))
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
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    clf = Classifier1d(num_classes, 1 if x.ndim == 2 else x.shape[1], config.width, config.feature_dim)
    opt = torch.optim.Adam(clf.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    x, labels = x.float(), labels.long()
    clf.train()
    for _ in range(config.steps):
        idx = torch.randint(x.shape[0], (config.batch_size,), generator=gen)
        loss = F.cross_entropy(clf(x[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return clf.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(clf: Classifier1d, x: Tensor, labels: Tensor, chunk: int = 4096) -> float:
    """Share of ``x`` whose arg-max logit equals its label (streamed in chunks)."""
    check_labelled(x, labels, (1, 2))
    hits = sum(int((clf(x[i:i + chunk].float()).argmax(1) == labels[i:i + chunk]).sum()) for i in range(0, len(x), chunk))
    return hits / x.shape[0]


@torch.no_grad()
def features(clf: Classifier1d, x: Tensor, chunk: int = 4096) -> Tensor:
    """Penultimate features of ``x`` in float64, streamed in chunks."""
    return torch.cat([clf.features(x[i:i + chunk].float()).double() for i in range(0, x.shape[0], chunk)])


def cached_classifier(x: Tensor, labels: Tensor, cache_dir: str | os.PathLike,
                      config: ClassifierConfig = ClassifierConfig()) -> Classifier1d:
    """``train_classifier`` memoised on disk by a hash of ``x``, ``labels`` and ``config``."""
    num_classes = check_labelled(x, labels, (1, 2))
    h = hashlib.sha1()
    for t in (x.float().contiguous(), labels.long().contiguous()):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(asdict(config).items())).encode())
    path = Path(cache_dir) / f"classifier1d_{h.hexdigest()[:16]}.pt"
    if path.exists():
        clf = Classifier1d(num_classes, 1 if x.ndim == 2 else x.shape[1], config.width, config.feature_dim)
        clf.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return clf.eval().requires_grad_(False)
    clf = train_classifier(x, labels, config)
    atomic_write(path, lambda tmp: torch.save(clf.state_dict(), tmp))
    return clf
