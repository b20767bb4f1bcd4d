"""The grid runner: config checks, cell expansion, atomic per-cell results, skip-and-resume."""
from __future__ import annotations

import json

import pytest

from sims.grid import Cell, cell_path, check_config, expand_grid, load_config, run_grid

SIZES = {"source": 40, "test": 20, "pool": 50}
CONFIG = {
    "run": {"seeds": [0, 1]},
    "train": {},
    "eval": {"readout_sigmas": [0.1, 1.0]},
    "datasets": [{"name": "a", "kind": "gmm", "n": [10, 20], "methods": "all", **SIZES},
                 {"name": "b", "kind": "ecg", "n": [10], "methods": ["m2"], **SIZES}],
    "methods": [{"name": "m1"}, {"name": "m2"}],
}


def fake_runner(config, cell, out):
    if cell.method == "boom":
        raise RuntimeError("cell failed")
    if cell.method == "nan":
        raise ValueError("features must be finite (found NaN or inf)")
    return {"id": cell.id, "value": cell.n * 10 + cell.seed}


def test_expand_grid_is_seed_major_and_respects_per_dataset_methods():
    cells = expand_grid(CONFIG)
    assert len(cells) == 2 * (2 * 2 + 1)
    assert [c.seed for c in cells] == [0] * 5 + [1] * 5
    assert Cell("b", 10, "m2", 1) in cells and Cell("b", 10, "m1", 1) not in cells
    assert [c.id for c in expand_grid(CONFIG, only="a-n20-*-s1")] == ["a-n20-m1-s1", "a-n20-m2-s1"]
    several = expand_grid(CONFIG, only="a-n20-m2-s1,a-n20-m1-*")  # any of the globs, in grid order
    assert [c.id for c in several] == [c.id for c in cells if c.id == "a-n20-m2-s1" or c.id.startswith("a-n20-m1-")]


def test_run_grid_writes_each_cell_and_skips_done_ones(tmp_path):
    s = run_grid(CONFIG, tmp_path, runner=fake_runner, log=lambda _: None)
    assert s["done"] == 10 and s["skipped"] == 0
    res = json.loads(cell_path(tmp_path, Cell("a", 20, "m1", 1)).read_text())
    assert res["value"] == 201 and res["wall_s"] >= 0
    cell_path(tmp_path, Cell("a", 10, "m2", 0)).unlink()  # as if killed before this cell finished
    s = run_grid(CONFIG, tmp_path, runner=fake_runner, log=lambda _: None)
    assert s["done"] == 1 and s["skipped"] == 9
    assert json.loads((tmp_path / "grid.json").read_text())["cells"][0] == "a-n10-m1-s0"


def test_prepare_gets_only_the_datasets_of_pending_cells(tmp_path):
    """--only and finished cells narrow what is prepared: a cold single cell does not make every dataset."""
    asked = []

    def prepare(config, out):
        asked.append([d["name"] for d in config["datasets"]])
        assert {k: v for k, v in config.items() if k != "datasets"} == {k: v for k, v in CONFIG.items() if k != "datasets"}

    run_grid(CONFIG, tmp_path, runner=fake_runner, prepare=prepare, only="b-*-s0", log=lambda _: None)
    run_grid(CONFIG, tmp_path, runner=fake_runner, prepare=prepare, only="*-s0", log=lambda _: None)  # b's cell done
    run_grid(CONFIG, tmp_path, runner=fake_runner, prepare=prepare, only="*-s0", log=lambda _: None)  # nothing to run
    run_grid(CONFIG, tmp_path, runner=fake_runner, prepare=prepare, log=lambda _: None)
    assert asked == [["b"], ["a"], ["a", "b"]]


def test_a_failing_cell_leaves_no_partial_file_and_others_stay(tmp_path):
    cfg = {**CONFIG, "methods": [{"name": "m1"}, {"name": "boom"}], "datasets": [CONFIG["datasets"][0]]}
    with pytest.raises(RuntimeError, match="cell failed"):
        run_grid(cfg, tmp_path, runner=fake_runner, log=lambda _: None)
    files = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert files == ["a-n10-m1-s0.json"]  # no temporary or half-written file


@pytest.mark.parametrize("method, error, said", [("nan", ValueError, "message"), ("boom", RuntimeError, "note")])
def test_a_failing_cells_error_names_the_cell(tmp_path, method, error, said):
    cfg = {**CONFIG, "methods": [{"name": "m1"}, {"name": method}], "datasets": [CONFIG["datasets"][0]]}
    with pytest.raises(error) as caught:
        run_grid(cfg, tmp_path, runner=fake_runner, log=lambda _: None)
    cell = f"a-n10-{method}-s0"
    if said == "message":  # a user error: the CLI's one line must say which cell
        assert str(caught.value) == f"cell {cell}: features must be finite (found NaN or inf)"
    else:
        assert str(caught.value) == "cell failed" and caught.value.__notes__ == [f"in grid cell {cell}"]


def test_load_config_reads_toml_and_json(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps(CONFIG))
    assert load_config(p) == CONFIG
    t = tmp_path / "g.toml"
    t.write_text('[run]\nseeds = [3]\n[train]\n[eval]\nreadout_sigmas = [1.0]\n[[datasets]]\nname = "x"\n'
                 'kind = "mnist1d"\nn = [5]\nsource = 10\ntest = 5\npool = 5\n[[methods]]\nname = "edm"\n')
    assert [c.id for c in expand_grid(load_config(t))] == ["x-n5-edm-s3"]
    with pytest.raises(ValueError, match="config must"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("patch, match", [
    ({"run": {"seeds": []}}, "run.seeds"),
    ({"methods": [{"name": "m1"}, {"name": "m1"}]}, "unique"),
    ({"datasets": [{"name": "a", "kind": "cifar", "n": [10], **SIZES}]}, "datasets.kind"),
    ({"datasets": [{"name": "a", "kind": "gmm", "n": [1], **SIZES}]}, "datasets.n"),
    ({"datasets": [{"name": "a", "kind": "gmm", "n": [10], "methods": ["zzz"], **SIZES}]}, "unknown"),
])
def test_check_config_names_the_bad_key(patch, match):
    with pytest.raises(ValueError, match=match):
        check_config({**CONFIG, **patch})
    with pytest.raises(ValueError, match=r"\[eval\]"):
        check_config({k: v for k, v in CONFIG.items() if k != "eval"})


def test_shipped_configs_parse():
    from memdiff.sim import GRID_CONFIG, SMOKE_CONFIG

    for path in (GRID_CONFIG, SMOKE_CONFIG, GRID_CONFIG.with_name("sim_long.toml")):
        assert expand_grid(load_config(path))


# --- figures and table from cell results (memdiff.figs_sim) ---------------------------------------------------
def test_config_extends_a_base(tmp_path):
    from memdiff.sim import GRID_CONFIG
    from sims.grid import expand_grid, load_config

    base = load_config(GRID_CONFIG)
    (tmp_path / "base.toml").write_text(GRID_CONFIG.read_text())
    (tmp_path / "long.toml").write_text('extends = "base.toml"\n[train]\nsteps = 7\n[run]\nseeds = [4]\n')
    long = load_config(tmp_path / "long.toml")
    assert long["train"]["steps"] == 7 and long["train"]["width"] == base["train"]["width"]
    assert long["run"]["seeds"] == [4] and long["run"]["workers"] == base["run"]["workers"]
    assert long["methods"] == base["methods"] and long["datasets"] == base["datasets"]
    assert {c.seed for c in expand_grid(long)} == {4}
    (tmp_path / "bad.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(ValueError, match="config must be an existing"):
        load_config(tmp_path / "bad.toml")
