"""The label-free feature space of FD and the cosine metric: a small 1D conv autoencoder trained on the pool.

Data without class labels (a ``kind = "file"`` dataset whose file has none) leave no classifier to train
(``sims.track1d.classifier``), so their features are the code of an autoencoder trained to reconstruct the
population pool, whatever the data: any ``(N, L)`` or ``(N, C, L)`` signals, at any scale (the net
standardises its input by the pool's per-channel mean and std).

``AutoEncoder1d``: standardise, the classifier's conv stages (``classifier.conv_body``), adaptive average
pooling to ``positions`` positions, flatten, ``Linear`` to the ``feature_dim``-dimensional code (``features``);
the decoder ``Linear -> SiLU -> Linear`` maps the code back to the standardised item. ``train_encoder``
minimises the mean squared reconstruction error with Adam and cosine learning-rate decay;
``cached_encoder`` memoises the trained net on disk by a hash of the data and the settings
(``classifier.cached_fit``). ``sims.track1d.classifier.features(model, x)`` streams the code of either net.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sims.track1d.classifier import as_3d, cached_fit, conv_body, fit_minibatches
from theory.denoiser import check_data


class AutoEncoder1d(nn.Module):
    """``features(x)``: the code ``(B, feature_dim)`` of ``x`` ``(B, *item_shape)``; ``forward(x)``: its
    reconstruction in standardised units (``standardise(x)`` is the target)."""

    def __init__(self, item_shape: tuple[int, ...], width: int = 32, feature_dim: int = 64, positions: int = 8):
        super().__init__()
        self.item_shape = tuple(int(s) for s in item_shape)
        if (len(self.item_shape) not in (1, 2) or min(self.item_shape) < 1 or width < 4 or width % 4
                or feature_dim < 1 or positions < 1):
            raise ValueError(f"need item_shape (L,) or (C, L) of positive sizes, width a multiple of 4 >= 4, feature_dim "
                             f">= 1 and positions >= 1, got {item_shape}, {width}, {feature_dim}, {positions}")
        self.channels = 1 if len(self.item_shape) == 1 else self.item_shape[0]
        self.register_buffer("center", torch.zeros(self.channels, 1))
        self.register_buffer("scale", torch.ones(self.channels, 1))
        self.body = conv_body(self.channels, width)
        self.pool = nn.AdaptiveAvgPool1d(positions)
        self.encode = nn.Linear(2 * width * positions, feature_dim)
        self.decode = nn.Sequential(nn.Linear(feature_dim, 4 * width), nn.SiLU(),
                                    nn.Linear(4 * width, math.prod(self.item_shape)))

    def fit_scale(self, x: Tensor) -> None:
        """Set the standardisation to ``x``'s per-channel mean and std (a constant channel keeps scale 1)."""
        x3 = as_3d(x, self.channels)
        std = x3.std(dim=(0, 2))
        self.center.copy_(x3.mean(dim=(0, 2))[:, None])
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std))[:, None])

    def standardise(self, x: Tensor) -> Tensor:
        """``(x - center) / scale`` per channel, in ``x``'s shape."""
        return ((as_3d(x, self.channels) - self.center) / self.scale).reshape(x.shape)

    def features(self, x: Tensor) -> Tensor:
        h = self.body(as_3d(self.standardise(x), self.channels))
        return self.encode(self.pool(h).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.features(x)).reshape(x.shape[0], *self.item_shape)


@dataclass(frozen=True)
class EncoderConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32
    feature_dim: int = 64
    positions: int = 8
    seed: int = 0


def _check(x: Tensor) -> Tensor:
    check_data(x, "x")
    if x.ndim not in (2, 3) or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, L) or (n, C, L) with n >= 2, got {tuple(x.shape)}")
    return x.float()


def _build(x: Tensor, config: EncoderConfig) -> AutoEncoder1d:
    return AutoEncoder1d(tuple(x.shape[1:]), config.width, config.feature_dim, config.positions)


def train_encoder(x: Tensor, config: EncoderConfig = EncoderConfig()) -> AutoEncoder1d:
    """Fit the standardisation to ``x``, then minimise the mean squared reconstruction error with Adam (cosine
    learning-rate decay) on batches of ``x``; returns the net in eval mode."""
    x = _check(x)
    torch.manual_seed(config.seed)
    model = _build(x, config)
    model.fit_scale(x)
    return fit_minibatches(model, F.mse_loss, x, model.standardise(x), config)


def cached_encoder(x: Tensor, cache_dir: str | os.PathLike, config: EncoderConfig = EncoderConfig()) -> AutoEncoder1d:
    """``train_encoder`` memoised on disk (``classifier.cached_fit``) by a hash of ``x`` and ``config``."""
    x = _check(x)
    return cached_fit(cache_dir, "autoencoder1d", (x,), config, lambda: _build(x, config),
                      lambda: train_encoder(x, config))
