"""memdiff figs confirm: the advice's rank and frontier loss on a fake sweep (baseline, four ambient sigma_n, CI in
both readings at three widths, 5 seeds) with numbers chosen so the rule of docs/THEORY.md §7.8 can be followed by
hand, an advice.json from memdiff advise's own writer, and the one-line error of an advice that matches nothing."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from memdiff.advise import AdviseConfig, intervals, write_advice
from memdiff.cli import entry, main
from memdiff.figs_confirm import RIGHT, confirm, grid_datasets, make_all, match, read_advice
from memdiff.results import load_results
from sims.artifacts import atomic_write_json

SEEDS = range(5)
AMBIENT = {0.5: (0.6, 10.2), 1.0: (0.3, 10.5), 2.0: (0.1, 14.0), 3.5: (0.05, 20.0)}  # sigma_n: (copy, FD) at seed 0
# ci_t intervals by name: (interval, copy, FD at seed 0); low boundaries 0.4 / 0.6 / 0.8, high 0.6 / 0.4 / 0.2
CI = {"ci_ddpm_low_0.4": ([0.0, 0.4], 0.80, 10.3), "ci_ddpm_low_0.6": ([0.0, 0.6], 0.85, 10.1),
      "ci_ddpm_low_0.8": ([0.0, 0.8], 0.90, 10.0), "ci_ddpm_high_0.4": ([0.6, 1.0], 0.20, 30.0),
      "ci_ddpm_high_0.6": ([0.4, 1.0], 0.40, 12.0), "ci_ddpm_high_0.8": ([0.2, 1.0], 0.70, 10.4)}


def copy(base: float, seed: int, k: int) -> float:
    return base + 0.002 * k * seed


def fd(base: float, seed: int, k: int) -> float:
    return base + 0.05 * ((k * seed) % 3)


def _cell(method: str, seed: int, spec: dict, family: str, c: float, f: float) -> dict:
    readout = {"sigma": [0.01, 0.1, 1.0, 10.0], "necessity": [0.99, 0.5, 0.2, 0.0], "ratio": [0.2, 0.4, 0.9, 1.0],
               "heldout_ratio": [3.0, 2.0, 1.1, 1.0],
               **{k: [0.1] * 4 for k in ("net_train", "net_test", "emp_train", "emp_test", "gen_train", "gen_test")}}
    return {"cell": {"dataset": "gmm", "n": 100, "method": method, "seed": seed, "id": f"gmm-n100-{method}-s{seed}"},
            "family": family, "method": {"name": method, **spec}, "metrics": {"copy_share": c, "fd": f, "ref_fd": 2.0},
            "readout": readout, "sigma_c": 1.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The fake grid: per seed s, copy = base + 0.002 k s and FD = base + 0.05 ((k s) mod 3), k the method's index."""
    root = tmp_path_factory.mktemp("grid")
    cells = [("edm", {"loss": "edm", "noise": {"kind": "edm_lognormal"}}, "standard", 0.9, 10.0),
             ("ci_edm_low", {"loss": "edm", "noise": {"kind": "ci_log_sigma", "interval": [-4.5, 0.0]}},
              "CI (EDM, log sigma)", 0.95, 11.0)]
    cells += [(f"ambient_{s}", {"loss": "hybrid_ambient", "sigma_n": s, "noise": {"kind": "edm_lognormal"}}, "ambient",
               c, f) for s, (c, f) in AMBIENT.items()]
    cells += [(m, {"loss": "epsilon", "noise": {"kind": "ci_t", "interval": iv}}, "CI (DDPM, t)", c, f)
              for m, (iv, c, f) in CI.items()]
    for k, (method, spec, family, c, f) in enumerate(cells):
        for s in SEEDS:
            atomic_write_json(root / "cells" / f"gmm-n100-{method}-s{s}.json",
                              _cell(method, s, spec, family, copy(c, s, k), fd(f, s, k)))
    atomic_write_json(root / "grid.json", {"config": {"datasets": [{"name": "gmm", "kind": "gmm", "n": [100]}],
                                                      "eval": {"equivalence_margin": 0.1}}, "cells": []})
    return root, {m: k for k, (m, *_) in enumerate(cells)}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A real advice.json, written by memdiff advise's writer on a tiny GMM."""
    cfg = AdviseConfig(data="gmm", n=30, test=40, pool=300, num_items=32, samples=16, steps=6,
                       sigmas=[0.05, 0.5, 5.0, 50.0], switches=[0.1, 1.0, 10.0])
    return write_advice(cfg, tmp_path_factory.mktemp("advice") / "gmm", progress=False)


def advice_at(template: dict, folder, sigma_n: float, data: str = "gmm", n: int = 100, resolution: int | None = None):
    """The template advice moved to ``sigma_n`` (its CI intervals with it), ``data``, ``n`` and ``resolution``;
    returns its folder."""
    a = json.loads(json.dumps(template))
    a["sigma_n"], a["ci"] = sigma_n, intervals(sigma_n)
    a["config"].update(data=data, n=n, resolution=resolution)
    atomic_write_json(folder / "advice.json", a)
    return folder


def confirmed(runs, advice_folder) -> dict:
    df, raw = load_results(runs)
    pairs = match(read_advice([advice_folder]), df, grid_datasets(runs, df)[0])
    (row,) = confirm(df, raw, pairs, "edm", 0.1)
    return row


def sweep(row: dict, kind: str, reading: str | None = None) -> dict:
    (s,) = [s for s in row["sweeps"] if s["kind"] == kind and s["reading"] == reading]
    return s


def hand_interval(d) -> tuple[float, float]:
    d = np.asarray(d, dtype=float)
    return d.mean(), stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)


def test_advice_at_the_best_swept_value_is_rank_one_with_no_loss(runs, template, tmp_path, capsys):
    root, _ = runs
    out = tmp_path / "confirm"
    assert main(["figs", "confirm", "--runs", str(root), "--advice", str(advice_at(template, tmp_path, 1.0)),
                 "--out", str(out)]) == 0
    res = json.loads((out / "confirm.json").read_text())
    (row,) = res["rows"]
    amb = sweep(row, "ambient")
    # within the margin (FD upper bound <= 1.0): 0.5 and 1.0, by copy share 1.0 first; then 2.0 (FD 14), 3.5 (FD 20)
    assert [m["value"] for m in amb["members"]] == [1.0, 0.5, 2.0, 3.5]
    assert [m["qualifies"] for m in amb["members"]] == [True, True, False, False]
    assert amb["best"] == amb["nearest"] == "ambient_1.0" and amb["rank"] == 1 and amb["factor"] == 1.0
    assert amb["loss"]["copy_share"] == amb["loss"]["fd"] == 0.0 and amb["words"] == RIGHT
    low, high = sweep(row, "ci", "low"), sweep(row, "ci", "high")  # u_n = 0.258 at sigma_n = 1
    assert low["nearest"] == low["best"] == "ci_ddpm_low_0.4" and not low["bracketed"]
    assert "not bracketed: the advised u_n = 0.258 lies 0.142 below the smallest swept boundary (0.4)" in low["words"]
    assert high["nearest"] == high["best"] == "ci_ddpm_high_0.8" and high["bracketed"] and high["words"] == RIGHT
    assert row["not_sweeps"] == [{"kind": "ci", "form": "edm", "reading": "low", "methods": ["ci_edm_low"]}]
    md = (out / "confirm.md").read_text()
    assert "| gmm | 100 | 1 | 0.5, 1, 2, 3.5 | 1 | 1 (1x) | 1 of 4 |" in md and "ci_edm_low only, not a sweep" in md
    assert (out / "frontier_gmm_n100.png").stat().st_size > 10_000
    assert json.loads((out / "frontier_gmm_n100.json").read_text())["config"]["matched"][0]["dataset"] == "gmm"
    assert res["seed"] == list(SEEDS) and (out / "advice" / "gmm_n100" / "advice.json").is_file()
    # the output re-computes itself
    make_all(out, [out / "advice" / "gmm_n100"], tmp_path / "again")
    again = (tmp_path / "again" / "confirm.md").read_text()
    assert [x for x in again.splitlines() if "(advice " not in x] == [x for x in md.splitlines() if "(advice " not in x]


def test_advice_nearest_a_worse_value_costs_the_paired_difference(runs, template, tmp_path):
    root, k = runs
    row = confirmed(root, advice_at(template, tmp_path, 2.2))  # nearest ambient_2.0, u_n = 0.415
    amb = sweep(row, "ambient")
    assert amb["nearest"] == "ambient_2.0" and amb["rank"] == 3 and amb["bracketed"]
    assert amb["factor"] == pytest.approx(1.1)
    dc = [copy(0.1, s, k["ambient_2.0"]) - copy(0.3, s, k["ambient_1.0"]) for s in SEEDS]
    df = [fd(14.0, s, k["ambient_2.0"]) - fd(10.5, s, k["ambient_1.0"]) for s in SEEDS]
    for key, d in (("copy_share", dc), ("fd", df)):
        mean, half = hand_interval(d)
        assert amb["loss"][key] == pytest.approx(mean) and amb["loss"][key + "_pm"] == pytest.approx(half)
    assert amb["words"] == (f"advice off by 2 ranks, costing {np.mean(dc):+.3g} ± {hand_interval(dc)[1]:.2g} copy "
                            f"share / {np.mean(df):+.3g} ± {hand_interval(df)[1]:.2g} FD")
    high = sweep(row, "ci", "high")  # boundary 0.4 (FD 12, outside the margin) behind 0.2 (within it)
    assert high["nearest"] == "ci_ddpm_high_0.6" and high["best"] == "ci_ddpm_high_0.8" and high["rank"] == 2
    d = [copy(0.4, s, k["ci_ddpm_high_0.6"]) - copy(0.7, s, k["ci_ddpm_high_0.8"]) for s in SEEDS]
    assert high["loss"]["copy_share"] == pytest.approx(np.mean(d)) and "off by 1 rank," in high["words"]


def test_advice_outside_the_sweep_is_not_bracketed(runs, template, tmp_path):
    root, _ = runs
    amb = sweep(confirmed(root, advice_at(template, tmp_path, 8.0)), "ambient")
    assert amb["nearest"] == "ambient_3.5" and amb["rank"] == 4 and not amb["bracketed"]
    assert "not bracketed: the advised sigma_n = 8 lies a factor 2.29 above the largest swept (3.5)" in amb["words"]
    below = sweep(confirmed(root, advice_at(template, tmp_path, 0.2)), "ambient")
    assert below["nearest"] == "ambient_0.5" and "a factor 2.5 below the smallest swept (0.5)" in below["words"]


@pytest.mark.parametrize("data, n", [("ecg", 100), ("gmm", 300)])
def test_an_advice_that_matches_no_grid_rows_is_named(runs, template, tmp_path, capsys, monkeypatch, data, n):
    monkeypatch.delenv("MEMDIFF_DEBUG", raising=False)
    folder = advice_at(template, tmp_path, 1.0, data=data, n=n)
    with pytest.raises(ValueError, match=r"--advice .* matches no rows of the grid, which has gmm \(kind gmm\) n = 100"):
        make_all(runs[0], [folder], tmp_path / "out")
    with pytest.raises(SystemExit, match="^2$"):
        entry(["figs", "confirm", "--runs", str(runs[0]), "--advice", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert err.startswith("memdiff: error: --advice") and err.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("resolution, dataset", [(14, "fashion14"), (None, "fashion28"), (28, "fashion28")])
def test_an_image_advice_matches_the_grid_dataset_at_its_resolution(template, tmp_path, resolution, dataset):
    atomic_write_json(tmp_path / "grid.json", {"config": {"datasets": [
        {"name": "fashion14", "kind": "fashion-mnist", "resolution": 14},
        {"name": "fashion28", "kind": "fashion-mnist", "resolution": 28}]}, "cells": []})
    df = pd.DataFrame({"dataset": ["fashion14", "fashion28"], "n": [100, 100]})
    folder = advice_at(template, tmp_path / "advice", 1.0, data="fashion-mnist", resolution=resolution)
    ((_, name, n),) = match(read_advice([folder]), df, grid_datasets(tmp_path, df)[0])
    assert (name, n) == (dataset, 100)
    assert read_advice([folder])[0]["tag"] == ("fashion_mnist_14px_n100" if resolution == 14 else "fashion_mnist_n100")
