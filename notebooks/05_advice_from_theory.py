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
# # Choosing sigma_n and the interval from theory
#
# Two training recipes against memorization each need a number before any net is trained:
#
# * **ambient training** (Shah et al. 2025, docs/THEORY.md §4.7) trains on clean items below a corruption level
#   `sigma_n` and on fixed noisy copies `y_i = x_i + sigma_n eps_i` above it: which `sigma_n`?
# * **CI timestep sampling** (Vu et al. 2026, §4.6) draws the training noise levels from a Gaussian given by a
#   confidence interval `[c_l, c_h]`: which interval?
#
# `memdiff advise DATA` answers both from the closed-form denoisers of one training set (§3.8), with no
# training. This notebook walks through that advice step by step, calling the package's functions
# (`memdiff.advise`) rather than the command: on the Gaussian mixture, whose population denoiser and density are
# known exactly, and (not in fast mode) on MNIST-1D, each with `n = 100` training items. Every number below comes
# from the cells' output. With `MEMDIFF_FAST=1` (as in the tests) the noise grids, the Monte Carlo averages and
# the closed-form samples are smaller and only the mixture is advised. The notebook writes no file.

# %%
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: idle threads sleep, not spin
import math
import tomllib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from tqdm.auto import tqdm

from memdiff.advise import (EDM_DOMAIN, SCHEDULE, AdviseConfig, advise, intervals, load, lowest_safe_level,
                            method_specs, plot_advice, share_above)
from memdiff.demo import markdown
from sims.artifacts import REPO_ROOT
from sims.methods import build_method
from theory.denoiser import log_sigma_grid

FAST = os.environ.get("MEMDIFF_FAST") == "1"
torch.set_num_threads(min(2, torch.get_num_threads()))
N = 100
SMALL = dict(test=128, sigmas=log_sigma_grid(0.01, 100.0, 13).tolist(), switches=log_sigma_grid(0.05, 20.0, 8).tolist(),
             num_items=96, samples=64, steps=12)
CONFIGS = {"gmm": AdviseConfig(data="gmm", n=N, **(SMALL if FAST else {}))}
if not FAST:
    CONFIGS["mnist1d"] = AdviseConfig(data="mnist1d", n=N)
TITLE = {"gmm": "Gaussian mixture", "mnist1d": "MNIST-1D"}
for name, cfg in CONFIGS.items():
    print(f"{name}: n = {cfg.n}, {len(cfg.sigmas)} levels of M from {min(cfg.sigmas):g} to {max(cfg.sigmas):g}, "
          f"{len(cfg.switches)} sweep levels from {min(cfg.switches):g} to {max(cfg.switches):g}, "
          f"{cfg.num_items} Monte Carlo items, {cfg.samples} samples per sweep level, {cfg.steps} EDM Heun steps")

# %% [markdown]
# ## The advice, computed
#
# `load` draws the training, held-out and pool sets as `memdiff theory` draws them and builds the reference
# `D_gen`, the best generalizing denoiser available (§3.7): the exact mixture denoiser for the Gaussian mixture,
# the Wiener fit of a large disjoint pool for MNIST-1D. `advise` computes the three levels, the rule and the
# intervals; the sections below take its evidence apart.

# %%
pops, advice = {}, {}
for name, cfg in CONFIGS.items():
    pops[name] = load(cfg)
    advice[name] = advise(pops[name], cfg, progress=lambda it, name=name: tqdm(it, desc=name, leave=False))
    print(f"advised sigma_n ({name}, n = {cfg.n}): {advice[name]['sigma_n']:g}")

# %% [markdown]
# ## Step 1: where is memorization necessary? `M(sigma)`, `sigma_M` and `sigma_C`
#
# With the training loss `L_train(D, sigma) = E_i E_z ||D(x_i + sigma z, sigma) - x_i||^2 / d` (§3.1), the
# **memorization necessity** (§3.2) compares the empirical optimum `D_emp` (the posterior mean under the training
# set itself, §2.1, the denoiser with the lowest training loss, which can only reproduce training items) with the
# reference:
#
# `M(sigma) = 1 - L_train(D_emp, sigma) / L_train(D_gen, sigma)`.
#
# Near 1, only copying reaches the optimal training loss; near 0 nothing is gained by copying.
# **`sigma_M`** is where `M` falls through 1/2 (linear interpolation in `log sigma`): below it a denoiser has to
# copy to come within a factor 2 of the optimal training loss.
#
# Beside it, the **collapse level** `sigma_C` (§3.5, after Biroli et al. 2024), the root of the excess entropy
# with the reference's density `p_sigma`,
#
# `f(sigma) = (1/d) [log n + (d/2) log(2 pi e sigma^2) + E log p_sigma(x)] = (log n - I(x0; x)) / d`:
#
# below `sigma_C` a noisy point carries more than `log n` nats about its clean origin, enough to single out one
# training item. The two are computed independently (a loss ratio and an information criterion); how close they
# come is printed below.

# %%
rows = []
for name, a in advice.items():
    ev = a["evidence"]
    rows.append({"data": name, "n": ev["n"], "d": ev["d"], "reference": ev["reference"], "sigma_C": ev["sigma_C"],
                 "sigma_M": ev["sigma_M"], "sigma_M / sigma_C": ev["sigma_M"] / ev["sigma_C"]})
print(markdown(pd.DataFrame(rows)))
for name, a in advice.items():
    nec = pd.DataFrame(a["evidence"]["necessity"])
    print(f"{name}: M(sigma) of the empirical optimum\n" + markdown(nec))

# %% [markdown]
# ## Step 2: at which `sigma_n` do the noisy copies give their items away? The ambient sweep and `sigma_A`
#
# Ambient training never shows the net a clean item above `sigma_n`, but the noisy copies `y_i` sit near their
# items. The **ambient sweep** (§3.8) asks, in closed form, whether that is close enough to copy: for each level
# `s` of a grid it samples (EDM Heun, §5.4) the switch denoiser of §2.6
#
# `S_s(x, sigma) = D_amb(x, sigma)` for `sigma > s`,   `D_gen(x, sigma)` for `sigma <= s`,
#
# with `D_amb` the ambient optimum on the fixed copies `y_i = x_i + s eps_i` (§2.4, §4.8): the best an
# ambient-trained net can do above `s`, followed by a denoiser that never memorizes below it. A sample *copies*
# when its nearest training item is three times nearer than the second (`d_1 / d_2 < 1/3`, §6.3). At `sigma -> s+`
# the implied density of `D_amb` is `(1/n) sum_i N(y_i, tau^2 I)` with `tau -> 0`: the sampler is handed the
# noisy copies themselves, and for small `s` these are so near their items that even `D_gen` ends on them.
#
# **`sigma_A`** is the smallest swept `s` at which the copy share plus the diverged share, and the same sum at every
# larger swept level, is at most 1/10 (`max_copy_share`; a lone dip under a larger share does not count). The
# held-out items' own copy share against the training set is the criterion's base rate. A sample is *diverged* when
# its nearest training distance exceeds 10x the held-out items' largest: the ambient optimum's gain
# `sigma_n^2 / tau^2` diverges as `sigma -> s+` (§2.4, the note in §3.2), and a sampler step that lands just above
# `s` can throw a sample off the data. Such a sample is neither a copy nor evidence that the level is safe, so it
# counts against the level. `nn_distance` is the mean distance of the other samples to their nearest training item.

# %%
fig, axes = plt.subplots(len(advice), 2, figsize=(12, 4 * len(advice)), constrained_layout=True, squeeze=False)
for (name, a), (a_m, a_sw) in zip(advice.items(), axes):
    ev, cfg = a["evidence"], CONFIGS[name]
    sw = pd.DataFrame(ev["ambient_sweep"])
    # sigma_A again from the sweep, by the package's rule (a blown-up sample counts against a level, as a copy
    # does): the advice is what its evidence says
    assert lowest_safe_level(sw.sigma_n, sw.copy_share + sw.diverged_share, cfg.max_copy_share) == ev["sigma_A"]
    print(f"{name}: ambient sweep, {cfg.samples} samples per level (held-out copy share "
          f"{ev['heldout_copy_share']:.3f}); sigma_A = {ev['sigma_A']:.3g}\n" + markdown(sw))
    a_m.plot(ev["necessity"]["sigma"], ev["necessity"]["M"], "ko-", ms=3, label=r"$M(\sigma)$")
    a_m.axhline(0.5, color="0.5", lw=0.8)
    a_m.axvline(ev["sigma_M"], color="k", ls=":", label=rf"$\sigma_M$ = {ev['sigma_M']:.3g}")
    a_m.axvline(ev["sigma_C"], color="tab:red", ls="--", label=rf"$\sigma_C$ = {ev['sigma_C']:.3g}")
    a_m.axvline(a["sigma_n"], color="tab:green", lw=2, alpha=0.5, label=rf"$\sigma_n$ = {a['sigma_n']:g}")
    a_m.set(xscale="log", xlabel=r"$\sigma$", ylabel=r"$M = 1 - L_{train}(D_{emp}) / L_{train}(D_{gen})$",
            title=f"{TITLE[name]}, n = {ev['n']}: necessity")
    a_m.legend(fontsize=8)
    a_sw.plot(sw.sigma_n, sw.copy_share, "o-", color="tab:blue", label=r"$D_{amb}$ above $s$, $D_{gen}$ below")
    a_sw.plot(sw.sigma_n, sw.diverged_share, "x--", color="tab:red", label="diverged samples")
    a_sw.axhline(ev["max_copy_share"], color="0.5", lw=0.8, label="max_copy_share")
    a_sw.axhline(ev["heldout_copy_share"], color="0.5", ls=":", lw=0.8, label="held-out items")
    a_sw.axvline(ev["sigma_A"], color="tab:blue", ls=":", label=rf"$\sigma_A$ = {ev['sigma_A']:.3g}")
    a_sw.axvline(ev["sigma_M"], color="k", ls=":", label=r"$\sigma_M$")
    a_sw.axvline(a["sigma_n"], color="tab:green", lw=2, alpha=0.5, label=r"$\sigma_n$")
    a_sw.set(xscale="log", ylim=(-0.03, 1.03), xlabel=r"$s$ (= $\sigma_n$ of the sweep)",
             ylabel=r"share of samples (copy: $d_1 / d_2 < 1/3$)", title="closed-form ambient sweep")
    a_sw.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Step 3: the rule, `sigma_n = max(sigma_M, sigma_A)`
#
# Shah et al. train on clean data where memorization is necessary and on noisy copies above (§4.7). The rule
# (§3.8, memdiff's, built on the papers' logic) asks two things of `sigma_n`:
#
# 1. `sigma_n >= sigma_M`: the clean branch covers every level where memorization is necessary for the training
#    loss, so the ambient branch gives up little of it (quality);
# 2. `sigma_n >= sigma_A`: the ambient branch's own optimum does not give its items away (protection).
#
# Of the levels that satisfy both, the lowest puts the most levels under the noisy copies; it is rounded to 3
# significant digits. Which of the two conditions binds is data-dependent:

# %%
for name, a in advice.items():
    ev = a["evidence"]
    binding = "sigma_M (the necessity crossing)" if ev["sigma_M"] >= ev["sigma_A"] else "sigma_A (the ambient sweep)"
    print(f"{name}: sigma_n = max(sigma_M = {ev['sigma_M']:.3g}, sigma_A = {ev['sigma_A']:.3g}) = {a['sigma_n']:g}; "
          f"binding: {binding}")

# %% [markdown]
# What the rule cannot say: with the empirical optimum (not `D_gen`) below `sigma_n` every sample copies (§2.6),
# so no `sigma_n` protects against a net that reaches the clean optimum at low noise; the rule says where ambient
# training *can* help. And `sigma_M` is only as good as the reference: a weak generalizer (a Wiener fit on strongly
# non-Gaussian data) inflates `M` and moves `sigma_M` up.
#
# ## Step 4: the CI intervals, split at `sigma_n`
#
# Vu et al.'s confidence-interval Gaussian (§4.6) over a variable `v` puts 95% of its mass on `[c_l, c_h]`:
#
# `mu = (c_l + c_h) / 2`,   `std = (c_h - c_l) / (2 z)`,   `z = Phi^-1(0.975)`,
#
# truncated to the domain. The advice splits the noise axis at `sigma_n`, on two axes:
#
# * `u = t / T` of the linear DDPM schedule, `T = 1000` (§4.4): `sigma_t = sqrt((1 - abar_t) / abar_t)`; `t_n`
#   is the step whose `sigma_t` is nearest `sigma_n` in `log sigma`, and `u_n = t_n / T` (`ci_t`, DDPM form,
#   epsilon loss);
# * `ln sigma` on the EDM domain `[ln 0.002, ln 80]` (`ci_log_sigma`, EDM form, EDM loss).
#
# Two readings of "the timesteps that matter":
#
# * **high-noise reading**: `ci_t` on `[u_n, 1]`, `ci_log_sigma` on `[ln sigma_n, ln 80]`; learning is concentrated
#   where memorization is not necessary: the reading consistent with avoiding copies;
# * **low-noise reading** (the literal "later denoising steps", the last reverse steps): `ci_t` on `[0, u_n]`,
#   `ci_log_sigma` on `[ln 0.002, ln sigma_n]`; learning is concentrated where the copier is the training loss's
#   optimum (`M >= 1/2`): expect more copies, and barely trained high-noise sampler steps.
#
# Each law's exact share of draws above `sigma_n`, `sum_t pmf_t [sigma_t > sigma_n]` for laws over steps and
# `1 - CDF(ln sigma_n)` for laws over `ln sigma`, is what `memdiff advise` prints beside the intervals, with
# uniform DDPM steps and the EDM log-normal (`ln sigma ~ N(-1.2, 1.2^2)`, §4.5) for comparison.

# %%
for name, a in advice.items():
    ci, s_n = a["ci"], a["sigma_n"]
    assert ci == intervals(s_n)  # the package's split, recomputed from sigma_n alone
    t_n = int(SCHEDULE.t_from_sigma(s_n))
    print(f"{name}: sigma_n = {s_n:g} -> t_n = {t_n} (sigma_t = {SCHEDULE.sigmas[t_n].item():.4g}), "
          f"u_n = {t_n / SCHEDULE.T:g}, ln sigma_n = {math.log(s_n):.3f}")
    share = a["evidence"]["share_above_sigma_n"]
    rows = [{"law": m["name"], "reading": m["name"].rsplit("_", 1)[1], "kind": m["noise"]["kind"],
             "interval": str(m["noise"]["interval"]), "share above sigma_n": share[m["name"]]}
            for m in a["config_snippet"]["methods"][1:]]
    rows += [{"law": k, "reading": "-", "kind": k, "interval": "-", "share above sigma_n": share[k]}
             for k in ("uniform_steps", "edm_lognormal")]
    table = pd.DataFrame(rows)
    # the shares again from the laws themselves
    assert np.allclose([share_above(build_method(m).levels, s_n) for m in a["config_snippet"]["methods"][1:]],
                       table["share above sigma_n"][:-2])
    print(markdown(table))

# %%
fig, axes = plt.subplots(len(advice), 2, figsize=(12, 3.8 * len(advice)), constrained_layout=True, squeeze=False)
colors = {"low": "tab:cyan", "high": "tab:orange"}
for (name, a), (a_u, a_s) in zip(advice.items(), axes):
    s_n = a["sigma_n"]
    u_n = a["ci"]["high"]["ci_t"][0]
    u = np.arange(SCHEDULE.T) / SCHEDULE.T
    grid = np.linspace(math.log(EDM_DOMAIN[0]), math.log(EDM_DOMAIN[1]), 400)
    ln_t = SCHEDULE.sigmas.log().numpy()
    for m in a["config_snippet"]["methods"][1:]:
        law, reading = build_method(m).levels, m["name"].rsplit("_", 1)[1]
        if m["noise"]["kind"] == "ci_t":
            pmf = law.pmf().numpy()
            a_u.plot(u, pmf * SCHEDULE.T, color=colors[reading], label=f"ci_t {reading} {m['noise']['interval']}")
            a_s.plot(ln_t, pmf / np.gradient(ln_t), color=colors[reading], label=f"ci_t {reading} (on ln sigma_t)")
        else:
            a_s.plot(grid, law.pdf_log_sigma(grid).numpy(), color=colors[reading], ls="--",
                     label=f"ci_log_sigma {reading} {m['noise']['interval']}")
    a_u.axvline(u_n, color="tab:green", lw=2, alpha=0.5, label=f"u_n = {u_n:g}")
    a_s.axvline(math.log(s_n), color="tab:green", lw=2, alpha=0.5, label=f"ln sigma_n = {math.log(s_n):.3f}")
    a_s.axvspan(grid[0], math.log(a["evidence"]["sigma_M"]), color="0.9", zorder=0, label="M >= 1/2")
    a_u.set(xlabel="u = t / T (linear DDPM schedule, T = 1000)", ylabel="density of u",
            title=f"{TITLE[name]}: CI laws on the u axis")
    a_s.set(xlabel=r"$\ln\sigma$", ylabel=r"density of $\ln\sigma$", title="the same laws on log sigma")
    a_u.legend(fontsize=7)
    a_s.legend(fontsize=7)
plt.show()

# %% [markdown]
# On the right the `ci_t` laws are the same step laws pushed through the schedule's map `t -> ln sigma_t`
# (density `pmf_t / (d ln sigma_t / dt)`; the linear schedule reaches beyond the EDM domain's `ln 80`), so their
# shapes differ from the `ci_log_sigma` Gaussians; the split at `sigma_n` and each law's share on its side (the
# table above) are what the two forms have in common. The grey band is where `M >= 1/2`.
#
# What `memdiff advise` prints, and the figure it writes beside `advice.json` (`advice.png`, `plot_advice`):

# %%
for name, a in advice.items():
    print("\n".join(a["reasoning"]), end="\n\n")
for name, a in advice.items():
    plot_advice(a)
    plt.show()

# %% [markdown]
# ## Step 5: the `[[methods]]` snippet for a grid config
#
# `advice["config_snippet"]["methods"]` holds `sims.methods` specs: hybrid ambient at the advised `sigma_n` (with
# the EDM log-normal over the levels), and per reading the CI law in DDPM form (epsilon loss, `ci_t`) and in EDM
# form (EDM loss, `ci_log_sigma`). In TOML, ready to paste into a grid config such as `configs/sim_fitted.toml`
# (run with `memdiff sim --config ...`); the text is parsed back and compared with the specs below.


# %%
def toml_value(v) -> str:
    """A TOML value of the snippet's kinds: string, number, list of numbers, inline table."""
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def methods_toml(methods: list[dict]) -> str:
    return "\n".join("[[methods]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in m.items()) for m in methods)


for name, a in advice.items():
    snippet = methods_toml(a["config_snippet"]["methods"])
    assert tomllib.loads(snippet) == a["config_snippet"]  # the text is the advice
    assert a["config_snippet"]["methods"] == method_specs(CONFIGS[name].tag, a["sigma_n"], a["ci"])
    print(f"# advice for {name}, n = {CONFIGS[name].n}: sigma_n = {a['sigma_n']:g}\n{snippet}")

# %% [markdown]
# ## Was the advice right?
#
# The numbers above are predictions of the closed forms. They are checked against trained nets by
# `memdiff figs confirm` (§7.8), with a rule fixed before any trained number was looked at: on a trained sweep of
# the same data set and `n` (ambient training at several `sigma_n`, CI intervals at several boundaries), a swept
# method *qualifies* when the upper end of the 95% t-interval of its paired per-seed FD difference to the EDM
# baseline is at most the margin `f` times the baseline's mean FD; the qualifying methods are ranked by copy
# share (the others after them by FD). The advice is "right (rank 1)" when its nearest swept method is the best,
# else "off by k ranks", with the frontier loss in copy share and FD. `memdiff figs explain` (§6.10) says what the
# trained nets are per noise level: the share of their corrections each closed form explains, and whether the
# ambient-trained nets are the hybrid ambient optimum of Step 2.
#
# The committed tables, when published (`--publish`), are shown here; their advice names its data set and `n`,
# which need not be those advised above.

# %%
PUBLISHED = {"confirm": ("paper_figs/confirm/confirm.md", "memdiff figs confirm --runs runs/sim_fitted --advice "
                                                          "paper_figs/advise/mnist1d_n100 --publish"),
             "confirm on digits": ("paper_figs/confirm_image/confirm.md", "memdiff figs confirm --runs runs/image_grid "
                                   "--advice paper_figs/advise/digits_n100 --out paper_figs/confirm_image"),
             "explain": ("paper_figs/explain_fitted/explain.md", "memdiff figs explain --runs runs/sim_fitted --out "
                                                                 "paper_figs/explain_fitted")}
for key, (path, command) in PUBLISHED.items():
    file = REPO_ROOT / path
    if file.is_file():
        print(f"{path}:")
        display(Markdown(file.read_text()))
    else:
        print(f"{path} has not been published yet: `{command}` produces it.")
