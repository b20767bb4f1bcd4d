"""EmpiricalDenoiser against a float64 brute-force reference, including the hard near-neighbour case."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# -- exactness of the precision plans and of one pass or two (docs/THEORY.md §2.1.3) -------------------------

U64 = 2.0 ** -53


def _bound(data: torch.Tensor, x: torch.Tensor, sigma: float, tol: float) -> torch.Tensor:
    """Per query the documented bound on every logit's error, ``max(logit_tol, E(u_64))`` nats (§2.1.3)."""
    d64, x64 = data.reshape(data.shape[0], -1).double(), x.reshape(x.shape[0], -1).double()
    center = d64.mean(0)
    y = (d64 - center).norm(dim=1).max().item()
    norm = (x64 - center).norm(dim=1)
    return (4 * U64 * ((math.sqrt(d64.shape[1]) + 2) * norm * y + y * y) / sigma ** 2).clamp_min(tol)


def _check_against_float64(den: EmpiricalDenoiser, data: torch.Tensor, x: torch.Tensor, sigma: float, ref: dict) -> None:
    """Weights within total variation ``e^{2 eps} - 1`` of the float64 ones (each moves by a factor within
    ``e^{+-2 eps}``), the mean within twice that times the items' spread, ``log Z`` within ``eps``; plus the
    rounding of float32 sums of up to a few hundred weighted items (64 u)."""
    eps = _bound(data, x, sigma, den.logit_tol)
    tv = torch.expm1(2 * eps) + 1e-12
    rounding = 64 * torch.finfo(x.dtype).eps * (data.double().abs().max().item() + 1)
    post, w = den.posterior64(x, sigma), den.weights(x, sigma).double()
    flat = data.reshape(data.shape[0], -1).double()
    mean = ref["mean"].reshape(x.shape[0], -1)
    spread = (flat[None] - mean[:, None]).abs().amax(dim=(1, 2))
    assert bool((0.5 * (w - ref["weights"]).abs().sum(1) <= tv + rounding).all())
    assert bool(((post.mean.reshape(x.shape[0], -1) - mean).abs().amax(1) <= 2 * tv * spread + rounding).all())
    assert bool(((post.log_normalizer - ref["log_z"]).abs() <= eps + 8 * U64 * ref["log_z"].abs()).all())
    assert bool(((post.max_weight - ref["weights"].max(1).values).abs() <= tv + rounding).all())


@st.composite
def posterior_problems(draw):
    """Float32 or float64 items, Gaussian or in clusters of near-duplicates a fraction of ``sigma`` apart (logit
    gaps of a few nats, which float32 matmuls cannot order at small ``sigma``); queries within a few ``sigma``
    of an item; ``sigma = 10^s``, ``s`` in [-4, 4]; chunks of 1 item to all of them."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n, d = draw(st.integers(1, 200)), draw(st.integers(1, 40))
    sigma = 10.0 ** draw(st.floats(-4, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    data = torch.randn(n, d, generator=g, dtype=torch.float64)
    if draw(st.booleans()):
        spread = draw(st.floats(0.1, 3.0))
        data = data[torch.arange(n) % max(1, n // 8)] + spread * sigma * torch.randn(n, d, generator=g, dtype=torch.float64)
    x = data[torch.randint(0, n, (4,), generator=g)] + draw(st.floats(0, 3)) * sigma * torch.randn(4, d, generator=g, dtype=torch.float64)
    return data.to(dtype), x.to(dtype), sigma, draw(st.sampled_from([1, 3, 16, 16384])), draw(st.integers(1, 8))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=posterior_problems())
def test_exact_against_float64_at_every_sigma(problem, empirical_reference):
    """sigma from 1e-4 to 1e4, float32 and float64, near-ties included: whichever plan and passes the rows take,
    the posterior is the float64 one to within the documented logit bound."""
    data, x, sigma, chunk_size, exact_top = problem
    den = EmpiricalDenoiser(data, chunk_size=chunk_size, exact_top=exact_top)
    _check_against_float64(den, data, x, sigma, empirical_reference(data, x, sigma))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-4, 0.03, 1.0, 3.0, 30.0, 1e4])
def test_one_pass_or_two_decides_the_cost_not_the_answer(dtype, sigma, near_neighbours, empirical_reference, monkeypatch):
    """The probe only chooses between one pass and two: forcing either for every query gives the same posterior,
    the float64 one (near neighbours 0.3 sigma apart, so some logit gaps are below float32 rounding)."""
    data = near_neighbours(300, 64, 10, 0.3 * sigma).to(dtype)
    g = torch.Generator().manual_seed(8)
    x = data[:12] + sigma * torch.randn(12, 64, generator=g, dtype=torch.float64).to(dtype)
    ref = empirical_reference(data, x, sigma)
    means = []
    for broad in (False, True):
        den = EmpiricalDenoiser(data, chunk_size=64, exact_top=4)
        probe = den._probe
        monkeypatch.setattr(den, "_probe", lambda q, probe=probe, broad=broad: (torch.full_like(probe(q)[0], broad), probe(q)[1]))
        _check_against_float64(den, data, x, sigma, ref)
        means.append(den.posterior64(x, sigma).mean)
    torch.testing.assert_close(means[0], means[1], rtol=0, atol=1e-5 * float(data.double().abs().max()))


@pytest.mark.parametrize("dtype,sigma,tol,plan", [
    (torch.float32, 1e4, 1e-5, 0),    # float32 logits are within logit_tol
    (torch.float32, 1.0, 1e-5, 1),    # float64 matmul, float32 softmax
    (torch.float32, 1.0, 0.0, 2),     # no rounding allowed: float64 throughout
    (torch.float64, 1.0, 1e-5, 0),
])
def test_each_precision_plan_is_exact(dtype, sigma, tol, plan, empirical_reference):
    """The three plans of §2.1.3, each on broad and concentrated posteriors: float64 answers."""
    g = torch.Generator().manual_seed(9)
    data = torch.randn(500, 32, generator=g, dtype=torch.float64).to(dtype)
    x = torch.cat([data[:6] + sigma * torch.randn(6, 32, generator=g, dtype=torch.float64).to(dtype),
                   data[6:8] + 0.1 * sigma * torch.randn(2, 32, generator=g, dtype=torch.float64).to(dtype)])
    den = EmpiricalDenoiser(data, chunk_size=128, logit_tol=tol)
    q = next(den._queries(x, sigma))
    assert bool((den._plans(q)[0] == plan).all())
    _check_against_float64(den, data, x, sigma, empirical_reference(data, x, sigma))
