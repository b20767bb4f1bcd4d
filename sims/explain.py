"""What a trained net is, per noise level: the explained share ``r^2`` of the net's corrections by each closed form.

On held-out clean items ``x0_i`` (the first ``num_items``) and one fixed ``z_i`` per item (a generator seeded by
``(EXPLAIN, seed)``), the same inputs ``x_i = x0_i + sigma z_i`` go through the net and every closed form at
every ``sigma``; with the corrections ``c(x) = D(x) - x`` (``sigma^2`` times the score; ``D`` itself is near the
identity at low ``sigma`` for every denoiser, so comparing outputs would read ``r^2 ~ 1`` for all of them)

    r2(D_cf; sigma) = 1 - sum_i ||c_net(x_i) - c_cf(x_i)||^2 / sum_i ||c_net(x_i) - mean_j c_net(x_j)||^2,

in float64 from the denoisers' outputs: 1 where the closed form is the net, 0 for a closed form no closer to
the net than the net's own mean correction, negative for one farther; NaN where the net's corrections do not
vary over the items. The closed forms of a cell (:func:`closed_forms_for_cell`) are the training set's exact
optimum (``empirical``, the copier), the Wiener fit of the pool (``wiener``), the exact population denoiser
(``gmm``, where the dataset is a known mixture), the ambient optimum of the noisy copies an ambient method trains
on (``ambient``, defined only above its ``sigma_n``: NaN at ``sigma <= sigma_n``) and the local patch denoisers
of the training set, plain and translation-equivariant (``local_p{k}``, ``local_eq_p{k}``; Kamb & Ganguli's
local and ELS machines), built from at most ``local_items`` training items where the cell caps them
(``eval.explain_local_items``; :func:`closed_forms_for_cell`).

Theory: docs/THEORY.md §6.10 (closed forms: §2.1-§2.5)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from sims.readout import Reference
from theory import AmbientDenoiser, EmpiricalDenoiser, GaussianDenoiser, LocalPatchDenoiser
from theory.denoiser import Denoiser, check_batch, check_data, check_positive_int, check_sigmas
from theory.seeding import seeded_generator

EXPLAIN = 6  # domain tag of the fixed noise z: its streams never collide with the readout's or the corruption's
EXPLAIN_LOCAL = 12  # domain tag of the local forms' training subset (eval.explain_local_items); free of 1-6 and 11
DEFAULT_PATCHES = (5, 9, 17)


def check_patches(patches: Iterable[int], name: str = "patches") -> tuple[int, ...]:
    """A non-empty sequence of odd integers >= 1 (the local denoisers' patch sizes), else ``ValueError``."""
    try:
        sizes = tuple(patches)
    except TypeError:
        sizes = ()
    if not sizes or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 and p % 2 == 1 for p in sizes):
        raise ValueError(f"{name} must be a non-empty list of odd integers >= 1, got {patches!r}")
    return sizes


def _spatial(data: Tensor) -> tuple[int, ...]:
    """The spatial axes ``LocalPatchDenoiser`` reads from items ``(n, L)``, ``(n, C, L)``, ``(n, C, H, W)``;
    ``()`` for other shapes (no local form)."""
    return {2: tuple(data.shape[1:]), 3: tuple(data.shape[2:]), 4: tuple(data.shape[2:])}.get(data.ndim, ())


def local_subset(n: int, local_items: int, seed: int) -> Tensor:
    """The indices (ascending) of the ``min(local_items, n)`` training items the local forms are built from: the
    first ``local_items`` of ``torch.randperm(n, generator=seeded_generator(EXPLAIN_LOCAL, seed))``, sorted (all
    ``n`` where ``local_items >= n``)."""
    return torch.randperm(n, generator=seeded_generator(EXPLAIN_LOCAL, seed))[:local_items].sort().values


def closed_forms_for_cell(train: Tensor, pool: Tensor, ref: Reference, *, noisy: Tensor | None = None,
                          sigma_n: float | None = None, patches: Iterable[int] = DEFAULT_PATCHES,
                          local_items: int | None = None, seed: int = 0) -> dict[str, Denoiser]:
    """The closed forms a cell's net is compared with (§6.10): ``empirical`` (the exact optimum of ``train``),
    ``wiener`` (``GaussianDenoiser.fit(pool)``), ``gmm`` (``ref.denoiser`` where ``ref.kind == "exact"``),
    ``ambient`` (``AmbientDenoiser(noisy, sigma_n)``, where the method trains on the fixed noisy copies ``noisy``
    of ``train``) and, per patch size ``k`` that fits the item (odd, at most each spatial size), ``local_p{k}``
    and ``local_eq_p{k}`` (``LocalPatchDenoiser(train, k)``, plain and equivariant; per spatial axis for 2D
    items).

    ``local_items`` (an integer >= 2, or ``None``: no cap) bounds the local forms' cost, which grows as
    O(items x n x L x k) per sigma (the others are cheap and always use all of ``train``): where ``train`` holds
    more than ``local_items`` items, the local forms are ``LocalPatchDenoiser(train[local_subset(n, local_items,
    seed)], k)``, a random subset of ``m = local_items`` items drawn from ``seeded_generator(EXPLAIN_LOCAL,
    seed)``. That is a different closed form, the local machine of those ``m`` items, not an estimate of the
    local machine of all ``n`` (its patch posterior has fewer, hence farther, neighbours); results label it so
    (``local_items`` beside ``n``). With ``local_items >= n`` or ``None`` the forms are those of all ``train``."""
    check_data(train, "train")
    check_data(pool, "pool")
    if tuple(pool.shape[1:]) != tuple(train.shape[1:]):
        raise ValueError(f"pool must have train's item shape {tuple(train.shape[1:])}, got {tuple(pool.shape[1:])}")
    if not isinstance(ref, Reference):
        raise ValueError(f"ref must be a sims.readout.Reference, got {type(ref).__name__}")
    sizes = check_patches(patches)
    if local_items is not None and (isinstance(local_items, bool) or not isinstance(local_items, int)
                                    or local_items < 2):
        raise ValueError(f"local_items must be an integer >= 2 or None, got {local_items!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if (noisy is None) != (sigma_n is None):
        raise ValueError("noisy and sigma_n must be given together (an ambient method's noisy copies and its "
                         f"sigma_n), got noisy {'None' if noisy is None else 'given'} and sigma_n {sigma_n!r}")
    forms: dict[str, Denoiser] = {"empirical": EmpiricalDenoiser(train), "wiener": GaussianDenoiser.fit(pool)}
    if ref.kind == "exact":
        forms["gmm"] = ref.denoiser
    if noisy is not None:
        check_batch(noisy, tuple(train.shape[1:]), "noisy")
        if noisy.shape[0] != train.shape[0]:
            raise ValueError(f"noisy must hold one copy per training item ({train.shape[0]}), got {noisy.shape[0]}")
        forms["ambient"] = AmbientDenoiser(noisy, sigma_n)
    spatial = _spatial(train)
    local = train if local_items is None or local_items >= train.shape[0] else \
        train[local_subset(train.shape[0], local_items, seed).to(train.device)]
    for k in sizes:
        if spatial and all(k <= s for s in spatial):
            forms[f"local_p{k}"] = LocalPatchDenoiser(local, k)
            forms[f"local_eq_p{k}"] = LocalPatchDenoiser(local, k, equivariant=True)
    return forms


def _correction(denoiser: Denoiser, x: Tensor, sigma: float, name: str) -> Tensor:
    """``D(x, sigma) - x`` in float64; ``ValueError`` naming ``name`` if ``D`` does not return ``x``'s shape."""
    out = denoiser(x, sigma)
    if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"{name} must return a tensor of its input's shape {tuple(x.shape)}, got {got}")
    return out.to(torch.float64) - x.to(torch.float64)


@torch.no_grad()
def explained_variance(net: Denoiser, closed_forms: Mapping[str, Denoiser], items: Tensor, sigmas, *,
                       num_items: int = 256, seed: int = 0, chunk: int = 256) -> dict:
    """``{"sigma": [...], "r2": {name: [r2 per sigma]}}`` (JSON-ready; NaN where undefined): per ``sigma`` the
    share of the net's correction variance that each closed form explains on ``x = x0 + sigma z`` (§6.10; module
    docstring), ``x0`` the first ``num_items`` of ``items`` (held-out reals), one ``z`` per item seeded by
    ``seed`` and shared by every denoiser and ``sigma``. A closed form with a ``sigma_n`` attribute (the ambient
    optimum, §2.4) is NaN at ``sigma <= sigma_n``. Denoisers see ``chunk`` items per call."""
    if not callable(net):
        raise ValueError(f"net must be a denoiser D(x, sigma), got {type(net).__name__}")
    if not (isinstance(closed_forms, Mapping) and closed_forms
            and all(isinstance(k, str) and callable(v) for k, v in closed_forms.items())):
        raise ValueError(f"closed_forms must be a non-empty mapping of names to denoisers D(x, sigma), got "
                         f"{type(closed_forms).__name__}")
    check_batch(items, tuple(items.shape[1:]) if torch.is_tensor(items) else (), "items")
    sig = check_sigmas(sigmas)
    check_positive_int(num_items, "num_items")
    check_positive_int(chunk, "chunk")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    x0 = items[:num_items]
    m = x0.shape[0]
    z = torch.randn(x0.shape, generator=seeded_generator(EXPLAIN, seed), dtype=x0.dtype).to(x0.device)
    names = list(closed_forms)
    r2 = np.full((sig.size, len(names)), math.nan)
    for j, s in enumerate(sig.tolist()):
        x = x0 + s * z
        c_net = torch.cat([_correction(net, x[i:i + chunk], s, "net") for i in range(0, m, chunk)])
        den = float((c_net - c_net.mean(0)).square().sum())
        if not den > 0:
            continue
        for k, name in enumerate(names):
            form = closed_forms[name]
            if not s > getattr(form, "sigma_n", 0.0):  # the ambient optimum is undefined at sigma <= sigma_n
                continue
            num = sum(float((c_net[i:i + chunk] - _correction(form, x[i:i + chunk], s, f"closed_forms[{name!r}]"))
                            .square().sum()) for i in range(0, m, chunk))
            r2[j, k] = 1.0 - num / den
    return {"sigma": sig.tolist(), "r2": {name: r2[:, k].tolist() for k, name in enumerate(names)}}
