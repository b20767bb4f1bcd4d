"""LocalPatchDenoiser: brute-force loops, reduction to the empirical denoiser, shift equivariance."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from theory import EmpiricalDenoiser, LocalPatchDenoiser


def _brute(data: torch.Tensor, x: torch.Tensor, sigma: float, sizes: tuple[int, ...], equivariant: bool) -> torch.Tensor:
    """Loops over positions with modular (circular) indexing; data (n, C, *S), x (B, C, *S), float64."""
    spatial = data.shape[2:]
    positions = list(itertools.product(*(range(s) for s in spatial)))

    def patch(item, pos):
        offsets = itertools.product(*(range(-(p // 2), p // 2 + 1) for p in sizes))
        return torch.stack([item[(slice(None), *((c + o) % s for c, o, s in zip(pos, off, spatial)))] for off in offsets], 1).reshape(-1)

    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for pos in positions:
            q = patch(x[b], pos)
            sources = positions if equivariant else [pos]
            logits, centres = [], []
            for i in range(data.shape[0]):
                for src in sources:
                    logits.append(-((q - patch(data[i], src)) ** 2).sum() / (2 * sigma ** 2))
                    centres.append(data[i][(slice(None), *src)])
            w = torch.softmax(torch.stack(logits), 0)
            out[(b, slice(None), *pos)] = (w[:, None] * torch.stack(centres)).sum(0)
    return out


@pytest.mark.parametrize("equivariant", [False, True])
@pytest.mark.parametrize("shape,patch", [((1, 7), 3), ((2, 6), 5), ((2, 4, 5), (3, 1)), ((1, 3, 3), 3)])
@pytest.mark.parametrize("sigma", [0.05, 0.5, 4.0])
def test_against_bruteforce(shape, patch, equivariant, sigma):
    g = torch.Generator().manual_seed(0)
    data = torch.randn(5, *shape, generator=g, dtype=torch.float64)
    x = data[:3] + sigma * torch.randn(3, *shape, generator=g, dtype=torch.float64)
    sizes = (patch,) * (len(shape) - 1) if isinstance(patch, int) else patch
    den = LocalPatchDenoiser(data, patch, equivariant=equivariant, chunk_size=2)
    torch.testing.assert_close(den(x, sigma), _brute(data, x, sigma, sizes, equivariant), rtol=1e-9, atol=1e-10)


def test_plain_1d_items_and_per_item_sigma():
    g = torch.Generator().manual_seed(1)
    data = torch.randn(6, 9, generator=g, dtype=torch.float64)
    x = torch.randn(2, 9, generator=g, dtype=torch.float64)
    den = LocalPatchDenoiser(data, 3)
    out = den(x, torch.tensor([0.3, 2.0], dtype=torch.float64))
    assert out.shape == (2, 9)
    torch.testing.assert_close(out[1:], den(x[1:], 2.0))
    torch.testing.assert_close(out, LocalPatchDenoiser(data[:, None], 3)(x[:, None], torch.tensor([0.3, 2.0]))[:, 0])


@pytest.mark.parametrize("shape", [(9,), (2, 7), (1, 5, 3)])
@pytest.mark.parametrize("sigma", [0.01, 0.4, 10.0])
def test_full_patch_is_empirical(shape, sigma):
    """A circular patch the size of the item sees the whole item: local = empirical denoiser,
    equivariant = empirical denoiser of all circular shifts of the items."""
    g = torch.Generator().manual_seed(2)
    data = torch.randn(8, *shape, generator=g, dtype=torch.float64)
    x = data[:4] + sigma * torch.randn(4, *shape, generator=g, dtype=torch.float64)
    spatial = shape[1:] if len(shape) > 1 else shape
    full = LocalPatchDenoiser(data, tuple(spatial), chunk_size=3)
    torch.testing.assert_close(full(x, sigma), EmpiricalDenoiser(data)(x, sigma), rtol=1e-9, atol=1e-10)
    dims = tuple(range(data.ndim - len(spatial), data.ndim))
    shifts = torch.cat([torch.roll(data, s, dims) for s in itertools.product(*(range(n) for n in spatial))])
    equi = LocalPatchDenoiser(data, tuple(spatial), equivariant=True, chunk_size=7)
    torch.testing.assert_close(equi(x, sigma), EmpiricalDenoiser(shifts)(x, sigma), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape,patch", [((1, 11), 3), ((2, 5, 6), 3)])
def test_equivariant_commutes_with_circular_shifts(shape, patch):
    g = torch.Generator().manual_seed(3)
    data = torch.randn(6, *shape, generator=g, dtype=torch.float64)
    x = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    den = LocalPatchDenoiser(data, patch, equivariant=True)
    dims = tuple(range(2, len(shape) + 1))
    for shift in ((1,) * len(dims), (4,) * len(dims)):
        torch.testing.assert_close(den(torch.roll(x, shift, dims), 0.3), torch.roll(den(x, 0.3), shift, dims))
    local = LocalPatchDenoiser(data, patch)
    assert (local(torch.roll(x, (1,) * len(dims), dims), 0.3) - torch.roll(local(x, 0.3), (1,) * len(dims), dims)).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_over_sigma_range_and_dtypes(dtype):
    g = torch.Generator().manual_seed(4)
    data = (5 * torch.randn(7, 2, 4, 4, generator=g)).to(dtype)
    for equivariant in (False, True):
        den = LocalPatchDenoiser(data, 3, equivariant=equivariant)
        for s in torch.logspace(-4, 4, 5).tolist():
            x = data[:2] + s * torch.randn(2, 2, 4, 4, generator=g).to(dtype)
            out = den(x, s)
            assert out.dtype == dtype and bool(torch.isfinite(out).all())
        x = data[:2] + 0.3 * torch.randn(2, 2, 4, 4, generator=g).to(dtype)
        ref = LocalPatchDenoiser(data.double(), 3, equivariant=equivariant)(x.double(), 0.3)
        torch.testing.assert_close(den(x, 0.3).double(), ref, rtol=0, atol=1e-6)


def test_bad_input():
    data = torch.randn(4, 2, 6)
    den = LocalPatchDenoiser(data, 3)
    bad = [
        (lambda: LocalPatchDenoiser(data, 2), "patch_size"),
        (lambda: LocalPatchDenoiser(data, 7), "patch_size"),
        (lambda: LocalPatchDenoiser(data, (3, 3)), "patch_size"),
        (lambda: LocalPatchDenoiser(torch.randn(4, 1, 2, 2, 2), 1), "data"),
        (lambda: LocalPatchDenoiser(torch.empty(0, 6), 3), "data"),
        (lambda: LocalPatchDenoiser(torch.full((2, 6), math.nan), 3), "data"),
        (lambda: LocalPatchDenoiser(data, 3, chunk_size=0), "chunk_size"),
        (lambda: den(torch.randn(2, 2, 5), 1.0), "x"),
        (lambda: den(torch.randn(2, 2, 6), 0.0), "sigma"),
    ]
    for call, name in bad:
        with pytest.raises(ValueError, match=name):
            call()
