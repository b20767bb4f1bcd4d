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
# # Confidence-interval timestep sampling, on 1D signals
#
# Vu et al. (arXiv 2601.21348) draw training timesteps from a Gaussian described by a confidence interval
# `[c_l, c_h]` on `u = t/T` instead of uniformly: the width is the knob of the memorization-generalization
# trade-off and the position says where learning happens; "shifting emphasis to later denoising steps"
# is claimed to lower memorization and improve alignment. "Later" is ambiguous (small `t` = low noise =
# late in the reverse trajectory, or large `t`), so the grid runs both directions, in DDPM form (interval
# on `t`, epsilon loss) and in EDM form (interval on `log sigma`, EDM loss).
#
# With `MEMDIFF_FAST=1` (as in the tests) a tiny grid replaces the full one.

# %%

import matplotlib.pyplot as plt
import numpy as np
import torch

from memdiff.results import notebook_results, summarise
from sims.methods import build_method

df, raw = notebook_results()

# %% [markdown]
# ## What each method trains on: the distribution of sigma
#
# Histograms of `log10 sigma` drawn from each method's noise-level distribution (the same objects the
# trainer uses).

# %%
methods = {r["method"]["name"]: r["method"] for r in raw.values()}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, spec in sorted(methods.items()):
    loss = build_method(spec, sigma_data=1.0).loss
    s = loss.levels.sample(20000, generator=torch.Generator().manual_seed(0)).sigma
    ax.hist(np.log10(s.numpy()), bins=80, histtype="step", density=True, label=name)
ax.set_xlabel("log10 sigma")
ax.legend(fontsize=6)
plt.show()

# %% [markdown]
# ## Width and direction against memorization and quality

# %%
summary = summarise(df)
ci = summary[summary.family.isin(["standard", "CI (DDPM, t)", "CI (EDM, log sigma)"])]
ci[["dataset", "n", "method", "seeds", "copy_share", "copy_share_pm", "nn_distance", "fd", "wasserstein", "js"]]

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for _, r in ci.iterrows():
    marker = "v" if "low" in r["method"] else ("^" if "high" in r["method"] else "o")
    axes[0].plot(r["wasserstein"], r["nn_distance"], marker, label=r["method"])
    axes[1].plot(r["fd"], r["copy_share"], marker, label=r["method"])
axes[0].set_xlabel("PCA Wasserstein to held-out")
axes[0].set_ylabel("mean distance to nearest train item")
axes[1].set_xlabel("FD (own features)")
axes[1].set_ylabel("copy share")
axes[1].legend(fontsize=6)
plt.show()

# %% [markdown]
# Reading the result: if narrowing the interval moves the methods along a curve from "copies, good FD"
# to "no copies, worse FD", the width controls the trade-off (claim C4); the direction whose methods sit
# below and left of uniform `ddpm` is the "later" that reproduces claim C5. The paired test: per seed,
# `method - baseline`, mean ± 95% t-interval (`memdiff.claims`; verdicts in the README's "1D-track results").

# %%
from memdiff.claims import paired, paired_table

have = set(df.method)
rows = [r for m in sorted(have) if m.startswith("ci_ddpm") and "ddpm" in have for r in paired(df, m, "ddpm")]
rows += [r for m in sorted(have) if m.startswith("ci_edm") and "edm" in have for r in paired(df, m, "edm")]
print(paired_table(rows))
