"""Fixed corruption: an item's noise is a pure function of (seed, index), whatever the subset, order or process."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from scipy import stats

from sims.corruption import corrupt, fixed_noise


def test_noise_depends_only_on_seed_and_index():
    full = fixed_noise(torch.arange(50), (3, 4), seed=7)
    subset = torch.tensor([42, 3, 17, 3])
    torch.testing.assert_close(fixed_noise(subset, (3, 4), seed=7), full[subset], rtol=0, atol=0)
    assert not torch.allclose(fixed_noise(subset, (3, 4), seed=8), full[subset])
    assert not torch.allclose(full[0], full[1])


def test_noise_is_identical_in_a_fresh_process():
    code = ("import torch; from sims.corruption import fixed_noise; "
            "print(repr(fixed_noise(torch.tensor([5, 900]), (6,), seed=3, dtype=torch.float64).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == fixed_noise(torch.tensor([5, 900]), (6,), seed=3, dtype=torch.float64).tolist()


def test_noise_is_standard_normal():
    eps = fixed_noise(torch.arange(400), (50,), seed=0, dtype=torch.float64).flatten().numpy()
    assert stats.kstest(eps, "norm").pvalue > 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_corrupt_adds_sigma_n_times_the_fixed_noise(dtype):
    x0 = torch.randn(6, 2, 5, dtype=dtype)
    idx = torch.tensor([10, 11, 12, 0, 1, 2])
    y = corrupt(x0, idx, 0.4, seed=1)
    assert y.dtype == dtype
    torch.testing.assert_close(y, x0 + 0.4 * fixed_noise(idx, (2, 5), 1, dtype=dtype))


@pytest.mark.parametrize("args, match", [
    ((torch.full((2, 3), float("nan")), torch.arange(2), 0.5), "x0"),
    ((torch.zeros(2, 3), torch.arange(3), 0.5), "indices must have one entry per item"),
    ((torch.zeros(2, 3), torch.arange(2), 0.0), "sigma_n"),
    ((torch.zeros(2, 3), torch.arange(2), float("inf")), "sigma_n"),
    ((torch.zeros(3), torch.arange(3), 0.5), "x0 must have shape"),
    ((torch.zeros(2, 3), torch.tensor([0, -1]), 0.5), "indices"),
])
def test_bad_input_names_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        corrupt(*args, seed=0)
