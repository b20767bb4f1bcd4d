"""The image U-Net: shapes at 28/8/32, zero init, batch independence, attention against a hand-written reference,
the same function as the implementation before its up-sampling skip convolution moved."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from image_track.unet import ResBlock, UNet, UNetConfig, count_parameters, describe

TINY = dict(model_channels=16, channel_mult=(1, 2), num_blocks=1, channels_per_head=8, dropout=0.0)


def perturbed(net: UNet) -> UNet:
    """Give the zero-initialised layers random weights so the output depends on everything."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("cfg", [UNetConfig(resolution=28, attn_resolutions=(14,), **TINY),
                                 UNetConfig(resolution=28, **{**TINY, "channel_mult": (1, 1, 1, 1)}),
                                 UNetConfig(resolution=8, attn_resolutions=(8,), embedding="fourier", **TINY),
                                 UNetConfig(in_channels=3, resolution=32, attn_resolutions=(16,), **TINY)])
def test_shapes_zero_init_and_batch_independence(cfg):
    torch.manual_seed(0)
    net = UNet(cfg)
    x = torch.randn(3, cfg.in_channels, cfg.resolution, cfg.resolution)
    c = torch.tensor([-1.0, 0.0, 0.7])
    assert net(x, c).eq(0).all()  # zero-initialised output layer
    net = perturbed(net).eval()
    out = net(x, c)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0
    torch.testing.assert_close(net(x[1:2], c[1:2]), out[1:2], rtol=1e-4, atol=1e-5)  # no mixing across the batch
    assert not torch.allclose(net(x, c + 0.5), out)  # the noise level matters
    assert any(b.heads for b in [*net.enc, *net.mid, *net.dec])


def test_padding_to_a_multiple_and_crop():
    net = UNet(UNetConfig(resolution=28, **{**TINY, "channel_mult": (1, 1, 1, 1)}))
    assert net.padded == 32 and UNet(UNetConfig(resolution=28, **TINY)).padded == 28


def test_attention_block_matches_reference():
    torch.manual_seed(0)
    blk = ResBlock(8, 8, emb=4, dropout=0.0, attention=True, channels_per_head=4)
    with torch.no_grad():
        blk.proj.weight.normal_(0, 0.3)
        blk.conv1.weight.normal_(0, 0.3)
    x, emb = torch.randn(2, 8, 3, 5), torch.randn(2, 4)
    # reference: residual block by formula, then per-head softmax(q k^T / sqrt(d)) v by einsum
    h = blk.conv0(F.silu(blk.norm0(x)))
    scale, shift = blk.affine(emb).chunk(2, dim=1)
    h = blk.norm1(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    y = (blk.conv1(F.silu(h)) + x) / math.sqrt(2)
    q, k, v = blk.qkv(blk.norm2(y)).reshape(2, 3, 2, 4, 15).unbind(1)  # (b, heads, d, tokens)
    w = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / 2.0, dim=-1)
    a = torch.einsum("bhij,bhdj->bhdi", w, v).reshape(2, 8, 3, 5)
    ref = (blk.proj(a) + y) / math.sqrt(2)
    torch.testing.assert_close(blk(x, emb), ref, rtol=1e-5, atol=1e-5)


def test_dtype_roundtrip_dropout_and_training_signal():
    torch.manual_seed(0)
    net = perturbed(UNet(UNetConfig(resolution=8, **{**TINY, "dropout": 0.5})))
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    net.eval()
    assert net(x, torch.zeros(2)).dtype == torch.float64
    torch.testing.assert_close(net(x, torch.zeros(2)), net(x, torch.zeros(2)))
    net.train()
    assert not torch.equal(net(x, torch.zeros(2)), net(x, torch.zeros(2)))
    fresh = UNet(UNetConfig(resolution=8, **TINY))
    opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    target = torch.randn(2, 1, 8, 8)
    losses = []
    for _ in range(3):
        loss = ((fresh(target, torch.zeros(2)) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_parameter_count_and_errors():
    net = UNet(UNetConfig(resolution=8, **TINY))
    assert count_parameters(net) == sum(p.numel() for p in net.parameters()) > 0
    assert "parameters" in describe(net) and "resolution=8" in describe(net)
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(2, 1, 9, 9), torch.zeros(2))
    for bad, name in [(dict(embedding="x"), "embedding"), (dict(channel_mult=()), "channel_mult"),
                      (dict(model_channels=6), "model_channels"), (dict(resolution=0), "resolution")]:
        with pytest.raises(ValueError, match=name):
            UNetConfig(**{**TINY, **bad})


def forward_before(self: ResBlock, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """``ResBlock.forward`` before the up-sampling blocks' skip convolution moved below the upsampling (verbatim)."""
    h = self.conv0(self._resample(F.silu(self.norm0(x))))
    scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
    h = self.conv1(self.drop(F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))))
    x = (h + self.skip(self._resample(x))) * math.sqrt(0.5)
    if self.heads:
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm2(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        x = (self.proj(a.transpose(-1, -2).reshape(b, c, hh, ww)) + x) * math.sqrt(0.5)
    return x


# the image grid's recipe (configs/image_cpu.toml) at both its sides, and four levels with several heads
GRID = {"model_channels": 32, "channel_mult": (1, 2), "num_blocks": 1, "attn_resolutions": (4,), "dropout": 0.1}


@pytest.mark.parametrize("cfg", [UNetConfig(resolution=8, **GRID), UNetConfig(resolution=14, **GRID),
                                 UNetConfig(in_channels=3, resolution=28, attn_resolutions=(16,),
                                            **{**TINY, "channel_mult": (1, 2, 2, 2), "dropout": 0.1})])
def test_same_function_as_before_the_skip_moved(cfg, monkeypatch):
    """Same weights, same outputs and gradients as the implementation before; in training mode too (dropout
    masks follow the activations' memory layout, which the change keeps)."""
    torch.manual_seed(0)
    net = perturbed(UNet(cfg))
    assert any(b.resample == "up" for b in net.dec)
    x, c = torch.randn(3, cfg.in_channels, cfg.resolution, cfg.resolution), torch.tensor([-1.0, 0.0, 0.7])

    def run(train: bool):
        net.train(train)
        torch.manual_seed(5)
        out = net(x, c)
        return out, torch.autograd.grad(out.square().sum(), list(net.parameters()))

    for train in (False, True):
        out, grads = run(train)
        with monkeypatch.context() as m:
            m.setattr(ResBlock, "forward", forward_before)
            out_before, grads_before = run(train)
        torch.testing.assert_close(out, out_before, rtol=1e-5, atol=1e-5)
        for g, g_before in zip(grads, grads_before):
            torch.testing.assert_close(g, g_before, rtol=1e-4, atol=1e-4 * g_before.abs().max().item())
