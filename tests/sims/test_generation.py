"""sims.generation and sims.samplers.generate: closed-form sampling copies exactly when the memorizer acts
below the collapse level; generation is seeded per sample and validated."""
from __future__ import annotations


import pytest
import torch

from sims.generation import copy_stats, generation_table, switch_sweep
from sims.samplers import generate
from theory import EmpiricalDenoiser, GaussianDenoiser


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
