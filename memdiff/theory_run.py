"""``memdiff theory``: per-noise-level memorization diagnostics and closed-form generation for one dataset.

Populations (``--data``): ``gmm`` (a Gaussian mixture from :mod:`sims.track1d.data`; its exact denoiser is the
generalizing reference and the population density), ``mnist1d`` (train / held-out / pool drawn from one
MNIST-1D generation) and ``digits`` (sklearn's 8x8 digits); for both the reference is the Wiener denoiser
fitted to the disjoint pool, which does not memorize (``--reference pool``, the pool's empirical denoiser,
memorizes the pool below its own collapse level: docs/THEORY.md §3.7).

Writes one complete set into ``--out`` (built in a temporary sibling and swapped in, so an earlier run's
files are replaced, never mixed with these): ``diagnostics.csv`` (tidy, :func:`theory.diagnostics.diagnose`),
``entropy.csv`` (excess entropy ``f(sigma)``), ``generation.csv`` and ``switch_sweep.csv`` (closed-form
sampling), ``summary.json`` (provenance, config, noise levels, tables) and two PNG figures with sidecars.
A run whose estimated memory or time (:func:`estimate_cost`) is over ``MEMORY_LIMIT`` / ``TIME_LIMIT`` is
refused before any data is drawn, unless forced.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from memdiff.theory_plots import plot_diagnostics, plot_switch_sweep
from sims.artifacts import atomic_folder, atomic_write, atomic_write_json, provenance, save_figure
from sims.configs import from_mapping, read_config_file
from sims.corruption import corrupt
from sims.generation import generation_table, switch_sweep
from sims.track1d.data import MNIST1D_LENGTH, digits, gaussian_mixture, mnist1d, split
from theory import AmbientDenoiser, EmpiricalDenoiser, GaussianDenoiser, LocalPatchDenoiser
from theory.denoiser import Denoiser, check_sigmas, log_sigma_grid
from theory.diagnostics import (collapse_sigma_entropy, collapse_sigma_isotropic, diagnose, excess_entropy,
                                necessity_crossing, speciation_sigma)
from theory.seeding import seeded_generator
from theory.switch import SwitchDenoiser

DATASETS = ("gmm", "mnist1d", "digits")
REFERENCES = ("auto", "exact", "pool", "wiener")
ITEM_DIM = {"gmm": MNIST1D_LENGTH, "mnist1d": MNIST1D_LENGTH, "digits": 64}
DIGITS_COUNT = 1797  # items in sklearn's 8x8 digits
MEMORY_LIMIT = 8 * 2**30  # bytes
TIME_LIMIT = 12 * 3600  # seconds


@dataclass
class TheoryConfig:
    """One ``memdiff theory`` run (sizes in items; ``samples = 0`` skips closed-form generation)."""

    data: str = "gmm"
    n: int = 200
    test: int = 500
    pool: int = 5000
    sigmas: list[float] = field(default_factory=lambda: log_sigma_grid(0.01, 100.0, 21).tolist())
    sigma_n: float | None = 1.0
    seed: int = 0
    num_items: int = 256
    reference: str = "auto"
    samples: int = 256
    steps: int = 18
    switches: list[float] = field(default_factory=lambda: log_sigma_grid(0.05, 20.0, 7).tolist())
    patch: int = 9

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TheoryConfig":
        """The config in a TOML/JSON file (keys: this dataclass's fields; a grid may be ``{lo, hi, num}``),
        with ``overrides`` laid over it."""
        return from_mapping(cls, {**read_config_file(path), **overrides}, str(path))

    def __post_init__(self) -> None:
        for name in ("sigmas", "switches"):
            grid = getattr(self, name)
            if isinstance(grid, dict):
                if set(grid) != {"lo", "hi", "num"}:
                    raise ValueError(f"{name} must be a list or a table {{lo, hi, num}}, got {grid!r}")
                setattr(self, name, log_sigma_grid(**grid).tolist())
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {DATASETS}, got {self.data!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.reference == "exact" and self.data != "gmm":
            raise ValueError(f"reference 'exact' needs data 'gmm' (a known population), got data {self.data!r}")
        for name in ("n", "test", "pool", "num_items", "steps", "patch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "n" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'n' else 1}, got {v!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ValueError(f"samples must be an integer >= 0, got {self.samples!r}")
        self.sigmas = check_sigmas(self.sigmas).tolist()
        self.switches = check_sigmas(self.switches, "switches").tolist()
        if self.sigma_n is not None:
            check_sigmas([self.sigma_n], "sigma_n")


@dataclass
class Population:
    """Training, held-out and pool items (float32, flat) and the generalizing reference ``gen``, whose
    ``log_density`` also stands in for the population density in the collapse level. ``smooth`` is the
    generalizer that sampling hands over to: ``gen``, except for the pool reference, which memorizes the
    pool at low noise; then the Wiener fit to the pool."""

    train: Tensor
    test: Tensor
    pool: Tensor | None
    gen: Denoiser
    reference: str
    smooth: Denoiser


def resolved_reference(cfg: TheoryConfig) -> str:
    """The reference denoiser's kind, ``auto`` resolved per dataset (module docstring)."""
    return cfg.reference if cfg.reference != "auto" else {"gmm": "exact", "mnist1d": "wiener", "digits": "wiener"}[cfg.data]


def estimate_cost(cfg: TheoryConfig) -> tuple[float, float]:
    """Rough peak memory (bytes) and time (seconds on a 2-core CPU) of :func:`run_theory`, from the sizes
    alone, before any data is drawn; runs measured at small to paper sizes took 0.6 to 1.5 times that.

    Memory: 0.5 GiB of working memory, 48 bytes per training value (the float32 set, the empirical and
    ambient denoisers' copies, float64 copies for the moments and the patch denoiser), 16 per held-out or
    pool value, plus the draw: a GMM sample holds an ``(items, d, d)`` float64 tensor of component
    factors, the MNIST-1D generator about 56 bytes per value.

    Time: a query meets every item of a denoiser's set, at 3e8 (query, value) pairs a second; the patch
    denoiser (float64, ``patch`` values per position) counts ``3 patch`` items per training item. Queries:
    ``2 num_items`` per noise level on every denoiser (diagnostics), ``num_items`` per entropy evaluation on
    the reference (noise levels plus about 40 for the collapse roots), and ``2 steps`` per sample on the
    generation table's samplers and on one memorizer per switch level. Plus drawing the data (MNIST-1D:
    0.75 ms an item)."""
    d, ref = ITEM_DIM[cfg.data], resolved_reference(cfg)
    n, test, pool = cfg.n, cfg.test, cfg.pool if ref != "exact" else 0
    if cfg.data == "digits":
        n, test, pool = (min(v, DIGITS_COUNT) for v in (n, test, pool))
    emp, amb = n, n if cfg.sigma_n is not None else 0
    local, gen = (3 * cfg.patch * n if cfg.data == "mnist1d" else 0), (pool if ref == "pool" else 0)
    sample_queries = 2 * cfg.steps * cfg.samples
    pairs = d * (2 * cfg.num_items * len(cfg.sigmas) * (emp + amb + local + gen)
                 + cfg.num_items * (len(cfg.sigmas) + 40) * gen
                 + sample_queries * (emp + amb + 2 * local + gen + len(cfg.switches) * (emp + local)))
    draw_seconds = {"gmm": 5e-5, "mnist1d": 7.5e-4, "digits": 0.0}[cfg.data] * (n + test + pool)
    draw_bytes = {"gmm": 8 * d * (d + 2) * max(n, test, pool), "mnist1d": 56 * d * (n + test + pool), "digits": 0}
    memory = 2**29 + 48 * d * n + 16 * d * (test + pool) + draw_bytes[cfg.data]
    return float(memory), pairs / 3e8 + draw_seconds


def check_cost(cfg: TheoryConfig, force: bool = False) -> None:
    """Refuse (``ValueError``) a run whose :func:`estimate_cost` is over ``MEMORY_LIMIT`` or ``TIME_LIMIT``,
    unless ``force``: a mistyped size fails at once instead of after hours or in the out-of-memory killer."""
    memory, seconds = estimate_cost(cfg)
    if not force and (memory > MEMORY_LIMIT or seconds > TIME_LIMIT):
        raise ValueError(f"sizes (n={cfg.n}, test={cfg.test}, pool={cfg.pool}, num_items={cfg.num_items}, "
                         f"{len(cfg.sigmas)} sigmas, samples={cfg.samples}) must fit {MEMORY_LIMIT / 2**30:.0f} GiB "
                         f"and {TIME_LIMIT / 3600:.0f} h: estimated {memory / 2**30:.3g} GiB and "
                         f"{seconds / 3600:.3g} h on a 2-core CPU; lower them, or pass --force to run anyway")


def load_population(cfg: TheoryConfig) -> Population:
    """Draw the disjoint sets of ``cfg.data`` and build the reference denoiser (module docstring)."""
    ref = resolved_reference(cfg)
    if cfg.data == "gmm":
        gmm = gaussian_mixture(seed=cfg.seed)
        train = gmm.sample(cfg.n, seeded_generator(cfg.seed, 1))
        test = gmm.sample(cfg.test, seeded_generator(cfg.seed, 2))
        pool = gmm.sample(cfg.pool, seeded_generator(cfg.seed, 3)) if ref != "exact" else None
        return population(train, test, pool, ref, gmm.denoiser())
    if cfg.data == "mnist1d":
        x, _ = mnist1d(10 * math.ceil((cfg.n + cfg.test + cfg.pool) / 10), seed=cfg.seed)
    else:
        x, _ = digits()
    return population(*split_items(x, cfg.n, cfg.test, cfg.pool, cfg.seed, cfg.data), ref)


def split_items(x: Tensor, n: int, test: int, pool: int, seed: int, name: str) -> list[Tensor]:
    """Disjoint training, held-out and pool sets of the items of ``x`` (flattened), drawn by a seeded permutation;
    the pool takes up to ``pool`` of the items left. ``name`` (the data's) goes into the error when ``n + test``
    leaves no pool."""
    if n + test >= x.shape[0]:
        raise ValueError(f"n + test must leave a pool of {name} items (< {x.shape[0]}), got {n + test}")
    return split(x.reshape(x.shape[0], -1), (n, test, min(pool, x.shape[0] - n - test)), seed=seed)


def population(train: Tensor, test: Tensor, pool: Tensor | None, reference: str,
               exact: Denoiser | None = None) -> Population:
    """The :class:`Population` of drawn sets with its ``reference`` denoiser: ``exact`` (the population's own
    denoiser, needed then), ``wiener`` (the Wiener fit of the pool) or ``pool`` (the pool's empirical optimum)."""
    wiener = GaussianDenoiser.fit(pool.double()) if reference != "exact" else None
    gen = {"exact": exact, "wiener": wiener, "pool": EmpiricalDenoiser(pool) if reference == "pool" else None}
    return Population(train, test, pool, gen[reference], reference, exact if reference == "exact" else wiener)


def noisy_copies(train: Tensor, sigma_n: float, seed: int) -> Tensor:
    """The fixed corruption ``y_i = x_i + sigma_n eps_i`` of ambient training (``sims.corruption``)."""
    return corrupt(train, torch.arange(train.shape[0]), sigma_n, seed=seed)


def noise_levels(pop: Population, cfg: TheoryConfig) -> dict[str, float]:
    """Collapse levels (entropy root with the reference density and with the Gaussian fit; isotropic
    closed form at the mean per-coordinate variance), speciation level and ``sigma_n``."""
    train = pop.train.double()
    n, d = train.shape[0], train[0].numel()
    variance = float(train.var(0, unbiased=False).mean())
    return {"sigma_C": collapse_sigma_entropy(train, pop.gen, num_items=cfg.num_items, seed=cfg.seed),
            "sigma_C_gaussian_fit": collapse_sigma_entropy(train, num_items=cfg.num_items, seed=cfg.seed),
            "sigma_C_isotropic": collapse_sigma_isotropic(n, d, variance),
            "sigma_S": speciation_sigma(train), "sigma_n": cfg.sigma_n if cfg.sigma_n is not None else math.nan,
            "n": n, "d": d, "variance": variance}


def closed_form_denoisers(pop: Population, emp: EmpiricalDenoiser, ambient: AmbientDenoiser | None,
                          local: LocalPatchDenoiser | None) -> dict[str, Denoiser]:
    """The samplers of the generation table: memorizer, generalizers, ambient and patch-local hybrids."""
    dens: dict[str, Denoiser] = {"empirical": emp, "wiener_fit_to_train": GaussianDenoiser.fit(pop.train.double()),
                                 f"reference_{pop.reference}": pop.gen}
    if pop.smooth is not pop.gen:
        dens["wiener_fit_to_pool"] = pop.smooth
    if local is not None:
        dens[f"local_patch_{local.sizes[0]}"] = local
    if ambient is not None:
        dens["ambient_then_empirical"] = SwitchDenoiser(ambient, emp, ambient.sigma_n)
        if local is not None:
            dens["ambient_then_local"] = SwitchDenoiser(ambient, local, ambient.sigma_n)
    return dens


def switch_hybrids(pop: Population, emp: EmpiricalDenoiser, local: LocalPatchDenoiser | None) -> dict[str, tuple]:
    """``(high, low)`` pairs of the switch sweep: the memorizer on either side of the smooth generalizer,
    and the generalizer handing over to the patch-local memorizer."""
    g = pop.smooth
    pairs = {"memorizer_above_generalizer_below": (emp, g), "generalizer_above_memorizer_below": (g, emp)}
    if local is not None:
        pairs["generalizer_above_local_below"] = (g, local)
    return pairs


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))


def run_theory(cfg: TheoryConfig, out: str | Path, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """The whole pipeline for one config, after :func:`check_cost` (``force`` skips it), written as one set
    into ``out`` (``sims.artifacts.atomic_folder``); returns the summary it writes to ``out/summary.json``."""
    check_cost(cfg, force)
    with atomic_folder(out, "summary.json") as folder:
        return _write_theory(cfg, folder, progress)


def _write_theory(cfg: TheoryConfig, out: Path, progress: bool) -> dict[str, Any]:
    """Compute every table and figure of ``cfg`` and write them into the folder ``out``."""
    bar = (lambda it: tqdm(it, desc=f"{cfg.data}", leave=False)) if progress else None
    torch.manual_seed(cfg.seed)
    pop = load_population(cfg)
    emp = EmpiricalDenoiser(pop.train)
    ambient = AmbientDenoiser(noisy_copies(pop.train, cfg.sigma_n, cfg.seed), cfg.sigma_n) if cfg.sigma_n else None
    local = LocalPatchDenoiser(pop.train, cfg.patch) if cfg.data == "mnist1d" else None  # 1D signals only
    diag = diagnose(pop.train, pop.test, pop.gen, cfg.sigmas, ambient=ambient, emp=emp, num_items=cfg.num_items,
                    extra={f"local_patch_{cfg.patch}": local} if local is not None else None, seed=cfg.seed,
                    progress=bar)
    entropy = pd.DataFrame({"sigma": cfg.sigmas,
                            f"f_{pop.reference}": excess_entropy(pop.train, cfg.n, cfg.sigmas, pop.gen,
                                                                 num_items=cfg.num_items, seed=cfg.seed),
                            "f_gaussian_fit": excess_entropy(pop.train, cfg.n, cfg.sigmas,
                                                             num_items=cfg.num_items, seed=cfg.seed)})
    scales = noise_levels(pop, cfg)
    scales.update({f"M_half_{name}": necessity_crossing(diag, name) for name in diag.denoiser.unique()
                   if name != "generalizing"})
    config = asdict(cfg)
    title = f"{cfg.data}: n = {cfg.n}, d = {scales['d']}, reference = {pop.reference}"
    _write_csv(diag, out / "diagnostics.csv")
    _write_csv(entropy, out / "entropy.csv")
    save_figure(plot_diagnostics(diag, entropy, scales, title), out / "diagnostics.png", config, cfg.seed)
    tables: dict[str, pd.DataFrame] = {}
    if cfg.samples:
        opts = {"num_samples": cfg.samples, "seed": cfg.seed, "steps": cfg.steps, "progress": bar}
        tables["generation"] = generation_table(closed_form_denoisers(pop, emp, ambient, local), pop.train, **opts)
        tables["switch_sweep"] = switch_sweep(switch_hybrids(pop, emp, local), pop.train, cfg.switches, **opts)
        for name, table in tables.items():
            _write_csv(table, out / f"{name}.csv")
        save_figure(plot_switch_sweep(tables["switch_sweep"], scales, title), out / "switch_sweep.png", config, cfg.seed)
    plt.close("all")
    summary = {**provenance(config, cfg.seed), "noise_levels": scales, "reference": pop.reference,
               **{name: t.to_dict(orient="records") for name, t in tables.items()}}
    atomic_write_json(out / "summary.json", summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TheoryConfig()
    parser.add_argument("--data", choices=DATASETS, default=d.data)
    parser.add_argument("--n", type=int, default=d.n, help="training-set size")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--test", type=int, default=d.test, help="held-out items")
    parser.add_argument("--pool", type=int, default=d.pool, help="reference pool size (mnist1d, digits)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=None, help="noise levels (default: 21 from 0.01 to 100)")
    parser.add_argument("--sigma-n", type=float, default=d.sigma_n, help="ambient corruption level (0: no ambient)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--num-items", type=int, default=d.num_items, help="items per Monte Carlo average")
    parser.add_argument("--reference", choices=REFERENCES, default=d.reference, help="generalizing denoiser")
    parser.add_argument("--samples", type=int, default=d.samples, help="closed-form samples per sampler (0: skip)")
    parser.add_argument("--steps", type=int, default=d.steps, help="EDM Heun steps")
    parser.add_argument("--switches", type=float, nargs="+", default=None, help="switch levels of the hybrid sweep")
    parser.add_argument("--force", action="store_true",
                        help=f"run even when the estimated cost is over {MEMORY_LIMIT / 2**30:.0f} GiB or "
                             f"{TIME_LIMIT / 3600:.0f} h")


def config_from_args(args: argparse.Namespace) -> TheoryConfig:
    kw = {k: getattr(args, k) for k in ("data", "n", "test", "pool", "seed", "num_items", "reference", "samples",
                                        "steps")}
    for k in ("sigmas", "switches"):
        if getattr(args, k) is not None:
            kw[k] = getattr(args, k)
    kw["sigma_n"] = args.sigma_n if args.sigma_n else None
    return TheoryConfig(**kw)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    summary = run_theory(cfg, args.out, force=args.force)
    levels = summary["noise_levels"]
    print(f"sigma_C = {levels['sigma_C']:.3g} (isotropic {levels['sigma_C_isotropic']:.3g}), "
          f"sigma_S = {levels['sigma_S']:.3g}; wrote {Path(args.out) / 'summary.json'}")
    return 0
