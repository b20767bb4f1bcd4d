"""The feature classifier: learns a learnable task, caches itself, names its features."""
from __future__ import annotations

import pytest
import torch

import image_track.features as feats
from image_track.features import ClassifierConfig, ImageClassifier, PIXELS, accuracy, feature_net, train_classifier


def test_classifier_learns_and_is_cached(tmp_path, monkeypatch, fake_fashion):
    fake_fashion(tmp_path / "fm")
    cfg = ClassifierConfig(epochs=2, batch_size=32, width=8, feature_dim=16)
    fn = feature_net("fashion-mnist", tmp_path / "fm", tmp_path / "cache", cfg)
    assert "held-out accuracy" in fn.name and "16-d" in fn.name
    acc = float(fn.name.split("held-out accuracy ")[1].split()[0])
    assert acc > 0.9  # chance is 0.5
    x = torch.randn(5, 1, 28, 28)
    f = fn(x, chunk=2)
    assert f.shape == (5, 16) and f.dtype == torch.float64
    torch.testing.assert_close(f, fn.net.features(x).double(), rtol=1e-5, atol=1e-5)

    def boom(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(feats, "train_classifier", boom)
    again = feature_net("fashion-mnist", tmp_path / "fm", tmp_path / "cache", cfg)
    assert again.name == fn.name
    assert torch.equal(again(x, chunk=2), f)


def test_accuracy_and_pixel_features():
    torch.manual_seed(0)
    clf = ImageClassifier(1, 3, width=8, feature_dim=4).eval()
    x, y = torch.randn(7, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    assert accuracy(clf, x, y, chunk=3) == pytest.approx((clf(x).argmax(1) == y).float().mean().item())
    assert PIXELS(x).shape == (7, 64)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(x, y[:3])
    with pytest.raises(ValueError, match="images"):
        train_classifier(torch.randn(7, 8, 8), y)
