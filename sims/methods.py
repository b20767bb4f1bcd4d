"""The one registry of training methods for both tracks: a method spec names a loss and a noise-level law.

A spec is a mapping (a ``[[methods]]`` entry of a grid TOML, an image run's ``method``, a JSON result)::

    {loss = "hybrid_ambient", sigma_n = 1.0, weighting = "edm",
     noise = {kind = "ci_log_sigma", interval = [-1.5, 3.0], confidence = 0.95, tails = "truncate"}}

Losses (``sims.losses``, docs/THEORY.md §4.2-4.7): ``edm``, ``epsilon``, ``ambient``, ``hybrid_ambient``.
Noise-level laws (``sims.noise_levels``, §4.5-4.6): ``edm_lognormal`` (``P_mean``, ``P_std``),
``uniform_steps``, ``ci_t`` (``interval`` on ``u = t / T``), ``ci_log_sigma`` (``interval`` on ``ln sigma``),
``logit_normal`` (``loc``, ``scale``); the DDPM laws take ``schedule`` (``linear`` | ``cosine``) and ``T``.
These names are the same everywhere (TOML, CLI flags, JSON results, figure labels); the image track's
earlier names are mapped once, here, by ``canonical``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from sims import losses, noise_levels, schedules
from sims.configs import check_keys

LOSSES = ("edm", "epsilon", "ambient", "hybrid_ambient")
NOISE_LAWS = ("edm_lognormal", "uniform_steps", "ci_t", "ci_log_sigma", "logit_normal")
AMBIENT = ("ambient", "hybrid_ambient")  # the losses trained on fixed noisy copies
SPEC_KEYS = ("name", "loss", "noise", "sigma_n", "weighting")
OLD_LOSS_NAMES = {"eps": "epsilon", "hybrid": "hybrid_ambient"}
OLD_NOISE_NAMES = {"edm": "edm_lognormal", "uniform": "uniform_steps", "ci": "ci_t", "logit": "logit_normal"}
DEFAULT_NOISE = {"kind": "edm_lognormal"}


@dataclass(frozen=True)
class Method:
    """What a spec builds: the loss (over its noise-level law) and whether it trains on fixed noisy copies."""

    loss: Any
    levels: Any
    needs_noisy_copies: bool


def canonical(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec in the registry's names: earlier image-track names (``eps``, ``hybrid``; noise ``edm``,
    ``uniform``, ``ci``, ``logit``) mapped once, a missing noise law set to ``edm_lognormal``."""
    out = dict(spec)
    out["loss"] = OLD_LOSS_NAMES.get(out.get("loss", "edm"), out.get("loss", "edm"))
    noise = out.get("noise") or DEFAULT_NOISE
    if isinstance(noise, Mapping):
        noise = dict(noise)
        noise["kind"] = OLD_NOISE_NAMES.get(noise.get("kind"), noise.get("kind"))
    out["noise"] = noise
    return out


def _interval(params: dict[str, Any]) -> tuple[float, float]:
    """The CI law's ``interval``: exactly two finite floats ``[c_l, c_h]`` (popped from ``params``)."""
    value = params.pop("interval", None)
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)):
        raise ValueError(f"noise.interval must be two finite floats [c_l, c_h], got {value!r}")
    return float(value[0]), float(value[1])


def _noise_law(noise: Mapping[str, Any]):
    if not isinstance(noise, Mapping):
        raise ValueError(f"noise must be a table {{kind = ..., ...}}, got {noise!r}")
    params = dict(noise)
    kind = params.pop("kind", None)
    if kind in ("uniform_steps", "ci_t"):
        schedule = schedules.DDPMSchedule(kind=params.pop("schedule", "linear"), T=params.pop("T", 1000))
    if kind == "edm_lognormal":
        return noise_levels.EDMLogNormal(**params)
    if kind == "logit_normal":
        return noise_levels.LogitNormal(**params)
    if kind == "uniform_steps":
        return noise_levels.UniformSteps(schedule, **params)
    if kind == "ci_t":
        return noise_levels.ConfidenceIntervalGaussian(*_interval(params), schedule=schedule, **params)
    if kind == "ci_log_sigma":
        return noise_levels.ConfidenceIntervalGaussian(*_interval(params), space="log_sigma", **params)
    raise ValueError(f"noise.kind must be one of {NOISE_LAWS}, got {kind!r}")


def build_method(spec: Mapping[str, Any], sigma_data: float = 0.5) -> Method:
    """The loss and noise-level law of ``spec`` (module docstring); ``ValueError`` names a bad key."""
    spec = canonical(spec)
    check_keys(spec, SPEC_KEYS, "method spec")
    loss = spec["loss"]
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss in AMBIENT and spec.get("sigma_n") is None:
        raise ValueError(f"sigma_n must be given (> 0) for loss {loss!r}")
    try:
        levels = _noise_law(spec["noise"])
    except TypeError as e:  # a parameter the law does not take
        raise ValueError(f"noise {spec['noise']!r}: {e}") from None
    if loss == "edm":
        return Method(losses.EDMLoss(levels, sigma_data=sigma_data), levels, False)
    if loss == "epsilon":
        return Method(losses.EpsilonLoss(levels), levels, False)
    kind = losses.AmbientLoss if loss == "ambient" else losses.HybridAmbientLoss
    return Method(kind(levels, sigma_n=spec["sigma_n"], sigma_data=sigma_data,
                       weighting=spec.get("weighting", "edm")), levels, True)


def family(spec: Mapping[str, Any]) -> str:
    """The method's family for tables and colours: standard, ambient, CI (DDPM, t), CI (EDM, log sigma),
    ambient + CI."""
    spec = canonical(spec)
    kind = spec["noise"]["kind"]
    ci = kind.startswith("ci_")
    if spec["loss"] in AMBIENT:
        return "ambient + CI" if ci else "ambient"
    if ci:
        return "CI (DDPM, t)" if kind == "ci_t" else "CI (EDM, log sigma)"
    return "standard"
