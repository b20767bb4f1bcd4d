# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Where does each training recipe learn? Noise-level distributions against the collapse level
#
# A diffusion model is trained on noise levels drawn from some distribution; the loss only shapes the
# denoiser where that distribution puts mass. Notebook 01 showed that memorizing the training set is
# *necessary* only below the collapse level `sigma_C` of the data set. So a simple question decides a lot:
# how much of each recipe's training mass lies below `sigma_C`?
#
# The recipes are the grid's (`configs/sim_grid.toml`): EDM's log-normal, DDPM's uniform steps, the
# confidence-interval (CI) Gaussians of Vu et al. (arXiv 2601.21348) on `u = t/T` and on `ln sigma`,
# and the ambient hybrids of Shah et al. (arXiv 2502.21278), which see clean data only below `sigma_n`.
# Every curve below is an exact law (`pmf()` or `pdf_log_sigma`), not a histogram.
#
# With `MEMDIFF_FAST=1` (as in the tests) the collapse level is estimated on fewer items.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from memdiff.demo import markdown
from memdiff.sim import GRID_CONFIG
from sims.cell import training_subset
from sims.grid import load_config
from sims.noise_levels import EDMLogNormal, LogitNormal, UniformSteps
from sims.schedules import DDPMSchedule
from sims.methods import build_method
from sims.track1d.data import mnist1d
from theory.diagnostics import collapse_sigma_entropy

FAST = os.environ.get("MEMDIFF_FAST") == "1"
methods = {m["name"]: m for m in load_config(GRID_CONFIG)["methods"]}
laws = {name: build_method(spec, sigma_data=1.0).levels for name, spec in methods.items()}
laws["sd3_logit_normal"] = LogitNormal()
laws["ddpm_cosine"] = UniformSteps(DDPMSchedule("cosine"))
print(f"{len(laws)} noise-level laws:", ", ".join(laws))

# %% [markdown]
# ## Densities over `ln sigma`
#
# A law over DDPM steps `t` becomes a density over `ln sigma` by dividing each step's mass by the width of
# its cell in `ln sigma` (`pmf[t] / d ln sigma_t`). The linear schedule's steps are far from even in
# `ln sigma`: uniform steps put most of their mass at high noise.

# %%
grid = torch.linspace(math.log(2e-3), math.log(160.0), 600, dtype=torch.float64)


def over_steps(law) -> bool:
    """A law over DDPM steps (exact ``pmf()``), not over ``ln sigma``."""
    return hasattr(law, "pmf") and getattr(law, "space", "t") == "t"


def density_over_log_sigma(law) -> tuple[np.ndarray, np.ndarray]:
    """``(ln sigma, density)`` for a step law (through its schedule) or a continuous one."""
    if over_steps(law):
        log_s = law.schedule.sigmas.log()
        return log_s.numpy(), (law.pmf() / torch.gradient(log_s)[0]).numpy()
    return grid.numpy(), law.pdf_log_sigma(grid).numpy()


groups = {"standard and SD3": ["edm", "ddpm", "ddpm_cosine", "sd3_logit_normal"],
          "CI on u = t/T (DDPM form)": [n for n in laws if n.startswith("ci_ddpm")],
          "CI on ln sigma (EDM form) and ambient": ["ci_edm_low", "ci_edm_high", "ambient_1.0"]}
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), sharey=True)
for ax, (title, names) in zip(axes, groups.items()):
    for name in names:
        x, y = density_over_log_sigma(laws[name])
        ax.plot(x / math.log(10), y * math.log(10), label=name)  # density per decade
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("log10 sigma")
    ax.legend(fontsize=7)
axes[0].set_ylabel("density per decade of sigma")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The same laws over DDPM steps
#
# The CI Gaussians are defined here; `[0, w]` is "late in the reverse trajectory" (low noise) and
# `[1 - w, 1]` "late in the forward process" (high noise). Both readings of the paper's "later denoising
# steps" are in the grid.

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
for name, law in laws.items():
    if over_steps(law):
        ax.plot(law.pmf().numpy(), label=name, lw=1)
ax.set_xlabel("DDPM step t (0 = least noise)")
ax.set_ylabel("probability")
ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# ## Mass relative to the collapse level of MNIST-1D (n = 300)
#
# `sigma_C` by the entropy criterion (notebook 01) on a training set of 300 MNIST-1D signals drawn as in the
# grid. For each law: the probability of training below `sigma_C / 2` (deep in the regime where the optimum
# copies), below `sigma_C`, and above `2 sigma_C` (where copying is not needed). For the ambient hybrids the
# last column is the mass that sees clean data below `sigma_C`, i.e. below `min(sigma_n, sigma_C)`.

# %%
source, _ = mnist1d(2000 if not FAST else 600, seed=0)
train, _ = training_subset(source, 300, seed=0)
sigma_c = collapse_sigma_entropy(train, num_items=128 if FAST else 512)
print(f"sigma_C (MNIST-1D, n = 300): {sigma_c:.3f}; data std {float(train.std()):.3f} "
      "(the grid's sigma_data; EDM's P_mean = -1.2 was tuned for sigma_data = 0.5)")


def prob_below(law, sigma: float) -> float:
    """``P(sigma_train <= sigma)``, exactly."""
    if over_steps(law):
        return float(law.pmf()[law.schedule.sigmas <= sigma].sum())
    return float(law.cdf_log_sigma(torch.tensor(math.log(sigma), dtype=torch.float64)))


rows = []
for name, law in laws.items():
    sigma_n = methods.get(name, {}).get("sigma_n")
    clean_cut = min(sigma_c, sigma_n) if sigma_n else sigma_c
    rows.append({"law": name, "P(< sigma_C/2)": prob_below(law, sigma_c / 2), "P(< sigma_C)": prob_below(law, sigma_c),
                 "P(> 2 sigma_C)": 1 - prob_below(law, 2 * sigma_c), "clean mass below sigma_C": prob_below(law, clean_cut)})
table = pd.DataFrame(rows).set_index("law").sort_values("P(< sigma_C)")
print(markdown(table.reset_index()))

# %% [markdown]
# Reading the table: the high-noise CI intervals train almost nowhere below `sigma_C`, so nothing pushes
# them to copy, and nothing teaches them fine detail either; the low-noise intervals put most of their mass
# exactly where the optimal denoiser is a copier. The ambient hybrids keep the EDM law but see clean data
# only below `sigma_n`: with `sigma_n < sigma_C` the clean mass below `sigma_C` shrinks to that below `sigma_n`.
# Notebooks 03 and 04 measure what trained networks do with these budgets.
#
# ## The SNR argument
#
# Vu et al. motivate the CI sampler by the spread of the signal-to-noise ratio `SNR_t = abar_t / (1 - abar_t)
# = 1 / sigma_t^2` across steps: uniform steps weight all of them equally although their SNR differs by
# orders of magnitude. Below, `log10 SNR` against `u = t/T` for both schedules, with the collapse level of
# the data set (`SNR = 1 / sigma_C^2`) marked: the steps left of the crossing are those at which the optimal
# denoiser of the training set copies.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for kind in ("linear", "cosine"):
    sched = DDPMSchedule(kind)
    u = (torch.arange(sched.T) + 0.5) / sched.T
    log_snr = -2 * sched.sigmas.log10()
    ax.plot(u.numpy(), log_snr.numpy(), label=f"{kind} schedule")
    below = float((sched.sigmas <= sigma_c).double().mean())
    print(f"{kind}: SNR spans 10^{log_snr.min():.1f} .. 10^{log_snr.max():.1f}; "
          f"{below:.1%} of uniform steps lie below sigma_C")
ax.axhline(-2 * math.log10(sigma_c), color="k", ls="--", lw=1, label="SNR at sigma_C (MNIST-1D, n=300)")
ax.set_xlabel("u = t / T")
ax.set_ylabel("log10 SNR")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Under the epsilon loss every step has the same weight in noise space, which is a weight `1 / sigma^2 = SNR`
# in data space: the low-noise steps, where memorization is necessary, dominate the data-space objective.
# Moving the CI interval toward high noise removes that emphasis; toward low noise strengthens it.

# %%
edm = EDMLogNormal()
print(f"EDM log-normal: median sigma {math.exp(edm.P_mean):.3f}, "
      f"P(sigma < sigma_C) = {prob_below(edm, sigma_c):.3f}")
