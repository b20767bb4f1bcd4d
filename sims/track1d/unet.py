"""A small 1D U-Net ``F(x_in, c_noise)`` for signals, so that ``EDMPrecond(UNet1d(...))`` is a denoiser.

Residual conv blocks (GroupNorm, SiLU, 3-tap convs) with the noise level injected as a FiLM scale and
shift from a Fourier embedding of ``c_noise``; stride-2 downsampling and nearest upsampling to the skip's
length, so any signal length works (40 for MNIST-1D, 140 for ECG beats). The output conv starts at zero,
so the preconditioned denoiser starts as ``c_skip(sigma) x``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from theory.denoiser import per_item


class FourierEmbedding(nn.Module):
    """``c -> [cos(w_k c), sin(w_k c)]`` with angular frequencies ``w_k`` geometric in ``[0.5, 32]``."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim}")
        self.register_buffer("freqs", torch.exp(torch.linspace(math.log(0.5), math.log(32.0), dim // 2)))

    def forward(self, c: Tensor) -> Tensor:
        angles = c[:, None] * self.freqs.to(c.dtype)[None, :]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    """``h = conv(SiLU(GN(x))); h = conv(SiLU(GN(h) (1 + scale) + shift)); return skip(x) + h``."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv1d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h) * (1 + scale) + shift)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Residual single-head self-attention over positions, ``x + W_o softmax(q k^T / sqrt(C)) v`` on GN(x):
    the one global operation, letting the net recall whole training signals, not only local patches."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(self.norm(x)).transpose(1, 2).chunk(3, dim=2)
        return x + self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2))


class UNet1d(nn.Module):
    """``F(x_in, c_noise)``: ``x_in`` of shape ``(B, L)`` (one channel) or ``(B, C, L)``; ``c_noise`` a
    float or ``(B,)`` tensor. Level ``i`` has ``channels * channel_mult[i]`` channels; the length halves
    between levels; ``attention`` adds self-attention at the coarsest level. Returns a tensor shaped like
    ``x_in``.
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, channel_mult: tuple[int, ...] = (1, 2, 2),
                 emb_dim: int = 64, groups: int = 8, dropout: float = 0.0, attention: bool = False):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        if in_channels < 1 or not widths or min(widths) < 1:
            raise ValueError(f"in_channels, channels and channel_mult must be positive, got {in_channels}, {channels}, {channel_mult}")
        if any(w % groups for w in widths):
            raise ValueError(f"groups must divide every level width {widths}, got {groups}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.embed = nn.Sequential(FourierEmbedding(emb_dim), nn.Linear(emb_dim, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv1d(in_channels, widths[0], 3, padding=1)
        block = lambda a, b: ResBlock(a, b, emb_dim, groups, dropout)  # noqa: E731
        self.down = nn.ModuleList(block(a, b) for a, b in zip([widths[0]] + widths[:-1], widths))
        self.downsample = nn.ModuleList(nn.Conv1d(w, w, 3, stride=2, padding=1) for w in widths[:-1])
        self.middle = block(widths[-1], widths[-1])
        self.attention = SelfAttention(widths[-1], groups) if attention else nn.Identity()
        ups = list(reversed(widths))
        self.upsample = nn.ModuleList(nn.Conv1d(w, w, 3, padding=1) for w in ups[:-1])
        self.up = nn.ModuleList(block(a + b, b) for a, b in zip([ups[0]] + ups[:-1], ups))
        self.norm_out = nn.GroupNorm(groups, widths[0])
        self.conv_out = nn.Conv1d(widths[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_in: Tensor, c_noise: float | Tensor) -> Tensor:
        squeeze = x_in.ndim == 2
        x = x_in[:, None, :] if squeeze else x_in
        if x.ndim != 3 or x.shape[1] != self.in_channels or x.shape[0] < 1 or x.shape[2] < 1:
            raise ValueError(f"x_in must have shape (B, L) or (B, {self.in_channels}, L), got {tuple(x_in.shape)}")
        c = per_item(c_noise, x, "c_noise")
        emb = self.embed(c)
        h = self.conv_in(x)
        skips = []
        for i, blk in enumerate(self.down):
            h = blk(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.attention(self.middle(h, emb))
        for i, blk in enumerate(self.up):
            skip = skips.pop()
            if i > 0:
                h = self.upsample[i - 1](F.interpolate(h, size=skip.shape[-1], mode="nearest"))
            h = blk(torch.cat([h, skip], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[:, 0, :] if squeeze else out
