"""One cell of the 1D grid: draw the training subset, train ``EDMPrecond(net)``, sample, measure.

Per dataset (prepared once, cached under ``<out>/cache``): a source of training candidates, a held-out
test set, a population pool with labels, the non-memorizing reference (``sims.readout.Reference``: the
exact GMM denoiser for the Gaussian mixture, the Wiener fit of the pool otherwise; docs/THEORY.md §3.7)
and a feature classifier trained on the pool (``sims.track1d.classifier``). Per cell: the training subset
(``n`` items drawn by seed), the method's noise-level distribution and loss, training (``sims.training``),
``num_samples`` samples, memorization metrics against the training set and alignment (§6.6) with the
training set (``*_train``, Vu et al.'s comparison) and with held-out reals, the readout (calibrated
r(sigma), the held-out gap, losses; §6.1, §6.2, §6.8), with ``eval.two_net`` the two-net ratio V(sigma) (§6.9) of
a second net trained by the same recipe on a disjoint subset, and sigma_C (§3.5) with the reference's
density.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sims import metrics
from sims.artifacts import atomic_write
from sims.corruption import corrupt
from sims.grid import Cell, runs_two_net
from sims.methods import build_method, family
from sims.preconditioning import EDMPrecond
from sims.readout import Reference, paired_readout, two_net_ratio
from sims.samplers import generate
from sims.track1d.classifier import ClassifierConfig, cached_classifier, features
from sims.track1d.data import gaussian_mixture, mnist1d
from sims.track1d.ecg import simulate_beats
from sims.track1d.mlp import MLP1d
from sims.track1d.unet import UNet1d
from sims.training import TrainConfig, train
from theory import EmpiricalDenoiser, GMMDenoiser

TWO_NET_SEED_OFFSET = 100_000  # the second net of the two-net test trains with seed ``cell.seed + offset``


@dataclass
class Bundle:
    source: Tensor
    test: Tensor
    pool: Tensor
    pool_labels: Tensor
    ref: Reference  # the non-memorizing reference of the readout and of sigma_C
    sigma_data: float


# ---- data -----------------------------------------------------------------------------------------------
def _make_data(spec: dict[str, Any], cache: Path) -> dict[str, Tensor]:
    """Disjoint source / test / pool draws of one dataset kind (labels for the pool)."""
    kind, sizes = spec["kind"], (spec["source"], spec["test"], spec["pool"])
    total = sum(sizes)
    if kind == "mnist1d":
        x, y = mnist1d(total, seed=spec.get("data_seed", 0))
        extra: dict[str, Tensor] = {}
    elif kind == "ecg":
        x, y = simulate_beats(total, seed=spec.get("data_seed", 0), beats_per_recording=spec.get("beats_per_recording", 10),
                              cache_dir=cache)
        extra = {}
    else:
        gmm = gaussian_mixture(**spec.get("gmm", {}), seed=spec.get("data_seed", 0))
        x, y = gmm.sample(total, generator=torch.Generator().manual_seed(spec.get("data_seed", 0) + 1), return_labels=True)
        extra = {"gmm_weights": gmm.weights, "gmm_means": gmm.means, "gmm_covs": gmm.covs}
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(12345))
    x, y = x[perm].float(), y[perm].long()
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"source": x[:a], "test": x[a:b], "pool": x[b:], "pool_labels": y[b:], **extra}


def _data_path(out: Path, spec: dict[str, Any]) -> Path:
    """Keyed by what the draws depend on, so dataset entries that differ only in ``n`` or methods share them."""
    keys = ("kind", "source", "test", "pool", "data_seed", "gmm", "beats_per_recording")
    digest = hashlib.sha1(json.dumps({k: spec.get(k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12]
    return out / "cache" / f"data_{spec['kind']}_{digest}.pt"


def prepare(config: dict[str, Any], out: str | Path) -> None:
    """Make (or reuse) every dataset's cached draws and feature classifier before workers start."""
    out = Path(out)
    for spec in config["datasets"]:
        _bundle(str(out), spec["name"], _freeze(config))


def _freeze(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@lru_cache(maxsize=8)
def _bundle(out: str, name: str, frozen: str) -> Bundle:
    config = json.loads(frozen)
    spec = next(d for d in config["datasets"] if d["name"] == name)
    cache = Path(out) / "cache"
    path = _data_path(Path(out), spec)
    if path.exists():
        data = torch.load(path, weights_only=True)
    else:
        data = _make_data(spec, cache)
        atomic_write(path, lambda tmp: torch.save(data, tmp))
    exact = GMMDenoiser(data["gmm_weights"], data["gmm_means"], data["gmm_covs"]) if spec["kind"] == "gmm" else None
    return Bundle(source=data["source"], test=data["test"], pool=data["pool"], pool_labels=data["pool_labels"],
                  ref=Reference.of(data["pool"], exact), sigma_data=float(data["pool"].std()))


@lru_cache(maxsize=8)
def _classifier(out: str, name: str, frozen: str):
    config = json.loads(frozen)
    b = _bundle(out, name, frozen)
    return cached_classifier(b.pool, b.pool_labels, Path(out) / "cache",
                             ClassifierConfig(steps=config["eval"].get("classifier_steps", 1500)))


def training_subset(source: Tensor, n: int, seed: int, part: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` items of ``source`` drawn without replacement by ``seed`` (and their indices): the ``part``-th block
    of ``n`` of one permutation, so the parts of one seed are disjoint (part 1: the two-net test's second set)."""
    if not 1 <= n * (part + 1) <= source.shape[0]:
        raise ValueError(f"n must be in [1, {source.shape[0] // (part + 1)}] (the source size / {part + 1}), got {n}")
    idx = torch.randperm(source.shape[0], generator=torch.Generator().manual_seed(1000 + seed))[n * part:n * (part + 1)]
    return source[idx], idx


# ---- model and method -----------------------------------------------------------------------------------
def build_net(train_cfg: dict[str, Any], item_shape: tuple[int, ...]) -> nn.Module:
    """The raw net ``F(x_in, c_noise)`` named by ``train.arch``."""
    arch = train_cfg.get("arch", "mlp")
    if arch == "mlp":
        return MLP1d(item_shape, width=train_cfg.get("width", 256), depth=train_cfg.get("depth", 2))
    if arch == "unet":
        ch = train_cfg.get("width", 16)
        return UNet1d(in_channels=1 if len(item_shape) == 1 else item_shape[0], channels=ch,
                      channel_mult=tuple(train_cfg.get("channel_mult", (1, 2))), groups=min(8, ch // 2),
                      attention=train_cfg.get("attention", False))
    raise ValueError(f"train.arch must be 'mlp' or 'unet', got {arch!r}")


# ---- training and evaluation ---------------------------------------------------------------------------
def train_net(config: dict[str, Any], method: dict[str, Any], x: Tensor, idx: Tensor, seed: int,
              sigma_data: float) -> tuple[nn.Module, float]:
    """One recipe for every net of a cell: ``EDMPrecond(build_net)`` trained on ``x`` (source indices ``idx``
    for the fixed noisy copies) by the method's loss with ``seed``; returns the EMA denoiser and the last loss."""
    tcfg = config["train"]
    torch.manual_seed(seed)
    model = EDMPrecond(build_net(tcfg, tuple(x.shape[1:])), sigma_data=sigma_data)
    built = build_method(method, sigma_data)
    y = corrupt(x, idx, method["sigma_n"], seed=seed) if built.needs_noisy_copies else None
    keys = ("steps", "batch_size", "lr", "lr_warmup_steps", "ema_decay", "grad_clip")
    result = train(model, built.loss, x, TrainConfig(**{k: tcfg[k] for k in keys if k in tcfg}, seed=seed,
                                                     progress=False), y=y)
    return result.ema, result.last_loss


def sample_metrics(samples: Tensor, train: Tensor, test: Tensor, feats) -> dict[str, float]:
    """Memorization against ``train``; alignment (§6.6) with ``test`` (held-out reals: ``wasserstein``, ``js``,
    ``pca_components``) and with ``train`` (Vu et al.'s comparison: the same names ending ``_train``); MMD
    and FD (classifier features) against ``test``."""
    f_s, f_tr, f_te = feats(samples), feats(train), feats(test)
    mem = metrics.memorization_report(samples, train, features=f_s, train_features=f_tr)
    pw, pw_tr = metrics.pca_wasserstein_js(samples, test), metrics.pca_wasserstein_js(samples, train)
    return {"copy_share": mem["copy_share"], "nn_distance": mem["nn_distance"], "cosine_share": mem["cosine_share"],
            "wasserstein": pw["wasserstein"], "js": pw["js"], "pca_components": pw["components"],
            "wasserstein_train": pw_tr["wasserstein"], "js_train": pw_tr["js"],
            "pca_components_train": pw_tr["components"],
            "mmd": float(metrics.mmd_rbf(samples, test)), "fd": float(metrics.frechet_distance(f_s, f_te)),
            "fd_sampling_pm": metrics.frechet_bootstrap(f_s, f_te)}


def run_cell(config: dict[str, Any], cell: Cell, out: Path) -> dict[str, Any]:
    """Train and evaluate one cell; returns its JSON-ready result (the caller writes it)."""
    frozen = _freeze(config)
    b = _bundle(str(out), cell.dataset, frozen)
    clf = _classifier(str(out), cell.dataset, frozen)
    method = next(m for m in config["methods"] if m["name"] == cell.method)
    ecfg = config["eval"]
    x_train, idx = training_subset(b.source, cell.n, cell.seed)
    item_shape = tuple(x_train.shape[1:])

    t0 = time.perf_counter()
    ema, last_loss = train_net(config, method, x_train, idx, cell.seed, b.sigma_data)
    t1 = time.perf_counter()

    samples = generate(ema, ecfg.get("num_samples", 1000), item_shape, seed=10_000 + cell.seed,
                       steps=ecfg.get("sampler_steps", 18), sigma_min=ecfg.get("sigma_min", 0.002),
                       sigma_max=ecfg.get("sigma_max", 80.0), sampler=ecfg.get("sampler", "edm_heun"))
    feats = lambda x: features(clf, x)  # noqa: E731
    m = sample_metrics(samples, x_train, b.test, feats)
    ref = sample_metrics(b.pool[: samples.shape[0]], x_train, b.test, feats)  # held-out reals in place of samples
    t2 = time.perf_counter()

    sigmas, items = ecfg["readout_sigmas"], ecfg.get("readout_items", 256)
    readout = paired_readout(ema, EmpiricalDenoiser(x_train), b.ref.denoiser, x_train, b.test, sigmas,
                             num_items=items, seed=cell.seed)
    sigma_c = b.ref.sigma_c(b.pool, cell.n)  # a property of the population and n: the same for every seed
    t3 = time.perf_counter()

    two_net = None
    if runs_two_net(config, cell.method):
        x2, idx2 = training_subset(b.source, cell.n, cell.seed, part=1)
        ema2, loss2 = train_net(config, method, x2, idx2, cell.seed + TWO_NET_SEED_OFFSET, b.sigma_data)
        v = two_net_ratio(ema, ema2, x_train, x2, b.test, sigmas, num_items=items, seed=cell.seed)
        two_net = {"v": v.tolist(), "train_loss": loss2}
    metrics_ = {**m, **{f"ref_{k}": v for k, v in ref.items()}, "train_loss": last_loss}
    return {"cell": {"dataset": cell.dataset, "n": cell.n, "method": cell.method, "seed": cell.seed, "id": cell.id},
            "family": family(method), "method": method, "train_config": config["train"], "sigma_data": b.sigma_data,
            "metrics": metrics_, "readout": readout.to_dict(), "two_net": two_net, "sigma_c": sigma_c,
            "reference": b.ref.kind,
            "timing": {"train_s": t1 - t0, "sample_eval_s": t2 - t1, "readout_s": t3 - t2,
                       "two_net_s": time.perf_counter() - t3}}
