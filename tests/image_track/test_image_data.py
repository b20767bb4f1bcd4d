"""Image readers on files the tests write (IDX gzip, CIFAR-10 pickle archive), digits, splits, real Fashion-MNIST."""
from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import torch

from image_track.data import (FASHION_MNIST_DIR, DataNotFoundError, load_cifar10, load_digits,
                              load_fashion_mnist, load_images, make_split, read_idx)


def test_read_idx_roundtrip_and_errors(tmp_path, write_idx):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    b = np.array([[-5, 70000], [1, 2]], dtype=np.int32)
    write_idx(tmp_path / "b", b, code=0x0C, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), b)
    (tmp_path / "c").write_bytes((tmp_path / "b").read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "c")
    (tmp_path / "d").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "d")


def test_fashion_reader_on_written_files(tmp_path, write_idx):
    imgs = np.zeros((3, 28, 28), dtype=np.uint8)
    imgs[1] = 255
    imgs[2, 5, 7] = 51  # -> 51 * 2 / 255 - 1 = -0.6
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([4, 0, 9], dtype=np.uint8))
    x, y = load_fashion_mnist(tmp_path, "test")
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and y.tolist() == [4, 0, 9]
    assert x[0].eq(-1).all() and x[1].eq(1).all() and x[2, 0, 5, 7].item() == pytest.approx(-0.6)
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        load_fashion_mnist(tmp_path, "train")
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, "val")


def _cifar_batch(k: int, offset: int) -> dict:
    rng = np.random.default_rng(offset)
    return {b"data": rng.integers(0, 256, (k, 3072), dtype=np.uint8), b"labels": [(offset + i) % 10 for i in range(k)],
            b"batch_label": b"x"}


def test_cifar_reader_archive_and_folder(tmp_path):
    batches = {f"data_batch_{i}": _cifar_batch(2, i) for i in range(1, 6)} | {"test_batch": _cifar_batch(3, 9)}
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, b in batches.items():
        (folder / name).write_bytes(pickle.dumps(b))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    for path in (archive, folder, tmp_path):
        x, y = load_cifar10(path, "train")
        assert x.shape == (10, 3, 32, 32) and y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
        raw = batches["data_batch_1"][b"data"][1]
        # channel-major rows: byte 1024 + 32*r + c is the green value of pixel (r, c)
        assert x[1, 1, 3, 4].item() == pytest.approx(raw[1024 + 32 * 3 + 4] * 2 / 255 - 1, abs=1e-6)
    xt, yt = load_cifar10(archive, "test")
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == [9, 0, 1]
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path / "nowhere")
    (folder / "test_batch").unlink()
    with pytest.raises(DataNotFoundError, match="test_batch"):
        load_cifar10(folder, "test")
    with pytest.raises(ValueError, match="path"):
        load_images("cifar10")


def test_digits_match_sklearn():
    from sklearn.datasets import load_digits as sk

    x, y = load_digits()
    ref = sk()
    assert x.shape == (1797, 1, 8, 8) and x.min() == -1 and x.max() == 1
    np.testing.assert_allclose(x[:, 0].numpy(), ref.images / 8.0 - 1.0, atol=1e-6)
    assert torch.equal(y, torch.from_numpy(ref.target).long())
    with pytest.raises(ValueError, match="name"):
        load_images("mnist")


def test_split_is_a_seeded_partition():
    x, y = torch.randn(50, 1, 4, 4), torch.arange(50) % 10
    s = make_split(x, y, 20, seed=3)
    assert s.train.shape[0] == 20 and s.held.shape[0] == 30
    assert sorted(torch.cat([s.train_index, s.held_index]).tolist()) == list(range(50))
    assert torch.equal(s.train, x[s.train_index]) and torch.equal(s.held_labels, y[s.held_index])
    assert torch.equal(make_split(x, y, 20, seed=3).train_index, s.train_index)
    assert not torch.equal(make_split(x, y, 20, seed=4).train_index, s.train_index)
    assert s.y is None
    for bad in (0, 50, 2.5):
        with pytest.raises(ValueError, match="n must"):
            make_split(x, y, bad, seed=0)
    with pytest.raises(ValueError, match="labels"):
        make_split(x, y[:3], 5, seed=0)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    x, y = load_fashion_mnist(split="test")
    assert x.shape == (10000, 1, 28, 28) and x.min() == -1 and x.max() == 1
    assert torch.bincount(y).tolist() == [1000] * 10  # the test split is balanced
    assert y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # published first test labels


def test_ambient_noise_is_fixed_per_image_index():
    """An image gets the same noisy copy in every subset that holds it; the noise is N(0, sigma_n^2)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 1, 4, 4, generator=g), torch.zeros(400, dtype=torch.long)
    small, big = make_split(x, y, 100, seed=1, sigma_n=0.3), make_split(x, y, 300, seed=1, sigma_n=0.3)
    common, a, b = np.intersect1d(small.train_index.numpy(), big.train_index.numpy(), return_indices=True)
    assert len(common) == 100  # subsets of one seed are nested
    assert torch.equal(small.y[a], big.y[b]) and small.sigma_n == 0.3
    eps = (big.y - big.train) / 0.3
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1) < 0.05
    assert make_split(x, y, 100, seed=1, sigma_n=0.3, noise_seed=9).y.ne(small.y).any()
