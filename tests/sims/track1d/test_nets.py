"""The 1D U-Net: shapes for any length, per-item independence, noise conditioning, validation, it learns."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.track1d.unet import FourierEmbedding, UNet1d


def _randomised(net: UNet1d) -> UNet1d:
    """Give the zero-initialised output conv random weights so the output depends on the input."""
    torch.nn.init.normal_(net.conv_out.weight, std=0.3)
    return net


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 150), channels=st.sampled_from([1, 3]), levels=st.integers(1, 3), attention=st.booleans())
def test_output_shape_matches_input_for_any_length(length, channels, levels, attention):
    torch.manual_seed(0)
    net = UNet1d(in_channels=channels, channels=8, channel_mult=(1, 2, 2)[:levels], groups=4, attention=attention)
    x = torch.randn(2, channels, length)
    assert net(x, torch.tensor([0.1, -0.3])).shape == x.shape
    if channels == 1:
        assert net(x[:, 0], 0.2).shape == (2, length)


def test_output_starts_at_zero_so_preconditioned_denoiser_starts_at_c_skip_x():
    net = UNet1d(channels=8, groups=4)
    assert torch.count_nonzero(net(torch.randn(3, 40), torch.zeros(3))) == 0


def test_items_are_independent_and_scalar_c_noise_broadcasts():
    torch.manual_seed(1)
    net = _randomised(UNet1d(channels=8, groups=4, attention=True)).eval()
    x, c = torch.randn(5, 1, 35), torch.randn(5)
    batch = net(x, c)
    singles = torch.cat([net(x[i:i + 1], c[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net(x, 0.7), net(x, torch.full((5,), 0.7)))


def test_output_depends_on_c_noise_and_on_neighbouring_positions():
    torch.manual_seed(2)
    net = _randomised(UNet1d(channels=8, channel_mult=(1,), groups=4)).eval()
    x = torch.randn(1, 1, 64)
    assert not torch.allclose(net(x, -1.0), net(x, 1.0))
    # not a pointwise map: the centre output depends on its neighbours (convs of width 3)
    x.requires_grad_(True)
    net(x, 0.0)[0, 0, 32].backward()
    assert (x.grad[0, 0, 31:34] != 0).all()


def test_float64_and_gradients_reach_every_parameter_after_one_step():
    torch.manual_seed(3)
    net = UNet1d(channels=8, groups=4).double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(4, 40, dtype=torch.float64)
    for _ in range(2):  # the first step moves the zero output conv, the second reaches the rest
        opt.zero_grad()
        (net(x, torch.rand(4, dtype=torch.float64)) - x).pow(2).mean().backward()
        opt.step()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in net.parameters())
    assert net(x, 0.5).dtype == torch.float64


def test_learns_a_noise_dependent_map():
    # target(x, c) = x * c: needs both the signal path and the noise embedding
    torch.manual_seed(4)
    net = UNet1d(channels=8, channel_mult=(1, 2), groups=4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, c = torch.randn(64, 40), torch.rand(64) * 2 - 1
    target = x * c[:, None]
    first = None
    for _ in range(150):
        loss = (net(x, c) - target).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


@pytest.mark.parametrize("x, c, match", [
    (torch.randn(40), 0.0, "x_in"),
    (torch.randn(2, 2, 40), 0.0, "x_in"),
    (torch.randn(2, 1, 2, 40), 0.0, "x_in"),
    (torch.randn(2, 40), torch.zeros(3), "c_noise"),
])
def test_rejects_bad_input(x, c, match):
    with pytest.raises(ValueError, match=match):
        UNet1d(channels=8, groups=4)(x, c)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=12, groups=8), "groups"),
    (dict(channels=0), "positive"),
    (dict(dropout=1.0), "dropout"),
])
def test_rejects_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet1d(**kwargs)


def test_fourier_embedding_is_bounded_and_rejects_odd_dim():
    e = FourierEmbedding(16)(torch.linspace(-3, 3, 7))
    assert e.shape == (7, 16) and e.abs().max() <= 1
    torch.testing.assert_close(e[:, :8] ** 2 + e[:, 8:] ** 2, torch.ones(7, 8))
    with pytest.raises(ValueError, match="dim"):
        FourierEmbedding(7)


# --- the plain MLP alternative (sims.track1d.mlp) -------------------------------------------------------------
from sims.track1d.mlp import MLP1d


def test_mlp_shapes_zero_start_and_learning():
    torch.manual_seed(5)
    net = MLP1d((1, 40), width=64, depth=1)
    x, c = torch.randn(64, 1, 40), torch.rand(64) * 2 - 1
    assert net(x, c).shape == x.shape and torch.count_nonzero(net(x, c)) == 0
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    target = x * c[:, None, None]
    first = None
    for _ in range(200):
        loss = (net(x, c) - target).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


@pytest.mark.parametrize("x, c, match", [
    (torch.randn(2, 39), 0.0, "x_in"),
    (torch.randn(2, 40), torch.zeros(3), "c_noise"),
])
def test_mlp_rejects_bad_input(x, c, match):
    with pytest.raises(ValueError, match=match):
        MLP1d((40,), width=8, depth=1)(x, c)


@pytest.mark.parametrize("net", [UNet1d(channels=8, groups=4), MLP1d((40,), width=8, depth=1)])
def test_non_finite_input_is_refused_at_the_boundaries_not_in_forward(net):
    """``forward`` checks shapes only (no host sync per call); NaN data is refused, by name, by the trainer and
    the samplers that feed the net."""
    from sims.losses import EDMLoss
    from sims.preconditioning import EDMPrecond
    from sims.samplers import edm_heun
    from sims.training import TrainConfig, train

    nan = torch.full((4, 40), float("nan"))
    assert torch.isnan(net(nan, 0.0)).all() or net(nan, 0.0).shape == nan.shape
    with pytest.raises(ValueError, match="x0"):
        train(EDMPrecond(net), EDMLoss(), nan, TrainConfig(steps=1, batch_size=2, progress=False))
    with pytest.raises(ValueError, match="noise"):
        edm_heun(EDMPrecond(net), nan, torch.tensor([1.0, 0.0]))
