"""The explained share r^2 of closed forms against a net (docs/THEORY.md §6.10): calibrated on nets that are a
closed form or unrelated to every one, the ambient form's undefined band, argument checks, and one tiny grid cell
run with ``eval.explain``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sims.explain import EXPLAIN_LOCAL, closed_forms_for_cell, explained_variance
from sims.grid import check_config
from sims.readout import Reference
from theory import EmpiricalDenoiser, GaussianDenoiser, LocalPatchDenoiser
from theory.seeding import seeded_generator

SIGMAS = [0.05, 0.3, 1.0, 3.0]


def _data(n: int, length: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2 * math.pi, length)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    return torch.sin(t + phase) + 0.3 * torch.randn(n, length, generator=g)


TRAIN, TEST, POOL = _data(16, seed=0), _data(20, seed=1), _data(200, seed=2)


def test_a_net_that_is_a_closed_form_reads_one_and_the_others_less():
    forms = closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3, 5, 15])
    assert list(forms) == ["empirical", "wiener", "local_p3", "local_eq_p3", "local_p5", "local_eq_p5"]  # 15 > 12
    out = explained_variance(EmpiricalDenoiser(TRAIN), forms, TEST, SIGMAS, num_items=20, seed=3)
    assert out["sigma"] == SIGMAS and list(out["r2"]) == list(forms)
    assert np.allclose(out["r2"]["empirical"], 1.0, atol=1e-6)
    assert max(out["r2"]["wiener"]) < 1 - 1e-3  # the Wiener filter is not the copier, at any sigma
    wiener = explained_variance(GaussianDenoiser.fit(POOL), forms, TEST, SIGMAS, num_items=20, seed=3)
    assert np.allclose(wiener["r2"]["wiener"], 1.0, atol=1e-6) and min(wiener["r2"]["empirical"]) < 0.9
    again = explained_variance(EmpiricalDenoiser(TRAIN), forms, TEST, SIGMAS, num_items=20, seed=3)
    assert again == out  # seeded: the same z


def test_a_net_unrelated_to_every_closed_form_explains_nothing():
    def noise_net(x, sigma):  # D(x) = x + noise that does not depend on x
        g = torch.Generator().manual_seed(x.shape[0])
        return x + torch.randn(x.shape, generator=g, dtype=x.dtype)

    forms = closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3])
    out = explained_variance(noise_net, forms, TEST, SIGMAS, num_items=20, seed=0)
    assert all(v <= 0.05 for curve in out["r2"].values() for v in curve)


def test_the_ambient_form_is_undefined_at_and_below_sigma_n_and_gmm_comes_with_an_exact_reference():
    exact = GaussianDenoiser.fit(POOL)
    noisy = TRAIN + 0.5 * torch.randn(TRAIN.shape, generator=torch.Generator().manual_seed(9))
    forms = closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL, exact), noisy=noisy, sigma_n=0.5, patches=[3])
    assert list(forms) == ["empirical", "wiener", "gmm", "ambient", "local_p3", "local_eq_p3"]
    out = explained_variance(EmpiricalDenoiser(TRAIN), forms, TEST, [0.1, 0.5, 1.0, 2.0], num_items=10, seed=0)
    amb = out["r2"]["ambient"]
    assert math.isnan(amb[0]) and math.isnan(amb[1]) and np.isfinite(amb[2:]).all()
    assert all(np.isfinite(out["r2"][k]).all() for k in forms if k != "ambient")


def test_two_dimensional_items_get_local_forms_per_axis():
    train = torch.randn(6, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    forms = closed_forms_for_cell(train, train, Reference.of(train), patches=[3, 7])
    assert "local_eq_p3" in forms and "local_p7" not in forms
    out = explained_variance(forms["local_eq_p3"], forms, train, [0.5], num_items=6)
    assert out["r2"]["local_eq_p3"][0] == pytest.approx(1.0, abs=1e-6)


def _outputs(forms, sigmas=(0.1, 1.0)):
    x = TEST[:6]
    return {name: [form(x, s) for s in sigmas] for name, form in forms.items()}


def _same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_a_local_items_cap_at_or_above_n_changes_nothing():
    whole = _outputs(closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3, 5]))
    for m in (16, 40):  # TRAIN holds 16 items
        capped = _outputs(closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3, 5], local_items=m, seed=4))
        assert list(capped) == list(whole) and all(_same(capped[k], whole[k]) for k in whole)


def test_local_items_below_n_builds_the_local_forms_of_a_seeded_subset_and_leaves_the_others():
    whole_forms = closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3, 5])
    capped_forms = closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3, 5], local_items=5, seed=4)
    whole, capped = _outputs(whole_forms), _outputs(capped_forms)
    assert list(capped) == list(whole)
    subset = torch.randperm(16, generator=seeded_generator(EXPLAIN_LOCAL, 4))[:5].sort().values  # documented draw
    for k in (3, 5):
        for name, eq in ((f"local_p{k}", False), (f"local_eq_p{k}", True)):
            mine = _outputs({name: LocalPatchDenoiser(TRAIN[subset], k, equivariant=eq)})[name]
            assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(capped[name], mine, strict=True))
            assert not all(torch.allclose(u, v, atol=1e-4) for u, v in zip(capped[name], whole[name], strict=True))
    assert all(_same(capped[k], whole[k]) for k in ("empirical", "wiener"))
    other = _outputs(closed_forms_for_cell(TRAIN, POOL, Reference.of(POOL), patches=[3], local_items=5, seed=5))
    assert not _same(other["local_p3"], capped["local_p3"])  # the subset follows the seed


FORMS = {"empirical": EmpiricalDenoiser(TRAIN)}


@pytest.mark.parametrize("kwargs, match", [
    ({"net": None}, "net must be a denoiser"),
    ({"closed_forms": {}}, "closed_forms must be a non-empty mapping"),
    ({"closed_forms": {"a": 1}}, "closed_forms must be a non-empty mapping"),
    ({"items": torch.zeros(4, 12, dtype=torch.long)}, "items must be a floating-point"),
    ({"items": torch.full((4, 12), math.nan)}, "items must be finite"),
    ({"sigmas": [0.1, -1.0]}, "sigmas must be a non-empty sequence"),
    ({"sigmas": []}, "sigmas must be a non-empty sequence"),
    ({"num_items": 0}, "num_items must be a positive integer"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"chunk": 0}, "chunk must be a positive integer"),
    ({"net": lambda x, s: x[:, :3]}, r"net must return a tensor of its input's shape"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"net": FORMS["empirical"], "closed_forms": FORMS, "items": TEST, "sigmas": [1.0], "num_items": 4,
            "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match) as e:
        explained_variance(args.pop("net"), args.pop("closed_forms"), args.pop("items"), args.pop("sigmas"), **args)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"patches": [4]}, "patches must be a non-empty list of odd integers"),
    ({"patches": []}, "patches must be a non-empty list of odd integers"),
    ({"noisy": TRAIN}, "noisy and sigma_n must be given together"),
    ({"noisy": TRAIN[:3], "sigma_n": 0.5}, "noisy must hold one copy per training item"),
    ({"pool": torch.zeros(5, 7)}, "pool must have train's item shape"),
    ({"ref": None}, "ref must be a sims.readout.Reference"),
    ({"local_items": 0}, "local_items must be an integer >= 2"),
    ({"local_items": 1}, "local_items must be an integer >= 2"),
    ({"local_items": True}, "local_items must be an integer >= 2"),
    ({"local_items": 4.0}, "local_items must be an integer >= 2"),
    ({"local_items": 4, "seed": -1}, "seed must be an integer >= 0"),
])
def test_closed_forms_for_cell_names_a_bad_argument(kwargs, match):
    args = {"pool": POOL, "ref": Reference.of(POOL), **kwargs}
    with pytest.raises(ValueError, match=match):
        closed_forms_for_cell(TRAIN, args.pop("pool"), args.pop("ref"), **args)


TINY = {"run": {"seeds": [0]},
        "train": {"arch": "mlp", "width": 16, "depth": 1, "steps": 10, "batch_size": 8},
        "eval": {"num_samples": 8, "sampler_steps": 3, "readout_sigmas": [0.1, 1.0, 3.0], "readout_items": 8,
                 "classifier_steps": 5, "explain": True, "explain_patches": [3, 5]},
        "datasets": [{"name": "g", "kind": "gmm", "n": [8], "source": 20, "test": 12, "pool": 40,
                      "gmm": {"components": 2, "dim": 8, "rank": 2}}],
        "methods": [{"name": "amb", "loss": "hybrid_ambient", "sigma_n": 0.5}]}


@pytest.mark.parametrize("key, value, match", [
    ("explain", True, None), ("explain_patches", [3, 4], r"eval\.explain_patches"),
    ("explain", "yes", r"eval\.explain"),
    ("explain_local_items", 1000, None), ("explain_local_items", 1, r"eval\.explain_local_items"),
    ("explain_local_items", True, r"eval\.explain_local_items"),
])
def test_the_eval_keys_are_checked(key, value, match):
    config = {**TINY, "eval": {**TINY["eval"], key: value}}
    if match is None:
        check_config(config)
    else:
        with pytest.raises(ValueError, match=match):
            check_config(config)


def test_a_tiny_grid_cell_with_explain_reports_every_closed_form(tmp_path):
    from sims.grid import run_grid
    from sims.track1d.cell import prepare, run_cell

    assert run_grid(TINY, tmp_path, run_cell, prepare=prepare, log=lambda _: None)["done"] == 1
    result = json.loads((tmp_path / "cells" / "g-n8-amb-s0.json").read_text())
    e = result["explained"]
    assert e["sigma"] == [0.1, 1.0, 3.0] and result["timing"]["explain_s"] > 0
    assert sorted(e["r2"]) == sorted(["empirical", "wiener", "gmm", "ambient", "local_p3", "local_eq_p3", "local_p5",
                                      "local_eq_p5"])  # the cell file sorts its keys
    assert math.isnan(e["r2"]["ambient"][0]) and np.isfinite(e["r2"]["ambient"][1:]).all()
    assert all(np.isfinite(v).all() for k, v in e["r2"].items() if k != "ambient")
    assert "local_items" not in e  # no cap: the local forms are those of all n items, as before
    capped = {**TINY, "eval": {**TINY["eval"], "explain_local_items": 4}}
    assert run_grid(capped, tmp_path / "capped", run_cell, prepare=prepare, log=lambda _: None)["done"] == 1
    c = json.loads((tmp_path / "capped" / "cells" / "g-n8-amb-s0.json").read_text())["explained"]
    assert c["local_items"] == 4 and c["n"] == 8  # labelled: the local machine of 4 of the 8 items
    assert all(np.allclose(c["r2"][k], e["r2"][k], equal_nan=True) for k in ("empirical", "wiener", "gmm", "ambient"))
    assert not np.allclose(c["r2"]["local_p3"], e["r2"]["local_p3"])
    no_key = {**TINY, "eval": {k: v for k, v in TINY["eval"].items() if not k.startswith("explain")}}
    assert run_grid(no_key, tmp_path / "plain", run_cell, prepare=prepare, log=lambda _: None)["done"] == 1
    plain = json.loads((tmp_path / "plain" / "cells" / "g-n8-amb-s0.json").read_text())
    assert "explained" not in plain and "explain_s" not in plain["timing"]
