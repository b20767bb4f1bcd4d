"""Evaluate a trained image model: sample with EDM Heun, then Frechet distance on classifier features next
to pixel-space metrics, memorization of the training subset (and, as a calibration, of held-out reals),
and a PNG grid showing each sample beside its nearest training image.

Memorization criteria (``sims.metrics.memorization_report``): pixel-space ratio ``d1 / d2 < 1/3`` of the
distances to the nearest and second-nearest training image; feature cosine to the nearest training image
``> 0.9`` and ``> 0.95``. The held-out reals row says how often an unseen real image already meets them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from image_track.data import Split
from image_track.features import DEFAULT_CACHE, PIXELS, ClassifierConfig, FeatureNet, feature_net
from image_track.train import load_run, load_split
from sims import metrics
from sims.artifacts import atomic_write_json, save_figure
from sims.samplers import generate

FEATURES = ("classifier", "pixels")


@dataclass(frozen=True)
class EvalConfig:
    """How a trained image model is sampled and read: ``num_samples`` by EDM Heun over ``sample_steps``
    Karras levels, ``sample_batch`` at a time from ``sample_seed``; features ``classifier`` (the dataset's
    cached feature CNN, trained on first use with ``classifier_epochs``) or ``pixels``; ``use_ema``: the EMA
    weights (else the raw ones)."""

    num_samples: int = 1000
    sample_steps: int = 18
    sample_batch: int = 256
    sample_seed: int = 1
    features: str = "classifier"
    cache_dir: str = str(DEFAULT_CACHE)
    classifier_epochs: int = ClassifierConfig.epochs
    use_ema: bool = True

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")


def sample_model(model: nn.Module, item_shape: tuple[int, ...], cfg: EvalConfig, device: str) -> Tensor:
    """``cfg.num_samples`` samples of ``model`` (``sims.samplers.generate``), float32 on the CPU."""
    return generate(model, cfg.num_samples, item_shape, seed=cfg.sample_seed, steps=cfg.sample_steps,
                    batch=cfg.sample_batch, device=device)


def _to_rgb(img: Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[-1, 1]`` -> ``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]`` for ``imshow``."""
    a = ((img.clamp(-1, 1) + 1) / 2).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def nearest_grid(samples: Tensor, train: Tensor, nn_index: Tensor, path: str | Path, config: dict[str, Any],
                 seed: int | None, cols: int = 4, title: str = "") -> Path:
    """A PNG of up to ``4 * cols`` (sample, nearest training image) pairs, with a provenance sidecar."""
    import matplotlib.pyplot as plt  # lazily: training ranks never load a plotting backend

    k = min(samples.shape[0], 4 * cols)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.1, rows * 1.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(k):
        r, c = divmod(i, cols)
        for j, (img, label) in enumerate(((samples[i], "sample"), (train[int(nn_index[i])], "nearest train"))):
            ax = axes[r, 2 * c + j]
            ax.imshow(_to_rgb(img), cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    out = save_figure(fig, path, config, seed)
    plt.close(fig)
    return out


class on_device:  # noqa: N801 (used like a function)
    """Adapt a denoiser on ``device`` to CPU callers: ``D(x, sigma)`` moves ``x`` (and a tensor ``sigma``)
    there and the result back to ``x``'s device and dtype."""

    def __init__(self, denoiser, device: str) -> None:
        self.denoiser, self.device = denoiser, torch.device(device)

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma) -> Tensor:
        s = sigma.to(self.device) if torch.is_tensor(sigma) else sigma
        return self.denoiser(x.to(self.device), s).to(x.device, x.dtype)


def feature_space(cfg: EvalConfig, dataset: str, data_path: str | None, device: str) -> FeatureNet:
    """``cfg.features``: the dataset's cached classifier (trained on first use) or raw pixels."""
    if cfg.features == "pixels":
        return PIXELS
    return feature_net(dataset, data_path, cfg.cache_dir, ClassifierConfig(epochs=cfg.classifier_epochs),
                       device=device, progress=True)


def evaluate_samples(samples: Tensor, split: Split, features: FeatureNet, num_reference: int = 10000) -> dict[str, Any]:
    """FD on ``features`` (samples vs held-out reals; the training subset vs the same reals as a floor),
    pixel-space distribution metrics, and memorization of the training subset by the samples and, as a
    calibration, by as many held-out reals."""
    ref = split.held[:num_reference]
    reals = split.held[-min(samples.shape[0], split.held.shape[0]):]  # unseen reals, as many as samples
    flat = lambda t: t.reshape(t.shape[0], -1).double()  # noqa: E731
    f_s, f_tr, f_ref, f_reals = features(samples), features(split.train), features(ref), features(reals)
    mem = metrics.memorization_report(flat(samples), flat(split.train), features=f_s, train_features=f_tr)
    mem_reals = metrics.memorization_report(flat(reals), flat(split.train), features=f_reals, train_features=f_tr)
    pw = metrics.pca_wasserstein_js(flat(samples), flat(ref))
    fd = float(metrics.frechet_distance(f_s, f_ref))
    report = {
        "features": features.name,
        "fd": fd,
        "fd_train_subset_vs_reference": float(metrics.frechet_distance(f_tr, f_ref)),
        "fd_pixels": float(metrics.frechet_distance(flat(samples), flat(ref))),
        "pixel_pca_wasserstein": pw["wasserstein"], "pixel_pca_js": pw["js"],
        "pixel_mmd_rbf": float(metrics.mmd_rbf(flat(samples), flat(ref))),
        "memorization": mem, "memorization_held_out_reals": mem_reals,
        "num_samples": samples.shape[0], "num_reference": ref.shape[0], "num_train": split.train.shape[0],
    }
    report["summary"] = {"fd": fd, "features": features.name, "memorized_share": mem["copy_share"],
                         "held_out_reals_share": mem_reals["copy_share"]}
    return report


def evaluate_run(run_dir: str | Path, cfg: EvalConfig, device: str) -> dict[str, Any]:
    """``memdiff image eval``: sample the run's model, evaluate, write ``eval/eval.json`` and ``eval/nearest.png``."""
    run, model = load_run(run_dir, device, use_ema=cfg.use_ema)
    split = load_split(run)
    samples = sample_model(model, tuple(split.train.shape[1:]), cfg, device)
    report = evaluate_samples(samples, split, feature_space(cfg, run.dataset, run.data_path, device))
    out = Path(run_dir) / "eval"
    config = {"run": run.to_dict(), "eval": asdict(cfg)}
    atomic_write_json(out / "eval.json", {**report, "config": config})
    nn_idx = metrics.nearest_neighbours(samples, split.train, k=1)[1][:, 0]
    nearest_grid(samples, split.train, nn_idx, out / "nearest.png", config, cfg.sample_seed,
                 title=f"{run.dataset} n={run.n} loss={run.loss}: samples beside their nearest training image")
    return report
