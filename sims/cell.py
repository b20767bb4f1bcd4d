"""One grid cell, the same for both tracks: draw the training subset, train ``EDMPrecond(net)``, sample, measure.

A track gives its data (``Bundle``: a source of training candidates, held-out reals, a population pool and the
non-memorizing reference, ``sims.readout.Reference``), its feature map and its net builder; ``train_and_measure``
does the rest (``sims.track1d.cell`` and ``image_track.grid_cell`` are the two tracks' grid runners). Per cell:
the training subset (``n`` items drawn by seed), the method's noise-level law and loss (``sims.methods``),
training (``sims.training``), ``eval.num_samples`` samples, memorization against the training set and alignment
(docs/THEORY.md §6.6) with the training set (``*_train``, Vu et al.'s comparison) and with held-out reals, the
same numbers for held-out reals in place of samples (``ref_*``), the readout (calibrated r(sigma), the held-out
gap, losses; §6.1, §6.2, §6.8), with ``eval.two_net`` the two-net ratio V(sigma) (§6.9) of a second net trained
by the same recipe on a disjoint subset, sigma_C (§3.5) with the reference's density, and with
``eval.closed_form_samples = k`` the copy share of ``k`` samples of the exact optimum of the same training set
by the same sampler (``emp_copy_share``; the closed form's prediction beside the net's), with ``eval.explain``
the explained share r^2 of the net's corrections by each closed form per sigma (``explained``; §6.10), and with
``eval.preview_samples = k`` the first ``k`` samples that did not diverge beside their nearest training items
(``preview``: item ``shape``, ``samples``, ``nearest`` and their ``distance_ratio`` d1/d2, rounded to 4 decimals;
for pictures).

A sampler that blows samples up is a result, not a crash (§6.3): ``diverged_share`` is the share of samples that
are not finite or lie more than ``sims.metrics.DIVERGED_FACTOR`` times the held-out reals' largest nearest distance
from the training set (§3.8). The sample metrics (copy share, FD, ...) are measured on the other samples while at
most ``MAX_DIVERGED_SHARE`` of them diverged, and are ``None`` past it: undefined, so the claims drop that seed
rather than count blown-up samples as non-copies. The readouts, which do not sample, are measured as usual.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sims import metrics
from sims.corruption import corrupt
from sims.explain import DEFAULT_PATCHES, closed_forms_for_cell, explained_variance
from sims.grid import Cell, runs_two_net, train_table
from sims.methods import build_method, family
from sims.preconditioning import EDMPrecond
from sims.readout import Reference, paired_readout, two_net_ratio
from sims.samplers import generate
from sims.training import TrainConfig, train
from theory import EmpiricalDenoiser

MAX_DIVERGED_SHARE = 0.01  # past this share of diverged samples a cell's sample metrics are undefined (None)
TWO_NET_SEED_OFFSET = 100_000  # the second net of the two-net test trains with seed ``cell.seed + offset``
TRAIN_KEYS = ("steps", "batch_size", "lr", "lr_warmup_steps", "lr_decay", "ema_decay", "ema_halflife_images", "ema_rampup",
              "grad_clip")  # the [train] keys that are sims.training.TrainConfig fields
NetBuilder = Callable[[dict[str, Any], tuple[int, ...]], nn.Module]  # (train table, item shape) -> raw net


@dataclass
class Bundle:
    """One dataset of a grid, shared by its cells: disjoint ``source`` (training candidates), ``test`` (held-out
    reals) and ``pool`` draws, the reference of the readout and of sigma_C, and the EDM ``sigma_data``."""

    source: Tensor
    test: Tensor
    pool: Tensor
    ref: Reference
    sigma_data: float


def training_subset(source: Tensor, n: int, seed: int, part: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` items of ``source`` drawn without replacement by ``seed`` (and their indices): the ``part``-th block
    of ``n`` of one permutation, so the parts of one seed are disjoint (part 1: the two-net test's second set)."""
    if not 1 <= n * (part + 1) <= source.shape[0]:
        raise ValueError(f"n must be in [1, {source.shape[0] // (part + 1)}] (the source size / {part + 1}), got {n}")
    idx = torch.randperm(source.shape[0], generator=torch.Generator().manual_seed(1000 + seed))[n * part:n * (part + 1)]
    return source[idx], idx


def noisy_copies(method: dict[str, Any], x: Tensor, idx: Tensor, seed: int) -> Tensor | None:
    """The fixed noisy copies a method trains on (§4.8; source indices ``idx``), ``None`` for one on clean items."""
    return corrupt(x, idx, method["sigma_n"], seed=seed) if build_method(method).needs_noisy_copies else None


def train_net(tcfg: dict[str, Any], method: dict[str, Any], x: Tensor, idx: Tensor, seed: int,
              sigma_data: float, build_net: NetBuilder) -> tuple[nn.Module, float]:
    """One recipe for every net of a cell: ``EDMPrecond(build_net(tcfg, item shape))`` trained on ``x`` (source
    indices ``idx`` for the fixed noisy copies) by the method's loss with ``seed`` and the ``[train]`` table
    ``tcfg``; returns the EMA denoiser and the last loss."""
    torch.manual_seed(seed)
    model = EDMPrecond(build_net(tcfg, tuple(x.shape[1:])), sigma_data=sigma_data)
    built = build_method(method, sigma_data)
    y = noisy_copies(method, x, idx, seed)
    result = train(model, built.loss, x, TrainConfig(**{k: tcfg[k] for k in TRAIN_KEYS if k in tcfg}, seed=seed,
                                                     progress=False), y=y)
    return result.ema, result.last_loss


def sample_metrics(samples: Tensor, train: Tensor, test: Tensor, feats) -> dict[str, float]:
    """Memorization against ``train`` (``copy_share``: nearest / second-nearest distance below 1/3 on the flattened
    items; ``cosine_share`` and ``max_cosine_mean``: the share of samples whose largest cosine similarity to a
    training item in the feature space ``feats`` exceeds 0.9, and its mean); alignment (§6.6) with ``test``
    (held-out reals: ``wasserstein``, ``js``, ``pca_components``) and with ``train`` (Vu et al.'s comparison: the
    same names ending ``_train``); MMD and FD (on ``feats``) against ``test``."""
    f_s, f_tr, f_te = feats(samples), feats(train), feats(test)
    mem = metrics.memorization_report(samples, train, features=f_s, train_features=f_tr)
    pw, pw_tr = metrics.pca_wasserstein_js(samples, test), metrics.pca_wasserstein_js(samples, train)
    return {"copy_share": mem["copy_share"], "nn_distance": mem["nn_distance"], "cosine_share": mem["cosine_share"],
            "max_cosine_mean": mem["max_cosine_mean"],
            "wasserstein": pw["wasserstein"], "js": pw["js"], "pca_components": pw["components"],
            "wasserstein_train": pw_tr["wasserstein"], "js_train": pw_tr["js"],
            "pca_components_train": pw_tr["components"],
            "mmd": float(metrics.mmd_rbf(samples, test)), "fd": float(metrics.frechet_distance(f_s, f_te)),
            "fd_sampling_pm": metrics.frechet_bootstrap(f_s, f_te)}


def train_and_measure(config: dict[str, Any], cell: Cell, b: Bundle, feats, build_net: NetBuilder) -> dict[str, Any]:
    """Train and evaluate one cell on ``b`` (module docstring); returns its JSON-ready result (the grid writes it)."""
    method = next(m for m in config["methods"] if m["name"] == cell.method)
    ecfg = config["eval"]
    x_train, idx = training_subset(b.source, cell.n, cell.seed)
    item_shape = tuple(x_train.shape[1:])

    t0 = time.perf_counter()
    tcfg = train_table(config, cell.dataset)
    ema, last_loss = train_net(tcfg, method, x_train, idx, cell.seed, b.sigma_data, build_net)
    t1 = time.perf_counter()

    def sample(denoiser, num: int) -> Tensor:  # the config's sampler from the cell's noise: nets and closed forms alike
        return generate(denoiser, num, item_shape, seed=10_000 + cell.seed, steps=ecfg.get("sampler_steps", 18),
                        sigma_min=ecfg.get("sigma_min", 0.002), sigma_max=ecfg.get("sigma_max", 80.0),
                        sampler=ecfg.get("sampler", "edm_heun"))

    samples = sample(ema, ecfg.get("num_samples", 1000))
    ref = sample_metrics(b.pool[: samples.shape[0]], x_train, b.test, feats)  # held-out reals in place of samples
    kept = metrics.within_limit(samples, x_train, metrics.divergence_limit(b.test, x_train))[0]
    diverged = float((~kept).double().mean())
    m = {**(sample_metrics(samples[kept], x_train, b.test, feats) if diverged <= MAX_DIVERGED_SHARE
            else dict.fromkeys(ref)), "diverged_share": diverged}
    t2 = time.perf_counter()

    sigmas, items = ecfg["readout_sigmas"], ecfg.get("readout_items", 256)
    readout = paired_readout(ema, EmpiricalDenoiser(x_train), b.ref.denoiser, x_train, b.test, sigmas,
                             num_items=items, seed=cell.seed)
    sigma_c = b.ref.sigma_c(b.pool, cell.n)  # a property of the population and n: the same for every seed
    t3 = time.perf_counter()

    two_net = None
    if runs_two_net(config, cell.method):
        x2, idx2 = training_subset(b.source, cell.n, cell.seed, part=1)
        ema2, loss2 = train_net(tcfg, method, x2, idx2, cell.seed + TWO_NET_SEED_OFFSET, b.sigma_data, build_net)
        v = two_net_ratio(ema, ema2, x_train, x2, b.test, sigmas, num_items=items, seed=cell.seed)
        two_net = {"v": v.tolist(), "train_loss": loss2}
    t4 = time.perf_counter()
    timing = {"train_s": t1 - t0, "sample_eval_s": t2 - t1, "readout_s": t3 - t2, "two_net_s": t4 - t3}
    if k := ecfg.get("closed_form_samples", 0):  # the exact optimum of the same set, same sampler (§2.1)
        m["emp_copy_share"] = metrics.memorization_report(sample(EmpiricalDenoiser(x_train), k), x_train)["copy_share"]
        timing["closed_form_samples_s"] = time.perf_counter() - t4
    metrics_ = {**m, **{f"ref_{k}": v for k, v in ref.items()}, "train_loss": last_loss}
    preview = {}
    if (k := ecfg.get("preview_samples", 0)) and m["copy_share"] is not None:  # for pictures: the first k samples
        shown = samples[kept][:k]  # that did not diverge, beside their nearest training items
        ratio, _, nn = metrics.nearest_ratio(shown, x_train)
        rounded = lambda t: t.double().round(decimals=4).tolist()  # noqa: E731
        preview["preview"] = {"shape": list(item_shape), "samples": rounded(shown),
                              "nearest": rounded(x_train[nn]), "distance_ratio": rounded(ratio)}
    explained, t5 = {}, time.perf_counter()
    if ecfg.get("explain", False):  # what the net is, per sigma (§6.10): its first net against the closed forms
        y, cap = noisy_copies(method, x_train, idx, cell.seed), ecfg.get("explain_local_items")
        forms = closed_forms_for_cell(x_train, b.pool, b.ref, noisy=y, sigma_n=None if y is None else method["sigma_n"],
                                      patches=ecfg.get("explain_patches", DEFAULT_PATCHES),
                                      local_items=cap, seed=cell.seed)
        explained["explained"] = explained_variance(ema, forms, b.test, sigmas, num_items=items, seed=cell.seed)
        if cap is not None:  # the local forms are the local machine of local_items of the n training items
            explained["explained"].update(local_items=min(cap, x_train.shape[0]), n=x_train.shape[0])
        timing["explain_s"] = time.perf_counter() - t5
    return {"cell": {"dataset": cell.dataset, "n": cell.n, "method": cell.method, "seed": cell.seed, "id": cell.id},
            "family": family(method), "method": method, "train_config": tcfg, "sigma_data": b.sigma_data,
            "metrics": metrics_, "readout": readout.to_dict(), "two_net": two_net, "sigma_c": sigma_c,
            "reference": b.ref.kind, "timing": timing, **explained, **preview}
