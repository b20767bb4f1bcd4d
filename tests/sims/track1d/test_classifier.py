"""The feature classifier: learns a shift-invariant two-class problem, features are deterministic, cache works."""
from __future__ import annotations

import math

import pytest
import torch

from sims.track1d.classifier import ClassifierConfig, accuracy, cached_classifier, features, train_classifier

FAST = ClassifierConfig(steps=120, batch_size=64, lr=3e-3, width=8, feature_dim=16)


def _waves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sines (label 0) and square waves (label 1) of random phase, plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 4 * math.pi, 40)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    labels = torch.arange(n) % 2
    s = torch.sin(t + phase)
    x = torch.where(labels[:, None] == 1, torch.sign(s), s) + 0.1 * torch.randn(n, 40, generator=g)
    return x, labels


def test_learns_held_out_labels_and_features_are_deterministic():
    x, y = _waves(200, 0)
    clf = train_classifier(x, y, FAST)
    xt, yt = _waves(200, 1)
    assert accuracy(clf, xt, yt) > 0.95
    f = features(clf, xt, chunk=7)
    assert f.shape == (200, 16) and f.dtype == torch.float64
    torch.testing.assert_close(f, features(clf, xt), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f, features(train_classifier(x, y, FAST), xt), atol=1e-5, rtol=1e-5)


def test_cache_returns_the_same_network(tmp_path):
    x, y = _waves(64, 2)
    a = cached_classifier(x, y, tmp_path, FAST)
    assert len(list(tmp_path.glob("classifier1d_*.pt"))) == 1
    b = cached_classifier(x, y, tmp_path, FAST)
    torch.testing.assert_close(features(a, x), features(b, x))
    cached_classifier(x, y, tmp_path, ClassifierConfig(**{**FAST.__dict__, "seed": 1}))
    assert len(list(tmp_path.glob("classifier1d_*.pt"))) == 2


@pytest.mark.parametrize("x, y, match", [
    (torch.randn(10, 40), torch.zeros(9, dtype=torch.long), "labels"),
    (torch.randn(10, 40), torch.zeros(10), "labels"),
    (torch.randn(10, 40), -torch.ones(10, dtype=torch.long), "labels"),
    (torch.full((10, 40), float("nan")), torch.zeros(10, dtype=torch.long), "x"),
    (torch.randn(1, 40), torch.zeros(1, dtype=torch.long), "x"),
])
def test_rejects_bad_data(x, y, match):
    with pytest.raises(ValueError, match=match):
        train_classifier(x, y, FAST)


def test_features_reject_wrong_channels():
    clf = train_classifier(*_waves(16, 3), ClassifierConfig(steps=1, width=8, feature_dim=4))
    with pytest.raises(ValueError, match="x must have shape"):
        clf.features(torch.randn(2, 3, 40))
