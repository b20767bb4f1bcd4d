"""Image data: Fashion-MNIST (IDX gzip), CIFAR-10 (python-pickle archive), scikit-learn 8x8 digits.

Every loader returns ``(images, labels)``: images ``(N, C, H, W)`` float32 scaled to ``[-1, 1]`` and labels
``(N,)`` int64. ``make_split`` draws a training subset of ``n`` items by seed (the rest is the held-out pool)
and, for ambient training, corrupts each training image once with fixed noise keyed by its index in the
full set (``sims.corruption``), so the same image gets the same noise in every subset and every run.
X-flip augmentation happens per batch in ``sims.training`` (``xflip=True``), which flips an image and its
noisy copy together, after the corruption of the un-flipped image.
"""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sims.corruption import corrupt
from sims.track1d.data import digits

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
DATASETS = ("fashion-mnist", "cifar10", "digits")


class DataNotFoundError(FileNotFoundError, ValueError):
    """A data file is missing: a ``FileNotFoundError`` and a ``ValueError`` about the ``path`` argument."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw): magic ``0 0 dtype ndim``, big-endian int32 dims, data."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"path must be an IDX file (magic 0x0000<dtype><ndim>), got {path}")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(int)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    if len(raw) != 4 + 4 * ndim + count * dtype.itemsize:
        raise ValueError(f"path {path} is a truncated IDX file: header says {tuple(dims)} of {dtype}")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def to_unit_range(images: np.ndarray, max_value: float) -> Tensor:
    """Scale integer pixels in ``[0, max_value]`` to float32 ``[-1, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) * (2.0 / max_value) - 1.0)


def _split_arg(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_fashion_mnist(path: str | Path = FASHION_MNIST_DIR, split: str = "train") -> tuple[Tensor, Tensor]:
    """Fashion-MNIST from the four IDX gzip files in ``path``: ``(N, 1, 28, 28)`` images, ``(N,)`` labels."""
    path = Path(path)
    img_name, lab_name = _FASHION_FILES[_split_arg(split)]
    files = [path / img_name, path / lab_name]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DataNotFoundError(
            f"path must hold the Fashion-MNIST IDX files; missing {missing}. Install them with "
            f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu, files in {FASHION_MNIST_DIR}) or download "
            f"{img_name} and {lab_name} from https://github.com/zalandoresearch/fashion-mnist into {path}")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"path {path} holds inconsistent IDX files: images {images.shape}, labels {labels.shape}")
    return to_unit_range(images[:, None], 255.0), torch.from_numpy(labels.astype(np.int64))


def _cifar_batches(path: Path, names: list[str]) -> list[dict]:
    """Unpickle the named batch files from a ``.tar.gz`` archive or from a folder (or its parent)."""
    if path.is_file():
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in members]
            if missing:
                raise DataNotFoundError(f"path {path} must be the CIFAR-10 python archive; it lacks {missing}")
            return [pickle.load(io.BytesIO(tar.extractfile(members[n]).read()), encoding="bytes") for n in names]
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"path must be cifar-10-python.tar.gz or its extracted cifar-10-batches-py folder; {folder} lacks "
            f"{missing}. Get the archive from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    out = []
    for n in names:
        with open(folder / n, "rb") as f:
            out.append(pickle.load(f, encoding="bytes"))
    return out


def load_cifar10(path: str | Path, split: str = "train") -> tuple[Tensor, Tensor]:
    """CIFAR-10 from the standard python-pickle archive (only open archives you trust: it is pickle):
    ``(N, 3, 32, 32)`` images, ``(N,)`` labels. ``path``: the ``.tar.gz`` or the extracted folder."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"path must be cifar-10-python.tar.gz or its extracted folder, got missing {path}. "
                                f"Get it from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    names = [f"data_batch_{i}" for i in range(1, 6)] if _split_arg(split) == "train" else ["test_batch"]
    batches = _cifar_batches(path, names)
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(f"path {path} holds malformed CIFAR-10 batches: data {data.shape}, labels {labels.shape}")
    return to_unit_range(data.reshape(-1, 3, 32, 32), 255.0), torch.from_numpy(labels)


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 real 8x8 digits (``sims.track1d.data.digits``) as ``(1797, 1, 8, 8)`` images, labels 0..9."""
    x, labels = digits()
    return x.reshape(-1, 1, 8, 8), labels


def load_images(name: str, path: str | Path | None = None, split: str = "train",
                resolution: int | None = None) -> tuple[Tensor, Tensor]:
    """Dispatch on ``name`` in ``DATASETS``; ``path`` overrides the default location (required for CIFAR-10);
    ``resolution``, when given, is the side after average pooling (``downsample``), e.g. 14 for Fashion-MNIST."""
    if name == "fashion-mnist":
        images, labels = load_fashion_mnist(FASHION_MNIST_DIR if path is None else path, split)
    elif name == "cifar10":
        if path is None:
            raise ValueError("path must point to cifar-10-python.tar.gz (or its extracted folder) for cifar10")
        images, labels = load_cifar10(path, split)
    elif name == "digits":
        if _split_arg(split) == "test":
            raise ValueError("split must be 'train' for digits (it has no test split; use make_split's held-out pool)")
        images, labels = load_digits()
    else:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    return (images if resolution is None else downsample(images, resolution)), labels


def downsample(images: Tensor, side: int) -> Tensor:
    """``(N, C, H, H)`` images average-pooled over ``k x k`` blocks to side ``side = H / k`` (``H`` a multiple)."""
    h = images.shape[-1]
    if not (isinstance(side, int) and 1 <= side <= h and h % side == 0) or images.shape[-2] != h:
        raise ValueError(f"resolution must divide the side {h} of square images {tuple(images.shape[1:])}, "
                         f"got {side!r}")
    return torch.nn.functional.avg_pool2d(images, h // side) if side < h else images


@dataclass
class Split:
    """A training subset and its held-out pool. ``train_index``/``held_index`` index the full set;
    ``y`` holds the fixed noisy copies ``train + sigma_n * eps(index)`` when ``sigma_n`` is set."""

    train: Tensor
    train_labels: Tensor
    train_index: Tensor
    held: Tensor
    held_labels: Tensor
    held_index: Tensor
    y: Tensor | None = None
    sigma_n: float | None = None


def make_split(images: Tensor, labels: Tensor, n: int, seed: int, sigma_n: float | None = None,
               noise_seed: int | None = None) -> Split:
    """Draw ``n`` training items with ``randperm(N, seed)[:n]``; the other ``N - n`` are held out. With
    ``sigma_n``, ``y = sims.corruption.corrupt(train, train_index, sigma_n, noise_seed)`` (default: ``seed``)."""
    if not torch.is_tensor(images) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {getattr(images, 'shape', images)}")
    if not torch.is_tensor(labels) or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {getattr(labels, 'shape', labels)}")
    if not isinstance(n, int) or not 1 <= n < images.shape[0]:
        raise ValueError(f"n must be an integer in [1, {images.shape[0] - 1}] (some items must be held out), got {n!r}")
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    tr, he = perm[:n].sort().values, perm[n:].sort().values
    split = Split(images[tr], labels[tr], tr, images[he], labels[he], he)
    if sigma_n is not None:
        split.y = corrupt(split.train, tr, sigma_n, seed if noise_seed is None else noise_seed)
        split.sigma_n = float(sigma_n)
    return split
