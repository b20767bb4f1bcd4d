"""Generation with closed-form denoisers: which noise range decides whether samples copy training items.

No training: the EDM Heun sampler (``sims.samplers.edm_heun``, Karras steps) runs on exact denoisers:
the empirical optimum (copies by construction), a Gaussian / population denoiser (never copies), the
ambient optimum above ``sigma_n``, patch-local denoisers, and hybrids

    S(x, sigma) = high(x, sigma) if sigma > sigma_switch else low(x, sigma)      (SwitchDenoiser)

A sample copies when its nearest training item is much nearer than the second nearest,
``d_1 / d_2 < 1/3`` (``sims.metrics.memorization_report``). Sweeping ``sigma_switch`` with the memorizer
above and a generalizer below shows down to which noise level the choice of an item stays open. (With
the empirical optimum *below* the switch every sample copies, whatever the switch: its last Heun step,
``sigma_min -> 0``, returns the nearest training item; a patch-local memorizer there need not copy.)
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Mapping

import pandas as pd
import torch
from torch import Tensor

from theory.denoiser import Denoiser, Sigma, check_batch, sigma_per_item
from theory.diagnostics import check_sigmas, seeded_generator
from theory.empirical import check_data, check_positive_int


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


@torch.no_grad()
def generate(denoiser: Denoiser, num: int, item_shape: tuple[int, ...], *, steps: int = 18,
             sigma_min: float = 0.002, sigma_max: float = 80.0, seed: int = 0,
             dtype: torch.dtype = torch.float32) -> Tensor:
    """``num`` samples by EDM Heun over ``steps`` Karras noise levels from seeded standard-normal noise."""
    from sims import samplers, schedules

    check_sigmas([sigma_min, sigma_max], "sigma_min, sigma_max")
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min, sigma_max must satisfy sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    noise = torch.randn(check_positive_int(num, "num"), *item_shape, generator=seeded_generator(seed, 11), dtype=dtype)
    sigmas = schedules.karras_sigmas(check_positive_int(steps, "steps"), sigma_min=sigma_min, sigma_max=sigma_max)
    return samplers.edm_heun(denoiser, noise, sigmas)


def copy_stats(samples: Tensor, train: Tensor) -> dict[str, float]:
    """Share of ``samples`` copying a training item (``d_1 / d_2 < 1/3``) and mean nearest distance ``d_1``."""
    from sims import metrics

    rep = metrics.memorization_report(samples, train)
    return {"copy_share": float(rep["copy_share"]), "nn_distance": float(rep["nn_distance"])}


def generation_table(denoisers: Mapping[str, Denoiser], train: Tensor, *, num_samples: int = 256,
                     seed: int = 0, progress: Callable[[Iterable], Iterable] | None = None,
                     **sampler_options) -> pd.DataFrame:
    """One row per named denoiser: ``copy_share``, ``nn_distance`` and sampling ``seconds``; every
    denoiser starts from the same noise (``seed``). ``sampler_options`` go to :func:`generate`."""
    train = check_data(train, "train")
    if not denoisers:
        raise ValueError("denoisers must name at least one denoiser")
    rows = []
    items = list(denoisers.items())
    for name, den in (progress(items) if progress else items):
        t0 = time.perf_counter()
        samples = generate(den, num_samples, tuple(train.shape[1:]), seed=seed, dtype=train.dtype, **sampler_options)
        rows.append({"denoiser": name, **copy_stats(check_batch(samples, tuple(train.shape[1:]), "samples"), train),
                     "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows, columns=["denoiser", "copy_share", "nn_distance", "seconds"])


def switch_sweep(hybrids: Mapping[str, tuple[Denoiser, Denoiser]], train: Tensor, switches: Iterable[float], *,
                 num_samples: int = 256, seed: int = 0, progress: Callable[[Iterable], Iterable] | None = None,
                 **sampler_options) -> pd.DataFrame:
    """Copy share against ``sigma_switch`` for named ``(high, low)`` pairs, each sampled as
    ``SwitchDenoiser(high, low, sigma_switch)``. Tidy: ``sigma_switch, hybrid, copy_share, nn_distance, seconds``."""
    grid = check_sigmas(switches, "switches")
    if not hybrids:
        raise ValueError("hybrids must name at least one (high, low) pair")
    named = {(h, float(s)): SwitchDenoiser(high, low, float(s)) for h, (high, low) in hybrids.items() for s in grid}
    table = generation_table({f"{h}@{s:g}": d for (h, s), d in named.items()}, train, num_samples=num_samples,
                             seed=seed, progress=progress, **sampler_options)
    table.insert(0, "hybrid", [h for h, _ in named])
    table.insert(0, "sigma_switch", [s for _, s in named])
    return table.drop(columns="denoiser")
