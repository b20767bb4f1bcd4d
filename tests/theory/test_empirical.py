"""EmpiricalDenoiser against a float64 brute-force reference, including the hard near-neighbour case."""
from __future__ import annotations

import math

import pytest
import torch

from theory import EmpiricalDenoiser


@pytest.mark.parametrize("item_shape", [(5,), (2, 3), (1, 2, 2)])
@pytest.mark.parametrize("chunk_size,exact_top", [(1, 1), (3, 2), (4096, 8)])
@pytest.mark.parametrize("sigma", [1e-3, 0.3, 1.0, 30.0])
def test_matches_bruteforce(item_shape, chunk_size, exact_top, sigma, empirical_reference):
    g = torch.Generator().manual_seed(1)
    data = torch.randn(17, *item_shape, generator=g, dtype=torch.float64)
    x = data[:6] + sigma * torch.randn(6, *item_shape, generator=g, dtype=torch.float64)
    x = torch.cat([x, 3 * torch.randn(2, *item_shape, generator=g, dtype=torch.float64)])
    den = EmpiricalDenoiser(data, chunk_size=chunk_size, exact_top=exact_top)
    ref = empirical_reference(data, x, sigma)
    post = den.posterior(x, sigma)
    torch.testing.assert_close(post.mean, ref["mean"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(den(x, sigma), ref["mean"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(den.weights(x, sigma), ref["weights"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(post.max_weight, ref["weights"].max(1).values, rtol=1e-9, atol=1e-12)
    assert torch.equal(post.argmax, ref["weights"].argmax(1))
    torch.testing.assert_close(post.entropy, ref["entropy"], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(post.log_normalizer, ref["log_z"], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(den.log_density(x, sigma), ref["log_density"], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(den.score(x, sigma), (ref["mean"] - x) / sigma ** 2, rtol=1e-8, atol=1e-8 / sigma ** 2)


def test_per_item_sigma(empirical_reference):
    g = torch.Generator().manual_seed(2)
    data = torch.randn(9, 4, generator=g, dtype=torch.float64)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.05, 1.0, 20.0], dtype=torch.float64)
    den = EmpiricalDenoiser(data, chunk_size=4)
    for i in range(3):
        ref = empirical_reference(data, x[i:i + 1], sigma[i].item())
        torch.testing.assert_close(den(x, sigma)[i:i + 1], ref["mean"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sigma", [1e-3, 0.01, 0.03])
def test_float32_exact_on_near_neighbours(sigma, near_neighbours, empirical_reference):
    """d = 3072, clusters of near neighbours: the float32 matmul trick is off by >0.1 TV; ours is not."""
    data = near_neighbours(200, 3072, 4, 3 * sigma).to(torch.float32)
    g = torch.Generator().manual_seed(3)
    x = data[:16] + sigma * torch.randn(16, 3072, generator=g)
    ref = empirical_reference(data, x, sigma)
    sq = (x ** 2).sum(1)[:, None] + (data ** 2).sum(1)[None] - 2 * x @ data.T
    naive = torch.softmax(-sq / (2 * sigma ** 2), dim=1).double()
    assert 0.5 * (naive - ref["weights"]).abs().sum(1).max() > 0.1
    den = EmpiricalDenoiser(data, chunk_size=64)
    w = den.weights(x, sigma).double()
    assert 0.5 * (w - ref["weights"]).abs().sum(1).max() < 1e-5
    post = den.posterior(x, sigma)
    assert (post.mean.double() - ref["mean"]).abs().max() < 1e-5
    torch.testing.assert_close(post.entropy.double(), ref["entropy"], rtol=1e-4, atol=1e-5)


def test_float32_agrees_with_float64():
    """Tolerance: float32 outputs match float64 to 1e-6 (data of unit scale) at every sigma (measured 1.2e-7)."""
    g = torch.Generator().manual_seed(4)
    data = torch.randn(300, 40, generator=g, dtype=torch.float64)
    x = data[:20] + torch.randn(20, 40, generator=g, dtype=torch.float64) * torch.logspace(-4, 4, 20, dtype=torch.float64)[:, None]
    sigma = torch.logspace(-4, 4, 20, dtype=torch.float64)
    d64, d32 = EmpiricalDenoiser(data, chunk_size=64), EmpiricalDenoiser(data.float(), chunk_size=64)
    torch.testing.assert_close(d32(x.float(), sigma.float()).double(), d64(x, sigma), rtol=0, atol=1e-6)
    torch.testing.assert_close(d32.weights(x.float(), sigma.float()).double(), d64.weights(x, sigma), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_over_sigma_range(dtype):
    g = torch.Generator().manual_seed(5)
    data = (10 * torch.randn(50, 2, 3, generator=g)).to(dtype)
    den = EmpiricalDenoiser(data, chunk_size=16)
    for s in torch.logspace(-4, 4, 9).tolist():
        x = data[:4] + s * torch.randn(4, 2, 3, generator=g).to(dtype)
        post = den.posterior(x, s)
        for v in (post.mean, post.max_weight, post.entropy, post.log_normalizer, den.log_density(x, s),
                  den.score(x, s), den.weights(x, s)):
            assert v.dtype == dtype and bool(torch.isfinite(v).all())


def test_memory_of_streaming_does_not_depend_on_n():
    """The posterior never forms a (B, n) matrix: chunk_size=2 with n=50 gives the dense answer."""
    g = torch.Generator().manual_seed(6)
    data = torch.randn(50, 3, generator=g, dtype=torch.float64)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(EmpiricalDenoiser(data, chunk_size=2)(x, 0.7), EmpiricalDenoiser(data, chunk_size=50)(x, 0.7))


def test_bad_input():
    data = torch.randn(5, 3)
    den = EmpiricalDenoiser(data)
    bad = [
        (lambda: EmpiricalDenoiser(torch.empty(0, 3)), "data"),
        (lambda: EmpiricalDenoiser(torch.tensor([[1.0, math.nan]])), "data"),
        (lambda: EmpiricalDenoiser(torch.ones(4, dtype=torch.long)), "data"),
        (lambda: EmpiricalDenoiser(data, chunk_size=0), "chunk_size"),
        (lambda: EmpiricalDenoiser(data, exact_top=0), "exact_top"),
        (lambda: EmpiricalDenoiser(data, logit_tol=-1.0), "logit_tol"),
        (lambda: den(torch.randn(2, 4), 1.0), "x"),
        (lambda: den(torch.full((2, 3), math.nan), 1.0), "x"),
        (lambda: den(torch.randn(2, 3), 0.0), "sigma"),
        (lambda: den(torch.randn(2, 3), -1.0), "sigma"),
        (lambda: den(torch.randn(2, 3), torch.ones(3)), "sigma"),
        (lambda: den.weights(torch.randn(2, 3), math.inf), "sigma"),
    ]
    for call, name in bad:
        with pytest.raises(ValueError, match=name):
            call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_second_pass_in_sub_blocks(dtype, empirical_reference):
    """Items outside the exact top-k, summed in blocks smaller than a chunk, still give the exact posterior."""
    g = torch.Generator().manual_seed(7)
    data = torch.randn(23, 4, generator=g, dtype=torch.float64)
    x = data[:5] + 0.8 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    den = EmpiricalDenoiser(data.to(dtype), chunk_size=7, exact_top=3, logit_tol=0.0 if dtype == torch.float32 else 1e-5)
    den.rest_block = 8  # 2 items per block
    ref = empirical_reference(data.to(dtype), x.to(dtype), 0.8)
    post = den.posterior64(x.to(dtype), 0.8)
    torch.testing.assert_close(post.mean, ref["mean"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(post.entropy, ref["entropy"], rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(post.log_normalizer, ref["log_z"], rtol=1e-12, atol=1e-9)
