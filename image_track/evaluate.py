"""Evaluate a trained image model: sample with EDM Heun, then Frechet distance on classifier features next
to pixel-space metrics, memorization of the training subset (and, as a calibration, of held-out reals),
and a PNG grid showing each sample beside its nearest training image.

Memorization criteria (``sims.metrics.memorization_report``): pixel-space ratio ``d1 / d2 < 1/3`` of the
distances to the nearest and second-nearest training image; feature cosine to the nearest training image
``> 0.9`` and ``> 0.95``. The held-out reals row says how often an unseen real image already meets them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from image_track.data import Split
from image_track.features import PIXELS, FeatureNet
from sims.artifacts import atomic_write_json, save_figure
from sims.training import derive_seed


@torch.no_grad()
def generate(denoiser: nn.Module, num: int, item_shape: tuple[int, ...], num_steps: int = 18, batch: int = 256,
             seed: int = 0, device: str = "cpu", bf16: bool = False) -> Tensor:
    """``num`` samples by ``sims.samplers.edm_heun`` in batches; batch ``b`` draws its noise from a generator
    seeded by ``(seed, b)`` so the samples do not depend on ``batch`` beyond float rounding. Returned on CPU."""
    from sims.samplers import edm_heun

    if num < 1 or batch < 1:
        raise ValueError(f"num and batch must be >= 1, got {num}, {batch}")
    out = []
    for b, start in enumerate(range(0, num, batch)):
        k = min(batch, num - start)
        gen = torch.Generator().manual_seed(derive_seed(seed, b))
        noise = torch.randn(k, *item_shape, generator=gen).to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            x = edm_heun(denoiser, noise, num_steps=num_steps)
        out.append(x.float().cpu())
    return torch.cat(out)


def _to_rgb(img: Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[-1, 1]`` -> ``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]`` for ``imshow``."""
    a = ((img.clamp(-1, 1) + 1) / 2).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def nearest_grid(samples: Tensor, train: Tensor, nn_index: Tensor, path: str | Path, config: dict[str, Any],
                 seed: int | None, cols: int = 4, title: str = "") -> Path:
    """A PNG of up to ``4 * cols`` (sample, nearest training image) pairs, with a provenance sidecar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
