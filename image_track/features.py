"""A small image classifier whose penultimate features stand in for Inception / DINOv2.

No pretrained feature network can be downloaded here, so the package trains its own CNN on the dataset's
full training split (60k images for Fashion-MNIST), caches it, and uses its penultimate (pre-activation)
features for the Frechet distance and cosine memorization. Every result records ``FeatureNet.name``
(dataset, feature size, held-out accuracy, cache file) so tables say which features they used.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from image_track.data import load_images, make_split
from sims.artifacts import atomic_write
from sims.labels import check_labelled

DEFAULT_CACHE = Path("runs/cache")


class ImageClassifier(nn.Module):
    """Three conv stages (3x3, GroupNorm, SiLU; the last two stride 2), mean+max pooling, then
    ``features = Linear(pool)`` (``feature_dim``) and ``logits = Linear(SiLU(features))``."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2 or width < 4 or width % 4 or feature_dim < 1:
            raise ValueError(f"need in_channels >= 1, num_classes >= 2, width a multiple of 4 and feature_dim >= 1, "
                             f"got {in_channels}, {num_classes}, {width}, {feature_dim}")

        def stage(a: int, b: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, stride=stride, padding=1), nn.GroupNorm(4, b), nn.SiLU())

        self.in_channels = in_channels
        self.body = nn.Sequential(stage(in_channels, width, 1), stage(width, 2 * width, 2), stage(2 * width, 4 * width, 2))
        self.proj = nn.Linear(8 * width, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.body(x)
        return self.proj(torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.silu(self.features(x)))


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 5
    batch_size: int = 256
    lr: float = 2e-3
    width: int = 32
    feature_dim: int = 128
    seed: int = 0


def train_classifier(images: Tensor, labels: Tensor, config: ClassifierConfig = ClassifierConfig(),
                     device: str = "cpu", progress: bool = False) -> ImageClassifier:
    """Cross-entropy, Adam with cosine decay, ``config.epochs`` shuffled passes; returned in eval mode on CPU."""
    num_classes = check_labelled(images, labels, (3,), "images")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    clf = ImageClassifier(images.shape[1], num_classes, config.width, config.feature_dim).to(device)
    steps_per_epoch = -(-images.shape[0] // config.batch_size)
    opt = torch.optim.Adam(clf.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * steps_per_epoch)
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="classifier")
    clf.train()
    for _ in epochs:
        perm = torch.randperm(images.shape[0], generator=gen)
        for i in range(0, images.shape[0], config.batch_size):
            idx = perm[i:i + config.batch_size]
            loss = F.cross_entropy(clf(images[idx].to(device)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return clf.cpu().eval().requires_grad_(False)


@torch.no_grad()
def accuracy(clf: ImageClassifier, images: Tensor, labels: Tensor, chunk: int = 2048) -> float:
    """Share of ``images`` whose arg-max logit equals the label (streamed in chunks)."""
    check_labelled(images, labels, (3,), "images")
    dev = next(clf.parameters()).device
    hits = sum(int((clf(images[i:i + chunk].to(dev)).argmax(1).cpu() == labels[i:i + chunk]).sum())
               for i in range(0, images.shape[0], chunk))
    return hits / images.shape[0]


@dataclass
class FeatureNet:
    """A feature map ``images (N, C, H, W) -> (N, F)`` float64 with a name for tables."""

    net: ImageClassifier | None  # None: raw pixels
    name: str

    @torch.no_grad()
    def __call__(self, images: Tensor, chunk: int = 2048) -> Tensor:
        if self.net is None:
            return images.reshape(images.shape[0], -1).double()
        dev = next(self.net.parameters()).device
        return torch.cat([self.net.features(images[i:i + chunk].to(dev).float()).double().cpu()
                          for i in range(0, images.shape[0], chunk)])


PIXELS = FeatureNet(None, "raw pixels")


def _digest(images: Tensor, labels: Tensor, config: ClassifierConfig) -> str:
    h = hashlib.sha1()
    for t in (images.float().contiguous(), labels.long().contiguous()):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(asdict(config).items())).encode())
    return h.hexdigest()[:16]


def cached_classifier(dataset: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                      cache_dir: str | Path = DEFAULT_CACHE, config: ClassifierConfig = ClassifierConfig(),
                      device: str = "cpu", progress: bool = False) -> FeatureNet:
    """Train on ``train`` (the dataset's full training split) and score on ``test``, or load the cached
    result keyed by a hash of the training data and ``config``."""
    num_classes = check_labelled(*train, (3,), "images")
    path = Path(cache_dir) / f"classifier_{dataset}_{_digest(*train, config)}.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        clf = ImageClassifier(train[0].shape[1], num_classes, config.width, config.feature_dim)
        clf.load_state_dict(saved["state"])
        clf.eval().requires_grad_(False)
        acc = float(saved["test_accuracy"])
    else:
        clf = train_classifier(*train, config, device=device, progress=progress)
        acc = accuracy(clf, *test)
        atomic_write(path, lambda tmp: torch.save({"state": clf.state_dict(), "test_accuracy": acc,
                                                   "config": asdict(config), "dataset": dataset}, tmp))
    name = (f"{dataset} CNN classifier, penultimate layer ({config.feature_dim}-d), trained on "
            f"{train[0].shape[0]} images, held-out accuracy {acc:.3f} [{path.name}]")
    return FeatureNet(clf.to(device), name)


def feature_net(dataset: str, path: str | Path | None = None, cache_dir: str | Path = DEFAULT_CACHE,
                config: ClassifierConfig = ClassifierConfig(), device: str = "cpu", progress: bool = False,
                resolution: int | None = None) -> FeatureNet:
    """The cached classifier of ``dataset`` trained on its full training split and scored on its test split
    (digits, which has no test split: a seeded 1500 / 297 split), at ``resolution`` (``load_images``) when given."""
    if dataset == "digits":
        s = make_split(*load_images("digits", resolution=resolution), 1500, seed=config.seed)
        train, test = (s.train, s.train_labels), (s.held, s.held_labels)
    else:
        train, test = (load_images(dataset, path, split, resolution) for split in ("train", "test"))
    name = dataset if resolution is None else f"{dataset}-{resolution}px"
    return cached_classifier(name, train, test, cache_dir, config, device, progress)
