"""``memdiff advise DATA``: the corruption level ``sigma_n`` of ambient training and the intervals of CI timestep
sampling, from the closed forms on one training set (docs/THEORY.md §3.8).

``DATA`` is ``mnist1d``, ``ecg`` (simulated beats), ``gmm``, ``digits`` (sklearn's 8x8), ``fashion-mnist`` (at
``--resolution``, the side after average pooling, as the image grid's datasets; default 28) or the path of a file of
signals (``sims.track1d.files.read_signals``). ``--n`` training items, a held-out set and a pool
are drawn by ``--seed`` as ``memdiff theory`` draws them (``memdiff.theory_run``); the reference ``D_gen`` is the
exact mixture denoiser for ``gmm`` and the Wiener fit of the pool otherwise (§3.7). Three levels:

* ``sigma_C``, the collapse level: the root of the excess entropy with the reference's density (§3.5);
* ``sigma_M``, where the necessity ``M(sigma) = 1 - L_train(D_emp) / L_train(D_gen)`` falls through 1/2 (§3.2):
  only below it does a denoiser have to copy to reach the optimal training loss;
* ``sigma_A``, the lowest level of the closed-form ambient sweep at and above which the hybrid
  ``S = D_amb`` above ``sigma_n``, ``D_gen`` at and below it (§2.4, §2.6), sampled with EDM Heun, copies at most
  ``max_copy_share`` (default 1/10) of its samples (``d_1 / d_2 < 1/3``, §6.3), counting as unsafe the samples
  the sampler blew up (nearest training distance over 10x the held-out items' largest). Below it the ambient optimum
  lands samples on noisy copies that lie so near their items that even a non-memorizing low-noise denoiser
  hands the items back.

The rule (§3.8): ``sigma_n = max(sigma_M, sigma_A)`` (3 significant digits), the lowest corruption level that
keeps clean training wherever memorization is necessary and whose noisy copies do not give their items away.
The CI intervals split the noise axis at ``sigma_n`` (§4.6): the high-noise reading ``[u_n, 1]`` on ``u = t / T``
(``ci_t``) and ``[ln sigma_n, ln 80]`` (``ci_log_sigma``), the low-noise reading ``[0, u_n]`` and
``[ln 0.002, ln sigma_n]``, with ``u_n = t_n / T`` and ``t_n`` the step of the linear DDPM schedule (T = 1000) whose
``sigma_t`` is nearest ``sigma_n`` in ``log sigma`` (§4.4); ``[0.002, 80]`` is the ``ci_log_sigma`` law's domain.

Writes ``advice.json`` (the advice, the evidence, a ``[[methods]]`` snippet for the grid configs, the reasoning
and the provenance of a figure sidecar: command, config, seed, git revision) and ``advice.png`` into ``--out``
(default ``runs/advise/<data>_n<n>``), built aside and swapped in whole; an earlier advice there is replaced only
with ``--overwrite``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from image_track.data import load_images
from image_track.features import DEFAULT_CACHE
from image_track.train import IMAGE_SHAPES
from memdiff.theory_plots import mark_levels
from memdiff import theory_run
from memdiff.theory_run import Population, noisy_copies
from sims.artifacts import atomic_folder, atomic_write, atomic_write_json, check_writable, provenance
from sims.generation import copy_stats
from sims.metrics import divergence_limit, sample_shares
from sims.methods import build_method
from sims.noise_levels import ConfidenceIntervalGaussian, UniformSteps
from sims.samplers import generate
from sims.schedules import DDPMSchedule
from sims.track1d.ecg import simulate_beats
from sims.track1d.files import read_signals
from theory import AmbientDenoiser, EmpiricalDenoiser
from theory.denoiser import check_positive_int, check_sigmas, log_sigma_grid
from theory.diagnostics import collapse_sigma_entropy, diagnose, necessity_crossing
from theory.switch import SwitchDenoiser

DATASETS = ("mnist1d", "ecg", "gmm", "digits", "fashion-mnist")
READINGS = ("low", "high")
SCHEDULE = DDPMSchedule()  # the ci_t law's default schedule (linear, T = 1000)
EDM_DOMAIN = (0.002, 80.0)  # the ci_log_sigma law's default domain of sigma
MARKER = "advice.json"


@dataclass
class AdviseConfig:
    """One ``memdiff advise`` run: ``data`` a name of ``DATASETS`` or a file path; sizes in items; ``sigmas`` the
    levels of ``M``, ``switches`` those of the ambient sweep; ``samples`` per switch level, ``steps`` EDM Heun."""

    data: str = "mnist1d"
    n: int = 300
    test: int = 500
    pool: int = 5000
    seed: int = 0
    sigmas: list[float] = field(default_factory=lambda: log_sigma_grid(0.01, 100.0, 21).tolist())
    switches: list[float] = field(default_factory=lambda: log_sigma_grid(0.02, 20.0, 16).tolist())
    num_items: int = 256
    samples: int = 256
    steps: int = 18
    max_copy_share: float = 0.1
    resolution: int | None = None

    def __post_init__(self) -> None:
        if self.data not in DATASETS and not Path(self.data).is_file():
            near = difflib.get_close_matches(self.data, DATASETS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"DATA must be one of {', '.join(DATASETS)} or the path of an existing file, "
                             f"got {self.data!r}{hint}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 2:
            raise ValueError(f"n must be an integer >= 2, got {self.n!r}")
        for name in ("test", "pool", "num_items", "samples", "steps"):
            check_positive_int(getattr(self, name), name)
        if not 0 < self.max_copy_share < 1:
            raise ValueError(f"max_copy_share must lie in (0, 1), got {self.max_copy_share!r}")
        side = IMAGE_SHAPES["fashion-mnist"][1]
        sides = [k for k in range(1, side + 1) if side % k == 0]
        if self.resolution is not None and (self.data != "fashion-mnist" or self.resolution not in sides):
            raise ValueError(f"resolution must be unset, or for fashion-mnist a divisor of {side} "
                             f"({', '.join(map(str, sides))}), got {self.resolution!r} for DATA {self.data!r}")
        self.sigmas = check_sigmas(self.sigmas).tolist()
        self.switches = sorted(set(check_sigmas(self.switches, "switches").tolist()))

    @property
    def name(self) -> str:
        """The data set's name, or the file's stem for a path."""
        return self.data if self.data in DATASETS else Path(self.data).stem

    @property
    def tag(self) -> str:
        """:func:`advice_tag` of this run."""
        return advice_tag(self.name, self.n, self.resolution)


def advice_tag(name: str, n: int, resolution: int | None = None) -> str:
    """``<name>_n<n>`` (``<name>_<resolution>px_n<n>`` at a resolution) in the letters that method names allow."""
    px = "" if resolution is None else f"_{resolution}px"
    return re.sub(r"[^\w.]", "_", f"{name}{px}_n{n}")


def load(cfg: AdviseConfig, cache_dir: str | Path = DEFAULT_CACHE) -> Population:
    """The training, held-out and pool sets of ``cfg.data`` and its reference: ``memdiff theory``'s draws for its
    data sets; otherwise the items of the source split by seed, with the Wiener fit of the pool as reference.
    Simulated ECG beats are cached in ``cache_dir``."""
    if cfg.data in theory_run.DATASETS:
        return theory_run.load_population(theory_run.TheoryConfig(data=cfg.data, n=cfg.n, test=cfg.test,
                                                                   pool=cfg.pool, seed=cfg.seed))
    if cfg.data == "ecg":
        x, _ = simulate_beats(cfg.n + cfg.test + cfg.pool, seed=cfg.seed, cache_dir=cache_dir)
    elif cfg.data == "fashion-mnist":
        x, _ = load_images("fashion-mnist", resolution=cfg.resolution)
    else:
        x, _ = read_signals(cfg.data)
    return theory_run.population(*theory_run.split_items(x, cfg.n, cfg.test, cfg.pool, cfg.seed, cfg.name), "wiener")


# ---- the levels and the rule (docs/THEORY.md §3.8) --------------------------------------------------------------

def necessity_level(diag) -> float:
    """``sigma_M``: where the empirical optimum's ``M`` in a :func:`theory.diagnostics.diagnose` table falls through
    1/2 (:func:`theory.diagnostics.necessity_crossing`), after checking that the levels bracket it (``ValueError``
    naming ``--sigmas`` otherwise)."""
    rows = diag[diag.denoiser == "empirical"].sort_values("sigma")
    s, m = rows.sigma.to_numpy(), rows.necessity.to_numpy()
    if not m.max() >= 0.5:
        raise ValueError(f"--sigmas must reach down to where memorization is necessary (M >= 1/2); M is at most "
                         f"{m.max():.2g}, at sigma = {s[np.argmax(m)]:.3g}: add smaller levels")
    if m[-1] >= 0.5:
        raise ValueError(f"--sigmas must reach up to where memorization is no longer necessary (M < 1/2); M = "
                         f"{m[-1]:.2g} at the largest level {s[-1]:.3g}: add larger levels")
    return necessity_crossing(diag)


def ambient_sweep(pop: Population, cfg: AdviseConfig,
                  progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, list[float]]:
    """Per ``sigma_n`` in ``cfg.switches``, the copy share, diverged share and mean nearest distance
    (:func:`sample_shares`) of ``cfg.samples`` EDM Heun samples of the hybrid optimum
    ``SwitchDenoiser(D_amb, D_gen, sigma_n)``: the ambient optimum on the fixed noisy copies
    ``y_i = x_i + sigma_n eps_i`` above ``sigma_n`` (§2.4, §4.8), the non-memorizing reference (``pop.smooth``) at
    and below it (§2.6). A sample diverged when its ``d_1`` exceeds ``sims.metrics.DIVERGED_FACTOR`` times the
    largest ``d_1`` of the held-out items."""
    limit = divergence_limit(pop.test, pop.train)
    sweep: dict[str, list[float]] = {"sigma_n": list(cfg.switches), "copy_share": [], "diverged_share": [],
                                     "nn_distance": []}
    for s in (progress(cfg.switches) if progress else cfg.switches):
        hybrid = SwitchDenoiser(AmbientDenoiser(noisy_copies(pop.train, s, cfg.seed), s), pop.smooth, s)
        samples = generate(hybrid, cfg.samples, tuple(pop.train.shape[1:]), seed=cfg.seed, steps=cfg.steps,
                           dtype=pop.train.dtype)
        for key, value in sample_shares(samples, pop.train, limit).items():
            sweep[key].append(value)
    return sweep


def lowest_safe_level(levels, copy_share, max_copy_share: float) -> float:
    """``sigma_A``: the smallest of ``levels`` at which the copy share and the share at every larger level are at
    most ``max_copy_share`` (a lone dip below it under a larger share does not count); NaN if the share at the
    largest level is above it."""
    s, c = check_sigmas(levels, "levels"), np.asarray(copy_share, dtype=float)
    order = np.argsort(s)
    s, c = s[order], c[order]
    bad = np.flatnonzero(~(c <= max_copy_share))
    if bad.size and bad[-1] == s.size - 1:
        return math.nan
    return float(s[bad[-1] + 1] if bad.size else s[0])


def intervals(sigma_n: float) -> dict[str, dict[str, list[float]]]:
    """The CI intervals of both readings split at ``sigma_n`` (module docstring): ``u`` in steps of ``1 / T``,
    ``ln sigma`` to 3 decimals, the domain's ends rounded inwards. ``ValueError`` naming ``DATA`` when ``sigma_n``
    is outside both laws' noise ranges (the data's scale is far from 1)."""
    lo, hi = SCHEDULE.sigmas[0].item(), EDM_DOMAIN[1]
    if not lo < sigma_n < hi:
        raise ValueError(f"DATA must have a scale near 1 (standardise it): the advised sigma_n = {sigma_n:.3g} lies "
                         f"outside the noise range of the CI laws ({lo:.3g} to {hi:g})")
    u = int(SCHEDULE.t_from_sigma(sigma_n)) / SCHEDULE.T
    b = round(math.log(sigma_n), 3)
    ends = (math.ceil(math.log(EDM_DOMAIN[0]) * 1000) / 1000, math.floor(math.log(EDM_DOMAIN[1]) * 1000) / 1000)
    return {"low": {"ci_t": [0.0, u], "ci_log_sigma": [ends[0], b]},
            "high": {"ci_t": [u, 1.0], "ci_log_sigma": [b, ends[1]]}}


def method_specs(tag: str, sigma_n: float, ci: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """The grid's ``[[methods]]`` entries of the advice (``sims.methods`` specs): hybrid ambient at ``sigma_n``, and
    per reading CI in DDPM form (epsilon loss, ``ci_t``) and in EDM form (EDM loss, ``ci_log_sigma``)."""
    specs = [{"name": f"advised_{tag}_ambient", "loss": "hybrid_ambient", "sigma_n": sigma_n,
              "noise": {"kind": "edm_lognormal"}}]
    for form, loss, kind in (("ddpm", "epsilon", "ci_t"), ("edm", "edm", "ci_log_sigma")):
        specs += [{"name": f"advised_{tag}_ci_{form}_{r}", "loss": loss,
                   "noise": {"kind": kind, "interval": ci[r][kind]}} for r in READINGS]
    return specs


def share_above(levels, sigma: float) -> float:
    """The exact probability that a noise-level law of ``sims.noise_levels`` draws a level above ``sigma``: from
    its ``pmf`` over DDPM steps, or from its CDF of ``ln sigma``."""
    if isinstance(levels, UniformSteps) or (isinstance(levels, ConfidenceIntervalGaussian) and levels.space == "t"):
        return float(levels.pmf()[levels.schedule.sigmas > sigma].sum())
    return float(1 - levels.cdf_log_sigma(math.log(sigma)))


def advise(pop: Population, cfg: AdviseConfig,
           progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, Any]:
    """The advice on ``pop`` (module docstring): ``sigma_n``, ``ci``, ``sigma_c``, ``evidence`` (the levels, the
    ``M`` curve, the ambient sweep, each law's share of draws above ``sigma_n``), ``config_snippet`` and
    ``reasoning`` (the printed lines). JSON-ready."""
    diag = diagnose(pop.train, pop.test, pop.gen, cfg.sigmas, emp=EmpiricalDenoiser(pop.train),
                    num_items=cfg.num_items, seed=cfg.seed, progress=progress)
    nec = diag[diag.denoiser == "empirical"].sort_values("sigma")
    sigma_m = necessity_level(diag)
    sigma_c = collapse_sigma_entropy(pop.train, pop.gen, num_items=cfg.num_items, seed=cfg.seed)
    sweep = ambient_sweep(pop, cfg, progress)
    unsafe = np.add(sweep["copy_share"], sweep["diverged_share"])  # a blown-up sample is no evidence of safety
    sigma_a = lowest_safe_level(sweep["sigma_n"], unsafe, cfg.max_copy_share)
    if math.isnan(sigma_a):
        raise ValueError(f"--switches must reach a level where the ambient sweep copies or diverges at most "
                         f"{cfg.max_copy_share:g} of its samples; it does {unsafe[-1]:.2g} at the largest, "
                         f"{max(cfg.switches):.3g}: add larger levels")
    sigma_n = float(f"{max(sigma_m, sigma_a):.3g}")
    ci = intervals(sigma_n)
    methods = method_specs(cfg.tag, sigma_n, ci)
    laws = {m["name"]: build_method(m).levels for m in methods[1:]}
    laws.update(uniform_steps=UniformSteps(SCHEDULE), edm_lognormal=build_method(methods[0]).levels)
    evidence = {
        "sigma_C": sigma_c, "sigma_M": sigma_m, "sigma_A": sigma_a, "rule": "sigma_n = max(sigma_M, sigma_A)",
        "n": pop.train.shape[0], "d": pop.train[0].numel(), "reference": pop.reference,
        "max_copy_share": cfg.max_copy_share, "heldout_copy_share": copy_stats(pop.test, pop.train)["copy_share"],
        "necessity": {"sigma": nec.sigma.tolist(), "M": nec.necessity.tolist()}, "ambient_sweep": sweep,
        "ci_domains": {"ci_t": {"schedule": SCHEDULE.kind, "T": SCHEDULE.T}, "ci_log_sigma": list(EDM_DOMAIN)},
        "share_above_sigma_n": {name: share_above(law, sigma_n) for name, law in laws.items()}}
    advice = {"sigma_n": sigma_n, "ci": ci, "sigma_c": sigma_c, "evidence": evidence,
              "config_snippet": {"methods": methods}}
    advice["reasoning"] = reasoning(cfg, advice)
    return advice


def reasoning(cfg: AdviseConfig, advice: dict[str, Any]) -> list[str]:
    """The printed lines: each level with its meaning, the rule, the intervals and what each reading is for."""
    ev, ci, tag = advice["evidence"], advice["ci"], cfg.tag
    share = ev["share_above_sigma_n"]
    k = ev["ambient_sweep"]["sigma_n"].index(ev["sigma_A"])
    edge = " (the smallest of --switches)" if ev["sigma_A"] == min(cfg.switches) else ""
    ref = "the exact population denoiser" if ev["reference"] == "exact" else "the Wiener fit of the pool"

    def pct(name: str) -> str:
        return f"{100 * share[name]:.0f}%"

    def reading(r: str) -> str:
        t, s = ci[r]["ci_t"], ci[r]["ci_log_sigma"]
        return (f"ci_t [{t[0]:g}, {t[1]:g}] ({pct(f'advised_{tag}_ci_ddpm_{r}')} of draws above sigma_n), "
                f"ci_log_sigma [{s[0]:g}, {s[1]:g}] ({pct(f'advised_{tag}_ci_edm_{r}')})")

    return [
        f"advise {cfg.data}: n = {ev['n']}, d = {ev['d']}, reference D_gen = {ref} (docs/THEORY.md §3.7)",
        f"  sigma_C = {ev['sigma_C']:.3g}: collapse level, below it a noisy item singles out its training item (§3.5)",
        (f"  sigma_M = {ev['sigma_M']:.3g}: necessity M(sigma) falls through 1/2; memorization is necessary for the "
         "training loss only below it (§3.2)"),
        (f"  sigma_A = {ev['sigma_A']:.3g}{edge}: from here up, the ambient optimum above sigma_n with D_gen below "
         f"copies {100 * ev['ambient_sweep']['copy_share'][k]:.1f}% and diverges "
         f"{100 * ev['ambient_sweep']['diverged_share'][k]:.1f}% (together <= {100 * cfg.max_copy_share:g}%) of "
         f"{cfg.samples} samples (held-out items read {100 * ev['heldout_copy_share']:.0f}%) (§2.4, §2.6)"),
        (f"rule: sigma_n = max(sigma_M, sigma_A) = {advice['sigma_n']:g}: clean training wherever memorization is "
         "necessary, fixed noisy copies above, at a level where they do not give their items away (§3.8)"),
        "CI intervals split at sigma_n (95% of each Gaussian inside its interval):",
        (f"  high-noise reading: {reading('high')}: learning where memorization is not necessary; the reading "
         "consistent with avoiding copies"),
        (f"  low-noise reading (the literal 'later denoising steps', the last reverse steps): {reading('low')}: "
         "learning where the copier is the optimum (M >= 1/2): expect more copies, and barely trained high-noise "
         "sampler steps"),
        (f"  for comparison, draws above sigma_n: uniform DDPM steps {pct('uniform_steps')}, EDM log-normal "
         f"{pct('edm_lognormal')}"),
        "not yet confirmed on trained nets: these are the closed forms' predictions"]


# ---- figure and files -----------------------------------------------------------------------------------------

def _density_ln_sigma(levels) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma, density of ln sigma)`` of a law: its ``pmf`` per unit ``ln sigma_t`` for DDPM steps, else its pdf."""
    if isinstance(levels, ConfidenceIntervalGaussian) and levels.space == "t":
        s = levels.schedule.sigmas.numpy()
        return s, levels.pmf().numpy() / np.gradient(np.log(s))
    grid = np.linspace(math.log(EDM_DOMAIN[0]), math.log(EDM_DOMAIN[1]), 400)
    return np.exp(grid), levels.pdf_log_sigma(grid).numpy()


def plot_advice(advice: dict[str, Any]):
    """Left: ``M(sigma)`` with ``sigma_C``, ``sigma_M``, ``sigma_n`` and, on a second axis, the density over
    ``ln sigma`` of each advised CI law; right: the ambient sweep's copy share against ``sigma_n`` with the
    threshold, ``sigma_A`` and ``sigma_n``."""
    ev = advice["evidence"]
    fig, (a_m, a_sw) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    a_m.plot(ev["necessity"]["sigma"], ev["necessity"]["M"], "ko-", ms=3, label=r"necessity $M(\sigma)$")
    a_m.axhline(0.5, color="0.5", lw=0.8)
    a_m.axvline(ev["sigma_M"], color="k", ls=":", lw=1, label=r"$\sigma_M$")
    scales = {"sigma_C": ev["sigma_C"], "sigma_n": advice["sigma_n"]}
    mark_levels(a_m, scales, label=True)
    dens = a_m.twinx()
    for m in advice["config_snippet"]["methods"][1:]:
        x, y = _density_ln_sigma(build_method(m).levels)
        reading = m["name"].rsplit("_", 1)[1]
        dens.plot(x, y, color={"low": "tab:cyan", "high": "tab:orange"}[reading],
                  ls="-" if m["noise"]["kind"] == "ci_t" else "--", lw=1, label=f"{m['noise']['kind']} {reading}")
    dens.set_ylabel(r"training draws: density of $\ln\sigma$")
    a_m.set_xscale("log")
    a_m.set_xlabel(r"$\sigma$")
    a_m.set_ylabel(r"$M = 1 - L_{train}(D_{emp}) / L_{train}(D_{gen})$")
    lines = a_m.get_legend_handles_labels()
    more = dens.get_legend_handles_labels()
    a_m.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="center left")
    sw = ev["ambient_sweep"]
    a_sw.plot(sw["sigma_n"], sw["copy_share"], "o-", color="tab:blue",
              label=r"$D_{amb}$ above $\sigma_n$, $D_{gen}$ below: copies")
    a_sw.plot(sw["sigma_n"], sw["diverged_share"], "x--", color="tab:red", label="diverged samples")
    a_sw.axhline(ev["max_copy_share"], color="0.5", lw=0.8, label="threshold")
    a_sw.axhline(ev["heldout_copy_share"], color="0.5", ls=":", lw=0.8, label="held-out items")
    a_sw.axvline(ev["sigma_A"], color="tab:blue", ls=":", lw=1, label=r"$\sigma_A$")
    a_sw.axvline(ev["sigma_M"], color="k", ls=":", lw=1, label=r"$\sigma_M$")
    mark_levels(a_sw, scales, label=True)
    a_sw.set_xscale("log")
    a_sw.set_ylim(-0.03, 1.03)
    a_sw.set_xlabel(r"$\sigma_n$ (ambient above, reference at and below)")
    a_sw.set_ylabel(r"share of samples (copy: $d_1 / d_2 < 1/3$)")
    a_sw.legend(fontsize=7)
    fig.suptitle(f"advice: sigma_n = {advice['sigma_n']:g} (n = {ev['n']}, d = {ev['d']}, reference {ev['reference']})")
    return fig


def default_out(cfg: AdviseConfig) -> Path:
    return Path("runs/advise") / cfg.tag


def write_advice(cfg: AdviseConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
                 cache_dir: str | Path = DEFAULT_CACHE) -> dict[str, Any]:
    """Compute the advice and write ``advice.json`` (advice + provenance) and ``advice.png`` into ``out`` as one set
    (``sims.artifacts.atomic_folder``); an earlier advice there is refused (``ValueError`` naming ``--overwrite``)
    before any work unless ``overwrite``. Returns what ``advice.json`` holds."""
    out = Path(out)
    if (out / MARKER).exists() and not overwrite:
        raise ValueError(f"--out {out} holds an earlier advice: pass --overwrite to replace it, or choose another "
                         "folder")
    bar = (lambda it: tqdm(it, desc=cfg.tag, leave=False)) if progress else None
    with atomic_folder(out, MARKER) as folder:
        advice = {**provenance(asdict(cfg), cfg.seed), **advise(load(cfg, cache_dir), cfg, bar)}
        fig = plot_advice(advice)
        atomic_write(folder / "advice.png", lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
        plt.close(fig)
        atomic_write_json(folder / MARKER, advice)
    return advice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = AdviseConfig()
    parser.add_argument("data", metavar="DATA", help=f"one of {', '.join(DATASETS)}, or the path of a file of signals "
                                                     f"(.npy, .npz, .csv, .tsv, .ts)")
    parser.add_argument("--n", type=int, default=d.n, help="training-set size, drawn by --seed")
    parser.add_argument("--out", default=None, help="output folder (default runs/advise/<data>_n<n>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier advice in --out")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--test", type=int, default=d.test, help="held-out items")
    parser.add_argument("--pool", type=int, default=d.pool, help="reference pool size (the Wiener fit; not gmm)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=None,
                        help="noise levels of M(sigma) (default: 21 from 0.01 to 100)")
    parser.add_argument("--switches", type=float, nargs="+", default=None,
                        help="sigma_n levels of the ambient sweep (default: 16 from 0.02 to 20)")
    parser.add_argument("--num-items", type=int, default=d.num_items, help="items per Monte Carlo average")
    parser.add_argument("--samples", type=int, default=d.samples, help="closed-form samples per sweep level")
    parser.add_argument("--steps", type=int, default=d.steps, help="EDM Heun steps")
    parser.add_argument("--max-copy-share", type=float, default=d.max_copy_share,
                        help="the copy share the ambient sweep may reach at a safe level")
    parser.add_argument("--resolution", type=int, default=None,
                        help="fashion-mnist only: the side after average pooling (a divisor of 28, e.g. 14)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where simulated ECG beats are cached")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="print the reasoning (text) or the whole advice.json (json)")


def run(args: argparse.Namespace) -> int:
    kw = {k: getattr(args, k) for k in ("data", "n", "test", "pool", "seed", "num_items", "samples", "steps",
                                        "max_copy_share", "resolution")}
    kw.update({k: getattr(args, k) for k in ("sigmas", "switches") if getattr(args, k) is not None})
    cfg = AdviseConfig(**kw)
    out = check_writable(args.out if args.out is not None else default_out(cfg), "--out")
    advice = write_advice(cfg, out, args.overwrite, cache_dir=args.cache_dir)
    if args.format == "json":
        print(json.dumps(advice, indent=2, sort_keys=True))
    else:
        print("\n".join([*advice["reasoning"], f"wrote {Path(out) / MARKER} and {Path(out) / 'advice.png'}"]))
    return 0
