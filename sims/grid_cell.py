"""One cell of the 1D grid: draw the training subset, train ``EDMPrecond(net)``, sample, measure.

Per dataset (prepared once, cached under ``<out>/cache``): a source of training candidates, a held-out
test set, a population pool with labels, the best generalizing denoiser ``D_gen`` (exact for the
Gaussian mixture, the empirical denoiser of the pool otherwise) and a feature classifier trained on the
pool (``sims.classifier1d``). Per cell: the training subset (``n`` items drawn by seed), the method's
noise-level distribution and loss, training (``sims.training``), ``num_samples`` samples, memorization
and alignment metrics (``sims.metrics``) with held-out reals as the reference, and the paired readout
r(sigma) (``sims.readout``) with sigma_C and the copy onset.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sims.artifacts import atomic_write
from sims.experiments import Cell


@dataclass
class Bundle:
    source: Tensor
    test: Tensor
    pool: Tensor
    pool_labels: Tensor
    gen: Any  # D_gen: a denoiser
    sigma_data: float


# ---- data -----------------------------------------------------------------------------------------------
def _make_data(spec: dict[str, Any], cache: Path) -> dict[str, Tensor]:
    """Disjoint source / test / pool draws of one dataset kind (labels for the pool)."""
    kind, sizes = spec["kind"], (spec["source"], spec["test"], spec["pool"])
    total = sum(sizes)
    if kind == "mnist1d":
        from sims.data import mnist1d

        x, y = mnist1d(total, seed=spec.get("data_seed", 0))
        extra: dict[str, Tensor] = {}
    elif kind == "ecg":
        from sims.ecg import simulate_beats

        x, y = simulate_beats(total, seed=spec.get("data_seed", 0), beats_per_recording=spec.get("beats_per_recording", 10),
                              cache_dir=cache)
        extra = {}
    else:
        from sims.data import gaussian_mixture

        gmm = gaussian_mixture(**spec.get("gmm", {}), seed=spec.get("data_seed", 0))
        x, y = gmm.sample(total, generator=torch.Generator().manual_seed(spec.get("data_seed", 0) + 1), return_labels=True)
        extra = {"gmm_weights": gmm.weights, "gmm_means": gmm.means, "gmm_covs": gmm.covs}
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(12345))
    x, y = x[perm].float(), y[perm].long()
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"source": x[:a], "test": x[a:b], "pool": x[b:], "pool_labels": y[b:], **extra}


def _data_path(out: Path, spec: dict[str, Any]) -> Path:
    """Keyed by what the draws depend on, so dataset entries that differ only in ``n`` or methods share them."""
    import hashlib
    import json

    keys = ("kind", "source", "test", "pool", "data_seed", "gmm", "beats_per_recording")
    digest = hashlib.sha1(json.dumps({k: spec.get(k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12]
    return out / "cache" / f"data_{spec['kind']}_{digest}.pt"


def prepare(config: dict[str, Any], out: str | Path) -> None:
    """Make (or reuse) every dataset's cached draws and feature classifier before workers start."""
    out = Path(out)
    for spec in config["datasets"]:
        _bundle(str(out), spec["name"], _freeze(config))


def _freeze(config: dict[str, Any]) -> str:
    import json

    return json.dumps(config, sort_keys=True)


@lru_cache(maxsize=8)
def _bundle(out: str, name: str, frozen: str) -> Bundle:
    import json

    config = json.loads(frozen)
    spec = next(d for d in config["datasets"] if d["name"] == name)
    cache = Path(out) / "cache"
    path = _data_path(Path(out), spec)
    if path.exists():
        data = torch.load(path, weights_only=True)
    else:
        data = _make_data(spec, cache)
        atomic_write(path, lambda tmp: torch.save(data, tmp))
    if spec["kind"] == "gmm":
        from theory import GMMDenoiser

        gen = GMMDenoiser(data["gmm_weights"], data["gmm_means"], data["gmm_covs"])
    else:
        from theory import EmpiricalDenoiser

        gen = EmpiricalDenoiser(data["pool"])
    return Bundle(source=data["source"], test=data["test"], pool=data["pool"], pool_labels=data["pool_labels"],
                  gen=gen, sigma_data=float(data["pool"].std()))


@lru_cache(maxsize=8)
def _classifier(out: str, name: str, frozen: str):
    import json

    from sims.classifier1d import ClassifierConfig, cached_classifier

    config = json.loads(frozen)
    b = _bundle(out, name, frozen)
    return cached_classifier(b.pool, b.pool_labels, Path(out) / "cache",
                             ClassifierConfig(steps=config["eval"].get("classifier_steps", 1500)))


def training_subset(source: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` items of ``source`` drawn without replacement by ``seed`` (and their indices)."""
    if not 1 <= n <= source.shape[0]:
        raise ValueError(f"n must be in [1, {source.shape[0]}] (the source size), got {n}")
    idx = torch.randperm(source.shape[0], generator=torch.Generator().manual_seed(1000 + seed))[:n]
    return source[idx], idx


# ---- model and method -----------------------------------------------------------------------------------
def build_net(train_cfg: dict[str, Any], item_shape: tuple[int, ...]) -> nn.Module:
    """The raw net ``F(x_in, c_noise)`` named by ``train.arch``."""
    arch = train_cfg.get("arch", "mlp")
    if arch == "mlp":
        from sims.mlp1d import MLP1d

        return MLP1d(item_shape, width=train_cfg.get("width", 256), depth=train_cfg.get("depth", 2))
    if arch == "unet":
        from sims.unet1d import UNet1d

        ch = train_cfg.get("width", 16)
        return UNet1d(in_channels=1 if len(item_shape) == 1 else item_shape[0], channels=ch,
                      channel_mult=tuple(train_cfg.get("channel_mult", (1, 2))), groups=min(8, ch // 2),
                      attention=train_cfg.get("attention", False))
    raise ValueError(f"train.arch must be 'mlp' or 'unet', got {arch!r}")


def family(method: dict[str, Any]) -> str:
    """The method's family for tables and colours."""
    ci = method.get("noise", {}).get("kind", "").startswith("ci_")
    if method.get("loss") == "hybrid_ambient":
        return "ambient + CI" if ci else "ambient"
    if ci:
        return "CI (DDPM, t)" if method["noise"]["kind"] == "ci_t" else "CI (EDM, log sigma)"
    return "standard"


def build_loss(method: dict[str, Any], sigma_data: float):
    """``(loss, needs_noisy_copies)`` for a method spec (see configs/sim_grid.toml)."""
    from sims import losses, noise_levels, schedules

    noise = dict(method.get("noise", {"kind": "edm_lognormal"}))
    kind = noise.pop("kind")
    schedule = schedules.DDPMSchedule(kind=noise.pop("schedule", "linear"), T=noise.pop("T", 1000))
    if kind == "edm_lognormal":
        dist = noise_levels.EDMLogNormal(**noise)
    elif kind == "uniform_steps":
        dist = noise_levels.UniformSteps(schedule)
    elif kind == "ci_t":
        c_l, c_h = noise.pop("interval")
        dist = noise_levels.ConfidenceIntervalGaussian(c_l, c_h, schedule=schedule, **noise)
    elif kind == "ci_log_sigma":
        c_l, c_h = noise.pop("interval")
        dist = noise_levels.ConfidenceIntervalGaussian(c_l, c_h, space="log_sigma", **noise)
    else:
        raise ValueError(f"methods.noise.kind must be edm_lognormal, uniform_steps, ci_t or ci_log_sigma, got {kind!r}")
    loss = method.get("loss", "edm")
    if loss == "edm":
        return losses.EDMLoss(dist, sigma_data=sigma_data), False
    if loss == "epsilon":
        return losses.EpsilonLoss(dist), False
    if loss == "hybrid_ambient":
        return losses.HybridAmbientLoss(dist, sigma_n=method["sigma_n"], sigma_data=sigma_data), True
    raise ValueError(f"methods.loss must be edm, epsilon or hybrid_ambient, got {loss!r}")


# ---- evaluation ---------------------------------------------------------------------------------------
@torch.no_grad()
def generate(denoiser, num: int, item_shape: tuple[int, ...], eval_cfg: dict[str, Any], seed: int) -> Tensor:
    from sims import samplers, schedules

    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(num, *item_shape, generator=g)
    sigmas = schedules.karras_sigmas(eval_cfg.get("sampler_steps", 18), sigma_min=eval_cfg.get("sigma_min", 0.002),
                                     sigma_max=eval_cfg.get("sigma_max", 80.0))
    sampler = getattr(samplers, eval_cfg.get("sampler", "edm_heun"))
    return sampler(denoiser, noise, sigmas)


def sample_metrics(samples: Tensor, train: Tensor, test: Tensor, feats) -> dict[str, float]:
    """Memorization against ``train`` and alignment with ``test`` (features from the classifier)."""
    from sims import metrics

    f_s, f_tr, f_te = feats(samples), feats(train), feats(test)
    mem = metrics.memorization_report(samples, train, features=f_s, train_features=f_tr)
    pw = metrics.pca_wasserstein_js(samples, test)
    return {"copy_share": mem["copy_share"], "nn_distance": mem["nn_distance"], "cosine_share": mem["cosine_share"],
            "wasserstein": pw["wasserstein"], "js": pw["js"], "mmd": float(metrics.mmd_rbf(samples, test)),
            "fd": float(metrics.frechet_distance(f_s, f_te))}


def run_cell(config: dict[str, Any], cell: Cell, out: Path) -> dict[str, Any]:
    """Train and evaluate one cell; returns its JSON-ready result (the caller writes it)."""
    from sims.classifier1d import features
    from sims.corruption import corrupt
    from sims.preconditioning import EDMPrecond
    from sims.readout import paired_readout
    from sims.training import TrainConfig, train
    from theory import EmpiricalDenoiser

    frozen = _freeze(config)
    b = _bundle(str(out), cell.dataset, frozen)
    clf = _classifier(str(out), cell.dataset, frozen)
    method = next(m for m in config["methods"] if m["name"] == cell.method)
    tcfg, ecfg = config["train"], config["eval"]
    x_train, idx = training_subset(b.source, cell.n, cell.seed)
    item_shape = tuple(x_train.shape[1:])

    t0 = time.perf_counter()
    torch.manual_seed(cell.seed)
    model = EDMPrecond(build_net(tcfg, item_shape), sigma_data=b.sigma_data)
    loss, noisy = build_loss(method, b.sigma_data)
    y = corrupt(x_train, idx, method["sigma_n"], seed=cell.seed) if noisy else None
    keys = ("steps", "batch_size", "lr", "lr_warmup_steps", "ema_decay", "grad_clip")
    result = train(model, loss, x_train, TrainConfig(**{k: tcfg[k] for k in keys if k in tcfg}, seed=cell.seed,
                                                     progress=False), y=y)
    ema = result.ema
    t1 = time.perf_counter()

    samples = generate(ema, ecfg.get("num_samples", 1000), item_shape, ecfg, seed=10_000 + cell.seed)
    feats = lambda x: features(clf, x)  # noqa: E731
    m = sample_metrics(samples, x_train, b.test, feats)
    ref = sample_metrics(b.pool[: samples.shape[0]], x_train, b.test, feats)  # held-out reals in place of samples
    t2 = time.perf_counter()

    emp = EmpiricalDenoiser(x_train)
    readout = paired_readout(ema, emp, b.gen, x_train, b.test, ecfg["readout_sigmas"],
                             num_items=ecfg.get("readout_items", 256), seed=cell.seed)
    sigma_c = _sigma_c(x_train)
    metrics_ = {**m, **{f"ref_{k}": v for k, v in ref.items()}, "train_loss": result.last_loss}
    return {"cell": {"dataset": cell.dataset, "n": cell.n, "method": cell.method, "seed": cell.seed, "id": cell.id},
            "family": family(method), "method": method, "train_config": tcfg, "sigma_data": b.sigma_data,
            "metrics": metrics_, "readout": readout.to_dict(), "sigma_c": sigma_c,
            "timing": {"train_s": t1 - t0, "sample_eval_s": t2 - t1, "readout_s": time.perf_counter() - t2}}


def _sigma_c(x_train: Tensor) -> float:
    from theory.diagnostics import collapse_sigma_entropy

    return float(collapse_sigma_entropy(x_train))
