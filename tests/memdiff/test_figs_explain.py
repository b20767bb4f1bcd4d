"""memdiff figs explain: best fits per band and the issue's answers on constructed cells, and the table / figure
written from fake cells."""
from __future__ import annotations

import json
import math

import pytest

from memdiff.figs_explain import explain_groups, make_all
from sims.artifacts import atomic_write_json

SIGMA = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]  # sigma_C = 0.2: low band the first three, middle 0.3, high the rest
NAN = math.nan
BASE = {"empirical": [0.99, 0.98, 0.9, 0.5, 0.3, 0.2, 0.5],
        "wiener": [0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.99],
        "local_p5": [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        "local_eq_p5": [0.3, 0.4, 0.5, 0.9, 0.95, 0.85, 0.9]}
AMBIENT = {"empirical": [0.99, 0.98, 0.9, 0.5, 0.3, 0.2, 0.5], "wiener": [0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9],
           "ambient": [NAN, NAN, NAN, 0.95, 0.97, 0.98, 0.99]}  # sigma_n = 0.1
AMBIENT_MISS = {**AMBIENT, "empirical": [0.99, 0.98, 0.9, 0.99, 0.3, 0.2, 0.5]}  # the copier still best at 0.3


def _cell(method: str, seed: int, r2: dict, sigma_n: float | None = None, explained: bool = True) -> dict:
    readout = {"sigma": SIGMA, **{k: [0.5] * len(SIGMA) for k in ("ratio", "heldout_ratio", "necessity")}}
    spec = {"name": method, "loss": "hybrid_ambient" if sigma_n else "edm", **({"sigma_n": sigma_n} if sigma_n else {})}
    cell = {"cell": {"dataset": "mnist1d", "n": 100, "method": method, "seed": seed,
                     "id": f"mnist1d-n100-{method}-s{seed}"},
            "family": "ambient" if sigma_n else "standard", "method": spec, "metrics": {"copy_share": 0.5},
            "readout": readout, "sigma_c": 0.2}
    if explained:
        cell["explained"] = {"sigma": SIGMA, "r2": {k: [v + 0.002 * seed for v in vs] for k, vs in r2.items()}}
    return cell


def _write(runs, cells):
    for c in cells:
        atomic_write_json(runs / "cells" / f"{c['cell']['id']}.json", c)


CELLS = [_cell(m, s, r2, sn) for s in (0, 1, 2)
         for m, r2, sn in (("edm", BASE, None), ("amb", AMBIENT, 0.1), ("amb_miss", AMBIENT_MISS, 0.1))]


def test_best_fits_per_band_and_the_answers():
    groups = explain_groups({c["cell"]["id"]: c for c in CELLS})
    edm = groups[("mnist1d", 100, "edm")]
    assert edm.forms == ["empirical", "wiener", "local_p5", "local_eq_p5"]
    assert edm.best_per_sigma() == ["empirical"] * 3 + ["local_eq_p5"] * 2 + ["wiener"] * 2
    bands = edm.band_best()
    assert [b[0] for b in bands] == ["empirical", "local_eq_p5", "local_eq_p5"]
    assert bands[0][1] == pytest.approx((0.99 + 0.98 + 0.9) / 3 + 0.002) and bands[0][2] > 0  # mean over seeds 0-2
    assert edm.switch_answer() == {"sigma": 0.1, "above": "local_eq_p5", "ratio": pytest.approx(0.5)}
    amb = groups[("mnist1d", 100, "amb")]
    assert amb.ambient_answer() == {"sigma_n": 0.1, "ambient_above": 4, "levels_above": 4, "empirical_below": 3,
                                    "levels_below": 3, "holds": True}
    assert amb.band_best()[0][0] == "empirical"  # the ambient form, undefined in the low band, does not compete there
    miss = groups[("mnist1d", 100, "amb_miss")].ambient_answer()
    assert (miss["ambient_above"], miss["holds"]) == (3, False)


def test_table_figure_and_recompute(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, CELLS + [_cell("ddpm", 0, BASE, explained=False)])  # a cell without explain is left out
    written = make_all(runs, tmp_path / "explain")
    assert {p.name for p in written if p.parent == tmp_path / "explain"} == {
        "explain.md", "explain.csv", "explain_mnist1d_n100.png", "explain.json"}
    assert len([p for p in written if p.parent.name == "cells"]) == 9
    md = (tmp_path / "explain" / "explain.md").read_text()
    assert "| 100 | edm | 3 | 0.2 | `empirical` 0.959 ± " in md
    assert "`edm`: the clear best fit switches from `local_eq_p5` (above) to empirical at σ = 0.1 (σ/σ_C = 0.5, σ_C = 0.2)" in md
    assert "`amb`: ambient above σ_n = 0.1 and empirical below? **yes** (ambient best at 4/4" in md
    assert "`amb_miss`: ambient above σ_n = 0.1 and empirical below? **no** (ambient best at 3/4" in md
    sidecar = json.loads((tmp_path / "explain" / "explain_mnist1d_n100.json").read_text())
    assert sidecar["config"]["n"] == 100 and sidecar["seed"] == [0, 1, 2]
    make_all(tmp_path / "explain", tmp_path / "again")  # the published folder re-computes the table
    assert (tmp_path / "again" / "explain.md").read_text() == md


def test_a_grid_without_explained_cells_is_one_line(tmp_path):
    _write(tmp_path / "runs", [_cell("edm", 0, BASE, explained=False)])
    with pytest.raises(ValueError, match="runs must hold cells run with eval.explain = true") as e:
        make_all(tmp_path / "runs", tmp_path / "out")
    assert "\n" not in str(e.value)


def test_the_command_is_registered(tmp_path, capsys):
    from memdiff.cli import main

    _write(tmp_path / "runs", CELLS)
    assert main(["figs", "explain", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "explain.md" in capsys.readouterr().out


def test_the_switch_ignores_levels_where_every_form_explains_the_net():
    # at the top level the copier leads by 0.005 < TIE: that is noise among forms that all reach r^2 ~ 1
    tied = {**BASE, "empirical": [0.99, 0.98, 0.9, 0.5, 0.3, 0.2, 0.999], "wiener": [*BASE["wiener"][:-1], 0.994]}
    g = explain_groups({c["cell"]["id"]: c for c in (_cell("edm", s, tied) for s in (0, 1, 2))})[("mnist1d", 100, "edm")]
    assert g.best_per_sigma()[-1] == "empirical" and g.clear_best_per_sigma()[-1] is None
    s = g.switch_answer()
    assert s["sigma"] == 0.1 and s["above"] == "local_eq_p5"


def test_seeds_whose_local_forms_saw_different_training_items_are_not_averaged():
    def capped(seed, local_items):
        c = _cell("edm", seed, BASE)
        if local_items is not None:
            c["explained"].update(local_items=local_items, n=100)
        return c

    same = [capped(0, None), capped(1, 100)]  # a cap at n is no cap: the same local forms
    assert explain_groups({c["cell"]["id"]: c for c in same})[("mnist1d", 100, "edm")].forms == list(BASE)
    mixed = [capped(0, None), capped(1, 50)]  # the local machine of 50 items is another closed form
    with pytest.raises(ValueError, match="local-form training items"):
        explain_groups({c["cell"]["id"]: c for c in mixed})
