"""memdiff figs image: figs sim's set plus sample pictures and the paired theory-vs-trained JSON and figure, from
fake image cells written here."""
from __future__ import annotations

import json

import numpy as np
import pytest

SIGMA = [0.1, 1.0, 10.0]
METHODS = (("edm", "standard", 0.6), ("ambient_1.2", "ambient", 0.2))


def _cell(dataset, n, method, family, seed, copy, shape=None, emp=None):
    ramp = np.linspace(0.1, 1.0, 3)
    readout = {"sigma": SIGMA, "necessity": list(1 - ramp / 2 + 0.01 * seed), "ratio": list(ramp + 0.1 * seed),
               "heldout_ratio": list(2 - ramp + seed), **{k: [0.1] * 3 for k in (
                   "net_train", "net_test", "emp_train", "emp_test", "gen_train", "gen_test")}}
    metrics = {"copy_share": copy, "nn_distance": 1.0 - copy, "cosine_share": copy, "fd": 2.0 + seed,
               "wasserstein": 0.5, "js": 0.1, "mmd": 0.01, "train_loss": 0.2, "ref_copy_share": 0.0,
               "ref_nn_distance": 1.5, "ref_cosine_share": 0.0, "ref_fd": 0.5, "ref_wasserstein": 0.1}
    if emp is not None:
        metrics["emp_copy_share"] = emp
    result = {"cell": {"dataset": dataset, "n": n, "method": method, "seed": seed}, "family": family,
              "metrics": metrics, "readout": readout, "sigma_c": 0.7 + 0.1 * seed}
    if shape is not None:  # three samples in [-1, 1] and their "nearest training items"
        rng = np.random.default_rng(seed)
        items = rng.uniform(-1, 1, (6, *shape)).round(4)
        result["preview"] = {"shape": list(shape), "samples": items[:3].tolist(), "nearest": items[3:].tolist(),
                             "distance_ratio": [0.1, 0.5, 0.9]}
    return result


def _write(runs, dataset, n, shape=None, emp=True):
    from sims.artifacts import atomic_write_json

    for seed in (0, 1, 2):
        for method, family, copy in METHODS:
            atomic_write_json(runs / "cells" / f"{dataset}-n{n}-{method}-s{seed}.json",
                              _cell(dataset, n, method, family, seed, copy + 0.01 * seed, shape,
                                    0.9 + 0.02 * seed if emp else None))


def test_image_figures_write_samples_and_paired_json_from_the_cells_means(tmp_path):
    from memdiff.figs_image import make_all
    from sims.stats import t_interval

    runs, out, lines = tmp_path / "runs", tmp_path / "figs", []
    _write(runs, "digits", 100, shape=(1, 8, 8))
    _write(runs, "cifar", 50, shape=(3, 4, 4))  # RGB items
    written = make_all(runs, out, log=lines.append)
    names = {p.name for p in written if p.parent == out}
    pictures = {f"{k}_{d}.png" for k in ("tradeoff", "readout", "samples") for d in ("digits_n100", "cifar_n50")}
    assert names == {"claims.md", "results.csv", "results.json", "results.md", "verdicts.md", "paired_digits.png",
                     "paired_digits.json", "paired_cifar.png", "paired_cifar.json", *pictures}
    for png in pictures | {"paired_digits.png", "paired_cifar.png"}:  # every PNG has its sidecar
        assert json.loads((out / png).with_suffix(".json").read_text())["git_revision"]
    assert lines == []

    paired = json.loads((out / "paired_digits.json").read_text())
    assert paired["seed"] == [0, 1, 2] and paired["config"]["dataset"] == "digits"
    rows = {r["method"]: r for r in paired["paired"]}
    assert set(rows) == {"edm", "ambient_1.2"}
    edm = rows["edm"]
    mean, pm, _ = t_interval([0.6, 0.61, 0.62])
    assert edm["n"] == 100 and edm["seeds"] == [0, 1, 2] and edm["sigma"] == SIGMA
    assert edm["copy_share"] == pytest.approx(mean) and edm["copy_share_pm"] == pytest.approx(pm)
    assert edm["emp_copy_share"] == pytest.approx(0.92) and edm["emp_copy_share_seeds"] == 3
    assert edm["sigma_c"] == pytest.approx(0.8)
    ramp = np.linspace(0.1, 1.0, 3)
    assert edm["necessity"] == pytest.approx(list(1 - ramp / 2 + 0.01))  # mean over seeds 0, 1, 2 of + 0.01 s
    assert edm["ratio"] == pytest.approx(list(ramp + 0.1))
    assert edm["heldout_ratio"] == pytest.approx(list(2 - ramp + 1))
    assert rows["ambient_1.2"]["copy_share"] == pytest.approx(0.21)


def test_an_image_grids_ambient_rows_are_judged_as_c3(tmp_path):
    from memdiff.figs_image import make_all

    runs, out = tmp_path / "runs", tmp_path / "figs"
    _write(runs, "digits", 100)  # no grid.json: figs image judges its rows as images all the same
    make_all(runs, out, log=lambda line: None)
    claims, verdicts = (out / "claims.md").read_text(), (out / "verdicts.md").read_text()
    assert "## C3: ambient training against EDM on images" in claims and "## C2" not in claims
    assert "| digits | 100 | ambient_1.2 - edm |" in claims
    assert "| C3 ambient training lowers memorization at equal quality on images |" in verdicts


@pytest.mark.parametrize("kind, claim", [("digits", "C3"), ("mnist1d", "C2")])
def test_figs_sim_reads_the_claim_from_the_grids_dataset_kinds(tmp_path, kind, claim):
    from memdiff.figs_sim import make_all
    from sims.artifacts import atomic_write_json

    runs, out = tmp_path / "runs", tmp_path / "figs"
    _write(runs, "digits", 100)
    atomic_write_json(runs / "grid.json", {"config": {"datasets": [{"name": "digits", "kind": kind}]}, "cells": []})
    make_all(runs, out)
    assert f"## {claim}: ambient training against EDM" in (out / "claims.md").read_text()


def test_cells_without_preview_or_closed_form_samples_skip_those_pictures(tmp_path):
    from memdiff.figs_image import make_all

    runs, out, lines = tmp_path / "runs", tmp_path / "figs", []
    _write(runs, "digits", 100, shape=None, emp=False)
    written = make_all(runs, out, log=lines.append)
    names = {p.name for p in written if p.parent == out}
    assert not any(name.startswith("samples_") for name in names)
    assert {"paired_digits.png", "paired_digits.json", "tradeoff_digits_n100.png"} <= names
    assert all(r["emp_copy_share"] is None for r in json.loads((out / "paired_digits.json").read_text())["paired"])
    assert len(lines) == 2 and "skipped samples_*.png for digits n=100" in lines[0] and "emp_copy_share" in lines[1]
