"""theory.switch: the switch denoiser routes each item by its own sigma, is defined at every level when built
from the ambient and empirical optima, and validates its level."""
from __future__ import annotations

import math

import pytest
import torch

from theory import AmbientDenoiser, EmpiricalDenoiser, GaussianDenoiser
from theory.switch import SwitchDenoiser


def _tagged(value: float):
    """A denoiser returning ``value + sigma`` everywhere: shows which branch and which sigma an item got."""
    return lambda x, sigma: value + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))).expand_as(x)


def test_switch_routes_each_item_by_its_sigma():
    sw = SwitchDenoiser(_tagged(100.0), _tagged(-100.0), sigma_switch=1.0)
    x = torch.zeros(4, 2, 3)
    sigma = torch.tensor([0.5, 1.0, 1.5, 20.0])
    out = sw(x, sigma)
    expected = torch.tensor([-99.5, -99.0, 101.5, 120.0])  # sigma == switch goes to the low denoiser
    assert torch.equal(out[:, 0, 0], expected) and out.shape == x.shape
    assert torch.equal(sw(x, 3.0), torch.full_like(x, 103.0))
    assert torch.equal(sw(x, 0.25), torch.full_like(x, -99.75))


def test_switch_of_ambient_and_empirical_is_defined_at_every_sigma():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(10, 3, generator=g, dtype=torch.float64)
    amb = AmbientDenoiser(train + 0.5 * torch.randn(10, 3, generator=g, dtype=torch.float64), sigma_n=0.5)
    emp = EmpiricalDenoiser(train)
    sw = SwitchDenoiser(amb, emp, amb.sigma_n)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 0.6, 2.0, 0.3, 9.0], dtype=torch.float64)
    out = sw(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        ref = (amb if s > 0.5 else emp)(x[i:i + 1], s)
        assert torch.allclose(out[i], ref[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="sigma_n"):
        amb(x, sigma)  # the ambient optimum alone is undefined below sigma_n


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "1"])
def test_switch_rejects_bad_levels(bad):
    gauss = GaussianDenoiser(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="sigma_switch"):
        SwitchDenoiser(gauss, gauss, bad)


def test_switch_validates_sigma():
    sw = SwitchDenoiser(_tagged(1.0), _tagged(2.0), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        sw(torch.zeros(2, 3), torch.tensor([1.0, -1.0]))
