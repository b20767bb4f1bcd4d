"""The label-free feature space: an autoencoder trained on unlabelled signals separates two signal families,
an exact copy has cosine 1 to itself and a shuffled signal does not, the net is cached by content."""
from __future__ import annotations

import math

import pytest
import torch

from sims.metrics import frechet_distance, max_cosine
from sims.track1d.classifier import features
from sims.track1d.encoder import EncoderConfig, cached_encoder, train_encoder

FAST = EncoderConfig(steps=300, batch_size=64, width=8, feature_dim=16)


def _waves(n: int, seed: int, family: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sines (family 0) and square waves (family 1) of random phase plus noise, scaled to 3 x + 5 (the encoder
    standardises); both families alternate unless ``family`` is given."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 4 * math.pi, 40)
    fam = torch.arange(n) % 2 if family is None else torch.full((n,), family)
    s = torch.sin(t + torch.rand(n, 1, generator=g) * 2 * math.pi)
    return 3 * (torch.where(fam[:, None] == 1, torch.sign(s), s) + 0.1 * torch.randn(n, 40, generator=g)) + 5, fam


@pytest.fixture(scope="module")
def encoder():
    return train_encoder(_waves(200, 0)[0], FAST)  # no labels seen


def test_features_separate_two_signal_families(encoder):
    x, fam = _waves(200, 1)
    f = features(encoder, x)
    assert f.shape == (200, 16) and f.dtype == torch.float64
    d = torch.cdist(f, f).fill_diagonal_(float("inf"))
    assert (fam[d.argmin(1)] == fam).float().mean() > 0.9  # nearest neighbour in feature space: same family
    sines_a, sines_b, squares = (features(encoder, _waves(200, s, k)[0]) for s, k in ((2, 0), (3, 0), (4, 1)))
    assert frechet_distance(sines_a, squares) > 5 * frechet_distance(sines_a, sines_b)


def test_a_copy_has_cosine_one_and_a_shuffled_signal_does_not(encoder):
    x = _waves(100, 5)[0]
    f = features(encoder, x)
    torch.testing.assert_close(max_cosine(f, f), torch.ones(100, dtype=torch.float64))
    shuffled = x[:, torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    assert max_cosine(features(encoder, shuffled), f).mean() < 0.95


def test_multichannel_signals_and_deterministic_training():
    x = torch.randn(32, 3, 20)
    cfg = EncoderConfig(steps=5, batch_size=8, width=4, feature_dim=6)
    a, b = train_encoder(x, cfg), train_encoder(x, cfg)
    assert features(a, x).shape == (32, 6) and a(x).shape == x.shape
    torch.testing.assert_close(features(a, x), features(b, x))


def test_cache_returns_the_same_network(tmp_path):
    x = _waves(64, 6)[0]
    cfg = EncoderConfig(steps=5, batch_size=16, width=4, feature_dim=4)
    a = cached_encoder(x, tmp_path, cfg)
    b = cached_encoder(x, tmp_path, cfg)
    assert len(list(tmp_path.glob("autoencoder1d_*.pt"))) == 1
    torch.testing.assert_close(features(a, x), features(b, x))
    torch.testing.assert_close(b.center, a.center)  # the standardisation is part of the cached state
    cached_encoder(x + 1, tmp_path, cfg)
    assert len(list(tmp_path.glob("autoencoder1d_*.pt"))) == 2


@pytest.mark.parametrize("x, match", [
    (torch.full((10, 40), float("nan")), "finite"),
    (torch.randn(1, 40), "n >= 2"),
    (torch.randn(4, 2, 2, 8), r"\(n, L\) or \(n, C, L\)"),
    (torch.zeros(10, 40, dtype=torch.long), "floating"),
])
def test_rejects_bad_data(x, match):
    with pytest.raises(ValueError, match=match):
        train_encoder(x, EncoderConfig(steps=1, width=4, feature_dim=4))
