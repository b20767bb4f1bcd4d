"""sims.methods: one registry turns a method spec into the loss and noise-level law of either track."""
from __future__ import annotations

import pytest
import torch

from sims import losses, noise_levels
from sims.methods import LOSSES, NOISE_LAWS, build_method, canonical, family


@pytest.mark.parametrize("loss, kind", [(loss, kind) for loss in LOSSES for kind in NOISE_LAWS])
def test_every_loss_over_every_law_builds_and_draws(loss, kind):
    noise = {"kind": kind, **({"interval": [0.2, 0.8]} if kind == "ci_t" else {"interval": [-1.0, 1.0]}
                             if kind == "ci_log_sigma" else {})}
    m = build_method({"loss": loss, "noise": noise, "sigma_n": 0.5}, sigma_data=0.7)
    assert m.needs_noisy_copies == (loss in ("ambient", "hybrid_ambient"))
    assert m.loss.levels is m.levels
    s = m.levels.sample(64, generator=torch.Generator().manual_seed(0)).sigma
    assert s.shape == (64,) and bool((s > 0).all())


def test_specs_map_to_the_engine_objects_with_their_parameters():
    m = build_method({"loss": "hybrid_ambient", "sigma_n": 1.5, "weighting": "x0",
                      "noise": {"kind": "ci_t", "interval": [0.1, 0.5], "confidence": 0.9, "T": 500}}, sigma_data=0.3)
    assert isinstance(m.loss, losses.HybridAmbientLoss) and not isinstance(m.loss, losses.AmbientLoss)
    assert (m.loss.sigma_n, m.loss.sigma_data, m.loss.weighting) == (1.5, 0.3, "x0")
    assert isinstance(m.levels, noise_levels.ConfidenceIntervalGaussian) and m.levels.schedule.T == 500
    default = build_method({})
    assert isinstance(default.loss, losses.EDMLoss) and isinstance(default.levels, noise_levels.EDMLogNormal)
    assert isinstance(build_method({"loss": "epsilon", "noise": {"kind": "uniform_steps"}}).loss, losses.EpsilonLoss)


def test_earlier_image_track_names_are_mapped_once():
    old = {"loss": "hybrid", "sigma_n": 0.2, "noise": {"kind": "ci", "interval": [0.0, 0.5]}}
    assert canonical(old)["loss"] == "hybrid_ambient" and canonical(old)["noise"]["kind"] == "ci_t"
    assert canonical({"loss": "eps", "noise": {"kind": "logit"}}) == {"loss": "epsilon", "noise": {"kind": "logit_normal"}}
    assert type(build_method(old).loss) is type(build_method(canonical(old)).loss)


def test_image_runs_written_before_the_registry_still_load():
    from image_track.train import ImageRun

    new = ImageRun(loss="hybrid_ambient", sigma_n=0.3, noise={"kind": "ci_t", "interval": [0.0, 0.4]})
    old = {k: v for k, v in new.to_dict().items() if k not in ("noise",)}
    old.update(loss="hybrid", dist="ci", ci_low=0.0, ci_high=0.4)
    back = ImageRun.from_dict(old)
    assert back.method == new.method and ImageRun.from_dict(new.to_dict()).method == new.method


@pytest.mark.parametrize("spec, match", [
    ({"loss": "l2"}, "loss must be one of"),
    ({"loss": "ambient"}, "sigma_n"),
    ({"noise": {"kind": "cosine"}}, "noise.kind"),
    ({"noise": {"kind": "edm_lognormal", "mean": 0.0}}, "noise"),
    ({"loss": "edm", "stepz": 3}, "unknown key"),
    ({"loss": "hybrid_ambient", "sigma_n": 1.0, "weighting": "x1"}, "weighting"),
    ({"noise": {"kind": "ci_t"}}, "noise.interval"),
    ({"noise": {"kind": "ci_log_sigma", "interval": [-1.0, 1.0, 0.8]}}, "noise.interval"),
    ({"noise": "edm_lognormal"}, "noise must be a table"),
])
def test_bad_specs_are_named(spec, match):
    with pytest.raises(ValueError, match=match):
        build_method(spec)


def test_families_label_figures():
    assert family({}) == "standard"
    assert family({"loss": "hybrid_ambient", "sigma_n": 1}) == "ambient"
    assert family({"loss": "epsilon", "noise": {"kind": "ci_t", "interval": [0, 1]}}) == "CI (DDPM, t)"
    assert family({"noise": {"kind": "ci_log_sigma", "interval": [-1, 1]}}) == "CI (EDM, log sigma)"
    assert family({"loss": "hybrid_ambient", "sigma_n": 1, "noise": {"kind": "ci_log_sigma", "interval": [0, 1]}}) \
        == "ambient + CI"


def test_the_grid_config_rejects_a_bad_method_by_name():
    from sims.grid import check_config

    config = {"run": {"seeds": [0]}, "train": {}, "eval": {}, "datasets": [{"name": "a", "kind": "gmm", "n": [10]}],
              "methods": [{"name": "bad", "loss": "edm", "noise": {"kind": "ci_zzz"}}]}
    with pytest.raises(ValueError, match="'bad'.*noise.kind"):
        check_config(config)
