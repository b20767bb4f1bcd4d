"""Image-track test fixtures."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest


def _write_idx(path, array: np.ndarray, code: int = 0x08, compress: bool = True) -> None:
    """Write ``array`` as an IDX file: ``0 0 code ndim``, big-endian int32 dims, big-endian data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    be = array.astype(array.dtype.newbyteorder(">"))
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + be.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture
def write_idx():
    return _write_idx


@pytest.fixture
def fake_fashion(write_idx):
    """Write a small Fashion-MNIST-format folder: two classes told apart by a bright left or right half."""
    def make(folder, n_train: int = 192, n_test: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        for split, n in (("train", n_train), ("t10k", n_test)):
            labels = rng.integers(0, 2, n).astype(np.uint8)
            imgs = rng.integers(0, 100, (n, 28, 28)).astype(np.uint8)
            for i, lab in enumerate(labels):
                imgs[i, :, (14 if lab else 0):(28 if lab else 14)] += 120
            write_idx(folder / f"{split}-images-idx3-ubyte.gz", imgs)
            write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
        return folder
    return make
