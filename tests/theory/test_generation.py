"""theory.generation: the switch denoiser routes per item; closed-form sampling copies exactly when the
memorizer acts below the collapse level."""
from __future__ import annotations

import math

import pytest
import torch

from theory import AmbientDenoiser, EmpiricalDenoiser, GaussianDenoiser
from theory.generation import SwitchDenoiser, copy_stats, generate, generation_table, switch_sweep


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


# ---- sampling with closed forms (EDM Heun from sims.samplers) -----------------------------------------------

def _signals(n=40, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


def test_copy_stats_by_brute_force():
    train = _signals()
    g = torch.Generator().manual_seed(1)
    samples = torch.cat([train[:5] + 1e-3 * torch.randn(5, 16, generator=g), 3 * torch.randn(7, 16, generator=g)])
    dist = torch.cdist(samples.double(), train.double())
    d12 = dist.topk(2, largest=False).values
    stats = copy_stats(samples, train)
    assert stats["copy_share"] == pytest.approx(float((d12[:, 0] / d12[:, 1] < 1 / 3).double().mean()))
    assert stats["copy_share"] == pytest.approx(5 / 12)
    assert stats["nn_distance"] == pytest.approx(float(d12[:, 0].mean()), rel=1e-5)


def test_memorizer_copies_and_generalizer_does_not():
    train = _signals()
    table = generation_table({"empirical": EmpiricalDenoiser(train), "gauss": GaussianDenoiser.fit(train.double())},
                             train, num_samples=24, steps=8, seed=3)
    rows = table.set_index("denoiser")
    assert list(table.columns) == ["denoiser", "copy_share", "nn_distance", "seconds"]
    assert rows.loc["empirical", "copy_share"] == 1.0 and rows.loc["empirical", "nn_distance"] < 0.05
    assert rows.loc["gauss", "copy_share"] == 0.0 and rows.loc["gauss", "nn_distance"] > 1.0


def test_generation_is_seeded_and_validated():
    train = _signals()
    emp = EmpiricalDenoiser(train)
    a = generate(emp, 5, (16,), steps=4, seed=7)
    assert torch.equal(a, generate(emp, 5, (16,), steps=4, seed=7)) and a.shape == (5, 16)
    assert not torch.equal(a, generate(emp, 5, (16,), steps=4, seed=8))
    with pytest.raises(ValueError, match="sigma_min"):
        generate(emp, 5, (16,), sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="num"):
        generate(emp, 0, (16,))
    with pytest.raises(ValueError, match="denoisers"):
        generation_table({}, train)


def test_switch_sweep_copying_is_decided_by_the_memorizer_at_high_noise():
    train = _signals(n=30, d=16, seed=2)
    emp, gauss = EmpiricalDenoiser(train), GaussianDenoiser.fit(train.double())
    sweep = switch_sweep({"emp_above": (emp, gauss), "emp_below": (gauss, emp)}, train, [0.01, 100.0],
                         num_samples=16, steps=8)
    assert list(sweep.columns) == ["sigma_switch", "hybrid", "copy_share", "nn_distance", "seconds"]
    share = sweep.set_index(["hybrid", "sigma_switch"]).copy_share
    # the memorizer down to 0.01 has chosen an item; handing over at 100 leaves the choice to the Gaussian
    assert share[("emp_above", 0.01)] == 1.0 and share[("emp_above", 100.0)] == 0.0
    # the empirical optimum's last step returns the nearest item: copies at every switch
    assert share[("emp_below", 0.01)] == 1.0 and share[("emp_below", 100.0)] == 1.0
    with pytest.raises(ValueError, match="switches"):
        switch_sweep({"a": (emp, gauss)}, train, [])
    with pytest.raises(ValueError, match="hybrids"):
        switch_sweep({}, train, [1.0])
