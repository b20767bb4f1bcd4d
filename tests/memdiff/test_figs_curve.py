"""memdiff figs curve: crossovers of a curve against n, and the table / figure from fake cells written here."""
from __future__ import annotations

import json
import math

import pytest

from memdiff.figs_curve import crossover, describe


def test_crossover_brackets_and_interpolates_in_log_n():
    c = crossover([10, 100, 1000], [0.9, 0.7, 0.3])
    assert (c["n_lo"], c["n_hi"], c["ratio"]) == (100, 1000, 10)
    assert c["n_star"] == pytest.approx(10 ** 2.5)  # 0.7 -> 0.3 passes 0.5 half way in log n
    assert "between n = 100 and 1000" in describe(c)


def test_crossover_outside_the_measured_range_is_a_bound():
    above = crossover([10, 100], [0.9, 0.6])
    assert above["n_lo"] == 100 and math.isnan(above["n_star"]) and "above n = 100" in describe(above)
    below = crossover([10, 100], [0.4, 0.1])
    assert below["n_hi"] == 10 and math.isnan(below["n_lo"]) and "below n = 10" in describe(below)
    assert "not located" in describe(crossover([10, 100], [math.nan, math.nan]))


def test_crossover_rejects_unsorted_n():
    with pytest.raises(ValueError, match="n must be a non-empty increasing"):
        crossover([100, 10], [0.9, 0.1])


def _cell(n, seed, copy):
    sig = [0.002, 0.1, 1.0, 10.0]
    m = [0.99 if n < 1000 else 0.3, 0.5, 0.2, 0.0]
    readout = {"sigma": sig, "necessity": m, "ratio": [1.0, 0.4, 0.9, 1.0], "heldout_ratio": [3.0, 2.0, 1.1, 1.0],
               **{k: [0.1] * 4 for k in ("net_train", "net_test", "emp_train", "emp_test", "gen_train", "gen_test")}}
    return {"cell": {"dataset": "mnist1d", "n": n, "method": "edm", "seed": seed}, "family": "standard",
            "metrics": {"copy_share": copy, "fd": 5.0, "ref_fd": 2.0, "emp_copy_share": 1.0},
            "readout": readout, "two_net": {"v": [0.9, 0.8, 0.3, 0.1]}, "sigma_c": 1.0, "timing": {"train_s": 60.0}}


def test_curve_table_figure_and_recompute(tmp_path):
    from memdiff.figs_curve import make_all
    from sims.artifacts import atomic_write_json

    runs = tmp_path / "runs"
    for n, copy in ((30, 0.95), (100, 0.8), (300, 0.2), (1000, 0.01)):
        for seed in (0, 1, 2):
            atomic_write_json(runs / "cells" / f"mnist1d-n{n}-edm-s{seed}.json", _cell(n, seed, copy + 0.01 * seed))
    written = make_all(runs, tmp_path / "curve")
    assert {p.name for p in written if p.parent == tmp_path / "curve"} == {
        "curve.md", "curve_mnist1d.csv", "curve_mnist1d.png", "curve.json"}
    assert json.loads((tmp_path / "curve" / "curve_mnist1d.json").read_text())["config"]["dataset"] == "mnist1d"
    md = (tmp_path / "curve" / "curve.md").read_text()
    assert "net (copy share falls through 1/2): n* ≈" in md and "between n = 100 and 300" in md
    assert "exact optimum's samples: above n = 1000" in md  # the closed form copies at every n
    assert "M at σ = 0.002: n* ≈" in md and "between n = 300 and 1000" in md
    assert json.loads((tmp_path / "curve" / "curve.json").read_text())["seed"] == [0, 1, 2]
    make_all(tmp_path / "curve", tmp_path / "again")  # the published folder re-computes the table
    assert (tmp_path / "again" / "curve.md").read_text() == md
    with pytest.raises(ValueError, match="method must name a method with cells"):
        make_all(runs, tmp_path / "other", method="ddpm")
