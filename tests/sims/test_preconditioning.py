"""EDM preconditioning: the coefficients are the ones sympy derives from unit input/target variance, and
wrapping a net that emits the exact F-target reproduces the exact denoiser at every sigma and dtype."""
from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from torch import nn

from sims.preconditioning import EDMPrecond
from theory import GaussianDenoiser


def test_coefficients_follow_from_unit_variance():
    """Karras et al. App. B.6: with ``x = x0 + sigma n``, ``Var x0 = sd^2``: ``c_in`` gives unit input variance,
    ``c_skip`` minimises the variance of the target ``F* = (x0 - c_skip x) / c_out``, ``c_out`` makes it 1."""
    s, sd, c = sp.symbols("sigma sigma_data c", positive=True)
    c_in = 1 / sp.sqrt(s**2 + sd**2)
    assert sp.simplify(c_in**2 * (sd**2 + s**2) - 1) == 0
    target_var = (1 - c) ** 2 * sd**2 + c**2 * s**2  # Var(x0 - c x) before dividing by c_out^2
    c_skip = sp.solve(sp.diff(target_var, c), c)[0]
    assert sp.simplify(c_skip - sd**2 / (s**2 + sd**2)) == 0
    c_out = s * sd / sp.sqrt(s**2 + sd**2)
    assert sp.simplify(target_var.subs(c, c_skip) - c_out**2) == 0  # both positive, so the roots agree
    # the package's numbers: a net returning its input exposes c_in, and with F = 1 the output is c_skip x + c_out
    f_in = sp.lambdify((s, sd), c_in)
    f_skip, f_out = sp.lambdify((s, sd), c_skip), sp.lambdify((s, sd), c_out)

    class Probe(nn.Module):
        def __init__(self, mode: str) -> None:
            super().__init__()
            self.mode = mode

        def forward(self, x_in, c_noise):
            self.c_noise = c_noise
            return x_in if self.mode == "in" else torch.ones_like(x_in)

    for sigma in [1e-4, 0.03, 0.5, 2.0, 80.0, 1e4]:
        for sigma_data in [0.5, 1.0]:
            x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
            probe = Probe("one")
            out = EDMPrecond(probe, sigma_data)(x, sigma)
            assert float(out[0]) == pytest.approx(f_out(sigma, sigma_data), rel=1e-12)
            assert float(out[1] - out[0]) == pytest.approx(f_skip(sigma, sigma_data), rel=1e-12)
            assert float(probe.c_noise[0]) == pytest.approx(math.log(sigma) / 4, rel=1e-12, abs=1e-15)
            out_in = EDMPrecond(Probe("in"), sigma_data)(x, sigma)
            expected = f_skip(sigma, sigma_data) + f_out(sigma, sigma_data) * f_in(sigma, sigma_data)
            assert float(out_in[1]) == pytest.approx(expected, rel=1e-12)


class ExactTarget(nn.Module):
    """Recovers ``sigma = exp(4 c_noise)`` and ``x = x_in / c_in`` and emits the exact ``F* = (D - c_skip x) / c_out``."""

    def __init__(self, denoiser, sigma_data: float) -> None:
        super().__init__()
        self.denoiser, self.sd = denoiser, sigma_data

    def forward(self, x_in, c_noise):
        s = torch.exp(4 * c_noise.double())
        norm = torch.sqrt(s**2 + self.sd**2)
        x = x_in.double() * norm[:, None]
        c_skip, c_out = self.sd**2 / norm**2, s * self.sd / norm
        return (self.denoiser(x, s) - c_skip[:, None] * x) / c_out[:, None]


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_wrapping_the_exact_target_reproduces_the_exact_denoiser(dtype, rtol):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    exact = GaussianDenoiser(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64), a @ a.T / 3 + 0.1 * torch.eye(3, dtype=torch.float64))
    wrapped = EDMPrecond(ExactTarget(exact, 0.5), sigma_data=0.5)
    for sigma in [1e-4, 1e-2, 1.0, 1e2, 1e4]:
        x = (sigma * torch.randn(16, 3, generator=g, dtype=torch.float64)).to(dtype)
        out = wrapped(x, torch.full((16,), sigma, dtype=dtype))
        assert out.dtype == dtype and bool(torch.isfinite(out).all())
        ref = exact(x.double(), sigma)
        torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=rtol * (1 + sigma * 1e-3))


def test_float_and_tensor_sigma_agree_and_bad_input_raises():
    net = nn.Linear(4, 4).double()
    model = EDMPrecond(_Scale(net))
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x, 0.7), model(x, torch.full((5,), 0.7, dtype=torch.float64)))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        model(x, 0.0)
    with pytest.raises(ValueError, match=r"sigma must be a float or a tensor of shape \(5,\)"):
        model(x, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma_data"):
        EDMPrecond(net, sigma_data=0.0)


class _Scale(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_in, c_noise):
        return self.net(x_in) * c_noise[:, None]
