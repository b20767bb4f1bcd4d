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
# # Ambient diffusion against memorization, on 1D signals
#
# Shah et al. (ICML 2025) claim that memorization is only *necessary* at low noise: above a noise level
# `sigma_n` a denoiser can be trained on fixed noisy copies `y_i = x_i + sigma_n eps_i` with the ambient
# loss, which never shows it a clean item, and still reach the clean optimum in the population limit.
#
# This notebook reads the 1D grid (`memdiff sim`, results in `runs/sim_grid`) and compares standard EDM
# training with the hybrid ambient loss over a `sigma_n` sweep on MNIST-1D, simulated ECG beats and a
# Gaussian mixture. With `MEMDIFF_FAST=1` (as in the tests) it runs a tiny grid instead.

# %%

import matplotlib.pyplot as plt
import numpy as np

from memdiff.figs_sim import readout_figure
from memdiff.results import notebook_results, summarise

df, raw = notebook_results()

# %% [markdown]
# ## Where is memorization necessary? M(sigma) against r(sigma)
#
# `M(sigma) = 1 - L_train(D_emp) / L_train(D_gen)`: near 1 only the memorizer lowers the training loss;
# near 0 nothing is gained by memorizing. `r(sigma) = E||D_theta - D_emp||^2 / E||D_gen - D_emp||^2` says
# how close the trained net is to the memorizer (0) or the generalizer (1) on the same noisy inputs.

# %%
dataset, n = df.sort_values("n").iloc[0][["dataset", "n"]]
sub = {k: v for k, v in raw.items() if v["family"] in ("standard", "ambient")}
fig = readout_figure(sub, dataset, int(n))
plt.show()

# %% [markdown]
# ## Memorization at equal quality
#
# Each row: mean and 95% t-interval over seeds. `copy_share` is the share of samples whose nearest
# training item is three times closer than the second nearest; `fd` the Frechet distance on the package's
# own classifier features (no pretrained network exists for these signals).

# %%
summary = summarise(df)
cols = ["dataset", "n", "method", "seeds", "copy_share", "copy_share_pm", "nn_distance", "fd", "fd_pm", "wasserstein"]
table = summary[summary.family.isin(["standard", "ambient"])][cols]
table

# %%
fig, ax = plt.subplots(figsize=(5, 4))
for _, r in table.iterrows():
    ax.errorbar(r["fd"], r["copy_share"], yerr=r["copy_share_pm"] if np.isfinite(r["copy_share_pm"]) else None,
                fmt="o", label=f"{r['dataset']} n={r['n']} {r['method']}")
ax.set_xlabel("FD (own features)")
ax.set_ylabel("copy share")
ax.legend(fontsize=6)
plt.show()

# %% [markdown]
# Reading the result: ambient training should lower `copy_share` (and raise `nn_distance`) relative to
# `edm` for a `sigma_n` at which `fd` is not worse. The paired test: per seed (same training subset and
# sampler noise), `ambient - edm`, mean ± 95% t-interval over seeds (`memdiff.claims`, as in
# `paper_figs/sim/claims.md`; the verdicts are in the README's "1D-track results").

# %%
from memdiff.claims import paired, paired_table

ambient = sorted(m for m in set(df.method) if m.startswith("ambient_") and "_ci_" not in m)
print(paired_table([row for m in ambient for row in paired(df, m, "edm")]))
