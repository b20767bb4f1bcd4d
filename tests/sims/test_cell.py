"""One grid cell (``sims.cell``): a sampler that blows samples up is a recorded result, not a crash; its sample
metrics come from the other samples up to ``MAX_DIVERGED_SHARE`` and are undefined past it."""
from __future__ import annotations

import math

import pytest
import torch

import sims.cell
from sims.cell import training_subset
from sims.grid import Cell
from sims.metrics import memorization_report
from sims.track1d.cell import _bundle, _freeze, prepare, run_cell

CONFIG = {"train": {"arch": "mlp", "width": 16, "depth": 1, "steps": 5, "batch_size": 8},
          "eval": {"num_samples": 8, "sampler_steps": 3, "readout_sigmas": [0.1, 1.0], "readout_items": 8,
                   "classifier_steps": 5, "preview_samples": 2},
          "datasets": [{"name": "g", "kind": "gmm", "n": [8], "source": 20, "test": 12, "pool": 40,
                        "gmm": {"components": 2, "dim": 8, "rank": 2}}],
          "methods": [{"name": "edm", "loss": "edm"}]}
CELL = Cell("g", 8, "edm", 0)


@pytest.mark.parametrize("num, blown, defined", [(8, 4, False), (200, 2, True), (200, 0, True)])
@pytest.mark.parametrize("blow_up", [float("nan"), 1e12])
def test_a_sampler_that_diverges_is_a_recorded_result(tmp_path, monkeypatch, num, blown, defined, blow_up):
    config = {**CONFIG, "eval": {**CONFIG["eval"], "num_samples": num}}
    prepare(config, tmp_path)
    bundle = _bundle(str(tmp_path), "g", _freeze(config))
    heldout = bundle.test

    def sampler(denoiser, k, *args, **kwargs):  # blown samples first (not finite or absurdly far), then held-out reals
        return torch.cat([torch.full((blown, *heldout.shape[1:]), blow_up), heldout.repeat(k, 1)[: k - blown]])

    monkeypatch.setattr(sims.cell, "generate", sampler)
    m = run_cell(config, CELL, tmp_path)
    assert m["metrics"]["diverged_share"] == blown / num
    if defined:  # measured on the samples that did not diverge, the held-out reals
        reals = heldout.repeat(num, 1)[: num - blown]
        train = training_subset(bundle.source, CELL.n, CELL.seed)[0]
        assert m["metrics"]["copy_share"] == memorization_report(reals, train)["copy_share"]
        assert math.isfinite(m["metrics"]["fd"])
        assert torch.equal(torch.tensor(m["preview"]["samples"], dtype=torch.float64), heldout[:2].double().round(decimals=4))
    else:
        assert m["metrics"]["copy_share"] is None and m["metrics"]["fd"] is None and "preview" not in m
    assert math.isfinite(m["metrics"]["ref_fd"]) and math.isfinite(m["metrics"]["ref_copy_share"])  # held-out reals
    assert torch.isfinite(torch.tensor(m["readout"]["ratio"])).all()  # the readouts do not sample


def test_a_trained_cell_records_its_diverged_share(tmp_path):
    prepare(CONFIG, tmp_path)
    m = run_cell(CONFIG, CELL, tmp_path)["metrics"]
    assert 0 <= m["diverged_share"] <= 1 and (m["copy_share"] is None or 0 <= m["copy_share"] <= 1)
