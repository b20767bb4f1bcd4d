"""Copy tables of generation: which denoiser, and which noise range, makes samples copy training items.

Any denoisers, usually with no training: ``sims.samplers.generate`` (EDM Heun, Karras steps) runs on exact denoisers:
the empirical optimum (copies by construction), a Gaussian / population denoiser (never copies), the
ambient optimum above ``sigma_n``, patch-local denoisers, and hybrids

    S(x, sigma) = high(x, sigma) if sigma > sigma_switch else low(x, sigma)      (``theory.switch.SwitchDenoiser``)

A sample copies when its nearest training item is much nearer than the second nearest,
``d_1 / d_2 < 1/3`` (``sims.metrics.memorization_report``). Sweeping ``sigma_switch`` with the memorizer
above and a generalizer below shows down to which noise level the choice of an item stays open. (With
the empirical optimum *below* the switch every sample copies, whatever the switch: its last Heun step,
``sigma_min -> 0``, returns the nearest training item; a patch-local memorizer there need not copy.)

Theory: docs/THEORY.md §2.6, §5.4, §6.3."""
from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping

import pandas as pd
from torch import Tensor

from sims.metrics import memorization_report
from sims.samplers import generate
from theory.denoiser import Denoiser, check_batch, check_data, check_sigmas
from theory.switch import SwitchDenoiser


def copy_stats(samples: Tensor, train: Tensor) -> dict[str, float]:
    """Share of ``samples`` copying a training item (``d_1 / d_2 < 1/3``) and mean nearest distance ``d_1``."""
    rep = memorization_report(samples, train)
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
