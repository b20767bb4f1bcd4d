"""An EDM-style (DDPM++-like) U-Net ``F(x_in, c_noise)`` for ``sims.preconditioning.EDMPrecond``.

Residual blocks ``x -> (conv(drop(SiLU(GN(h) * (1 + scale) + shift))) + skip(x)) / sqrt(2)`` with
``h = conv(SiLU(GN(x)))`` and ``(scale, shift)`` an affine map of the noise embedding; multi-head
self-attention (also residual, ``/ sqrt(2)``) at the resolutions listed in ``attn_resolutions``; down/up
sampling inside residual blocks (2x2 average pooling / nearest neighbour), skip connections from every
encoder block to the decoder, zero-initialised output convolutions so a fresh net outputs 0 (so
``EDMPrecond`` starts at ``D = c_skip x``). Noise-level embedding: sinusoidal "positional" or random
"fourier" features of ``c_noise`` followed by a two-layer MLP. Inputs whose side is not divisible by
``2**(levels-1)`` are zero-padded to the next multiple and the output cropped (28x28 with three levels
needs none: 28, 14, 7; with four levels it is padded to 32); attention resolutions refer to padded sides.
The middle block always has attention.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 1
    resolution: int = 28  # input side; padded internally to a multiple of 2**(levels-1)
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (14,)  # (padded) side lengths at which blocks get self-attention
    dropout: float = 0.1
    embedding: str = "positional"  # or "fourier"
    channels_per_head: int = 64

    def __post_init__(self) -> None:
        if self.resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {self.resolution}")
        if self.in_channels < 1 or self.model_channels < 4 or self.model_channels % 4:
            raise ValueError(f"in_channels must be >= 1 and model_channels a multiple of 4 >= 4, "
                             f"got {self.in_channels}, {self.model_channels}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult must be a non-empty tuple of integers >= 1, got {self.channel_mult}")
        if self.num_blocks < 1 or not 0.0 <= self.dropout < 1.0 or self.channels_per_head < 1:
            raise ValueError(f"need num_blocks >= 1, dropout in [0, 1), channels_per_head >= 1, got "
                             f"{self.num_blocks}, {self.dropout}, {self.channels_per_head}")
        if self.embedding not in ("positional", "fourier"):
            raise ValueError(f"embedding must be 'positional' or 'fourier', got {self.embedding!r}")


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4), ch, eps=1e-6)


def _zero(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class NoiseEmbedding(nn.Module):
    """``c_noise (B,) -> (B, dim)``: ``[cos(c f_k), sin(c f_k)]`` with ``f_k = 10000^(-k/half)``
    (positional) or ``f_k = 2 pi N(0, 16^2)`` fixed at init (fourier)."""

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        half = dim // 2
        freqs = (torch.randn(half) * 16 * 2 * math.pi if kind == "fourier"
                 else torch.pow(10000.0, -torch.arange(half, dtype=torch.float32) / half))
        self.register_buffer("freqs", freqs)

    def forward(self, c: Tensor) -> Tensor:
        arg = c.float()[:, None] * self.freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dropout: float, resample: str | None = None,
                 attention: bool = False, channels_per_head: int = 64) -> None:
        super().__init__()
        self.resample = resample
        self.norm0, self.conv0 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, 2 * cout)
        self.norm1, self.drop = _norm(cout), nn.Dropout(dropout)
        self.conv1 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout or resample else nn.Identity()
        self.heads = max(1, cout // channels_per_head) if attention else 0
        if attention:
            self.norm2, self.qkv = _norm(cout), nn.Conv2d(cout, 3 * cout, 1)
            self.proj = _zero(nn.Conv2d(cout, cout, 1))

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(self._resample(F.silu(self.norm0(x))))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(self.drop(F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))))
        # a 1x1 convolution commutes with nearest upsampling: run it at the low resolution (4x fewer multiply-adds)
        skip = self._resample(self.skip(x)) if self.resample == "up" else self.skip(self._resample(x))
        x = (h + skip) * math.sqrt(0.5)
        if self.heads:
            b, c, hh, ww = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww).transpose(-1, -2).unbind(1)
            a = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
            x = (self.proj(a.transpose(-1, -2).reshape(b, c, hh, ww)) + x) * math.sqrt(0.5)
        return x


class UNet(nn.Module):
    """``net(x_in, c_noise) -> (B, C, H, W)`` for ``H = W = config.resolution``; wrap as
    ``EDMPrecond(UNet(cfg))`` to get a denoiser. Inputs are cast to the weights' dtype and back."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        c0, emb, levels = config.model_channels, 4 * config.model_channels, len(config.channel_mult)
        multiple = 2 ** (levels - 1)
        self.padded = -(-config.resolution // multiple) * multiple
        self.embed = NoiseEmbedding(c0, config.embedding)
        self.map = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.conv_in = nn.Conv2d(config.in_channels, c0, 3, padding=1)

        def block(cin: int, cout: int, level: int, **kw) -> ResBlock:
            attention = kw.pop("attention", (self.padded >> level) in config.attn_resolutions)
            return ResBlock(cin, cout, emb, config.dropout, attention=attention,
                            channels_per_head=config.channels_per_head, **kw)

        self.enc, skips, ch = nn.ModuleList(), [c0], c0
        for level, mult in enumerate(config.channel_mult):
            if level > 0:
                self.enc.append(block(ch, ch, level, resample="down", attention=False))
                skips.append(ch)
            for _ in range(config.num_blocks):
                self.enc.append(block(ch, c0 * mult, level))
                ch = c0 * mult
                skips.append(ch)
        self.mid = nn.ModuleList([block(ch, ch, levels - 1, attention=True), block(ch, ch, levels - 1, attention=False)])
        self.dec, self.takes_skip = nn.ModuleList(), []
        for level in reversed(range(levels)):
            if level < levels - 1:
                self.dec.append(block(ch, ch, level, resample="up", attention=False))
                self.takes_skip.append(False)
            for _ in range(config.num_blocks + 1):
                cout = c0 * config.channel_mult[level]
                self.dec.append(block(ch + skips.pop(), cout, level))
                self.takes_skip.append(True)
                ch = cout
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), _zero(nn.Conv2d(ch, config.in_channels, 3, padding=1)))

    def forward(self, x_in: Tensor, c_noise: Tensor) -> Tensor:
        r, c = self.config.resolution, self.config.in_channels
        if x_in.ndim != 4 or tuple(x_in.shape[1:]) != (c, r, r):
            raise ValueError(f"x_in must have shape (B, {c}, {r}, {r}), got {tuple(x_in.shape)}")
        c_noise = torch.as_tensor(c_noise, device=x_in.device).reshape(-1).expand(x_in.shape[0])
        dtype = self.conv_in.weight.dtype
        lo = (self.padded - r) // 2
        h = F.pad(x_in.to(dtype), (lo, self.padded - r - lo, lo, self.padded - r - lo))
        emb = self.map(self.embed(c_noise).to(dtype))
        h = self.conv_in(h)
        skips = [h]
        for blk in self.enc:
            h = blk(h, emb)
            skips.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for blk, takes in zip(self.dec, self.takes_skip):
            h = blk(torch.cat([h, skips.pop()], dim=1) if takes else h, emb)
        return self.out(h)[:, :, lo:lo + r, lo:lo + r].to(x_in.dtype)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(net: UNet) -> str:
    """One line: the configuration and the parameter count (printed by the training command)."""
    cfg = ", ".join(f"{k}={v}" for k, v in asdict(net.config).items())
    return f"UNet({cfg}) padded to {net.padded}x{net.padded}: {count_parameters(net) / 1e6:.2f}M parameters"
