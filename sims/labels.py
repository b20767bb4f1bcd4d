"""The one check of labelled training data for the feature classifiers of both tracks."""
from __future__ import annotations

import torch
from torch import Tensor

from theory.denoiser import check_finite


def check_labelled(x: Tensor, labels: Tensor, item_ndims: tuple[int, ...], name: str = "x") -> int:
    """Check ``x`` is a finite float tensor of ``n >= 2`` items with ``x.ndim - 1`` in ``item_ndims`` and
    ``labels`` non-negative integers of shape ``(n,)``; return the number of classes (at least 2)."""
    if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim - 1 not in item_ndims or x.shape[0] < 2:
        raise ValueError(f"{name} must be a floating tensor (n, *item) with an item of {' or '.join(map(str, item_ndims))} "
                         f"dimension(s) and n >= 2, got {getattr(x, 'shape', x)}")
    check_finite(x, name)
    if not torch.is_tensor(labels) or labels.shape != (x.shape[0],) or labels.is_floating_point() or int(labels.min()) < 0:
        raise ValueError(f"labels must be non-negative integers of shape ({x.shape[0]},)")
    return max(int(labels.max()) + 1, 2)
