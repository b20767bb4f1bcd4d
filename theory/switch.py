"""Switch (hybrid) denoisers: one closed form above a noise level, another at and below it.

    S(x, sigma) = high(x, sigma) if sigma > sigma_switch else low(x, sigma)

With ``high`` the ambient optimum and ``low`` the empirical optimum at ``sigma_switch = sigma_n`` this is
the best denoiser the hybrid ambient loss can learn (docs/THEORY.md §2.6); with a generalizer on one side
and a memorizer on the other it asks which noise range decides whether samples copy.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from theory.denoiser import Denoiser, Sigma, sigma_per_item


class SwitchDenoiser:
    """``high`` at noise levels above ``sigma_switch``, ``low`` at and below it (decided per item)."""

    def __init__(self, high: Denoiser, low: Denoiser, sigma_switch: float) -> None:
        if isinstance(sigma_switch, bool) or not isinstance(sigma_switch, (int, float)) \
                or not math.isfinite(sigma_switch) or sigma_switch <= 0:
            raise ValueError(f"sigma_switch must be a finite float > 0, got {sigma_switch!r}")
        self.high, self.low, self.sigma_switch = high, low, float(sigma_switch)

    def __call__(self, x: Tensor, sigma: Sigma) -> Tensor:
        s = sigma_per_item(sigma, x)
        above = s > self.sigma_switch
        if bool(above.all()):
            return self.high(x, sigma)
        if not bool(above.any()):
            return self.low(x, sigma)
        out = torch.empty_like(x)
        out[above] = self.high(x[above], s[above]).to(x.dtype)
        out[~above] = self.low(x[~above], s[~above]).to(x.dtype)
        return out
