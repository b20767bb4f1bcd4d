"""EDM preconditioning (Karras et al. 2022): a raw network ``F(x_in, c_noise)`` becomes a denoiser

    D(x, sigma) = c_skip x + c_out F(c_in x, c_noise),
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),  c_noise = ln(sigma) / 4,

with ``sd = sigma_data``, so that ``F``'s input and target both have unit variance at every sigma.

Theory: docs/THEORY.md §4.1 (Karras et al. 2022, Table 1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from theory.denoiser import Sigma, expand_like, per_item


class EDMPrecond(nn.Module):
    """The denoiser ``D(x, sigma)`` of the shared interface around ``net(x_in, c_noise)``."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.net, self.sigma_data = net, float(sigma_data)

    def forward(self, x: Tensor, sigma: Sigma) -> Tensor:
        if not torch.is_tensor(sigma) and not sigma > 0:  # a tensor's values are the caller's to check (no sync)
            raise ValueError(f"sigma must be > 0, got {sigma}")
        s = per_item(sigma, x, "sigma")
        norm = torch.hypot(s, s.new_tensor(self.sigma_data))
        c_skip, c_out, c_in = self.sigma_data**2 / norm**2, s * self.sigma_data / norm, 1 / norm
        f = self.net(expand_like(c_in, x) * x, s.log() / 4)
        return expand_like(c_skip, x) * x + expand_like(c_out, x) * f.to(x.dtype)

