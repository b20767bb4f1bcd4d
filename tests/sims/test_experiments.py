"""The grid runner: config checks, cell expansion, atomic per-cell results, skip-and-resume."""
from __future__ import annotations

import json

import pytest

from sims.experiments import Cell, cell_path, check_config, expand_grid, load_config, run_grid

CONFIG = {
    "run": {"seeds": [0, 1]},
    "train": {},
    "eval": {},
    "datasets": [{"name": "a", "kind": "gmm", "n": [10, 20], "methods": "all"},
                 {"name": "b", "kind": "ecg", "n": [10], "methods": ["m2"]}],
    "methods": [{"name": "m1"}, {"name": "m2"}],
}


def fake_runner(config, cell, out):
    if cell.method == "boom":
        raise RuntimeError("cell failed")
    return {"id": cell.id, "value": cell.n * 10 + cell.seed}


def test_expand_grid_is_seed_major_and_respects_per_dataset_methods():
    cells = expand_grid(CONFIG)
    assert len(cells) == 2 * (2 * 2 + 1)
    assert [c.seed for c in cells] == [0] * 5 + [1] * 5
    assert Cell("b", 10, "m2", 1) in cells and Cell("b", 10, "m1", 1) not in cells
    assert [c.id for c in expand_grid(CONFIG, only="a-n20-*-s1")] == ["a-n20-m1-s1", "a-n20-m2-s1"]


def test_run_grid_writes_each_cell_and_skips_done_ones(tmp_path):
    s = run_grid(CONFIG, tmp_path, runner=fake_runner, log=lambda _: None)
    assert s["done"] == 10 and s["skipped"] == 0
    res = json.loads(cell_path(tmp_path, Cell("a", 20, "m1", 1)).read_text())
    assert res["value"] == 201 and res["wall_s"] >= 0
    cell_path(tmp_path, Cell("a", 10, "m2", 0)).unlink()  # as if killed before this cell finished
    s = run_grid(CONFIG, tmp_path, runner=fake_runner, log=lambda _: None)
    assert s["done"] == 1 and s["skipped"] == 9
    assert json.loads((tmp_path / "grid.json").read_text())["cells"][0] == "a-n10-m1-s0"


def test_a_failing_cell_leaves_no_partial_file_and_others_stay(tmp_path):
    cfg = {**CONFIG, "methods": [{"name": "m1"}, {"name": "boom"}], "datasets": [CONFIG["datasets"][0]]}
    with pytest.raises(RuntimeError, match="cell failed"):
        run_grid(cfg, tmp_path, runner=fake_runner, log=lambda _: None)
    files = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert files == ["a-n10-m1-s0.json"]  # no temporary or half-written file


def test_load_config_reads_toml_and_json(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps(CONFIG))
    assert load_config(p) == CONFIG
    t = tmp_path / "g.toml"
    t.write_text('[run]\nseeds = [3]\n[train]\n[eval]\n[[datasets]]\nname = "x"\nkind = "mnist1d"\nn = [5]\n'
                 '[[methods]]\nname = "edm"\n')
    assert [c.id for c in expand_grid(load_config(t))] == ["x-n5-edm-s3"]
    with pytest.raises(ValueError, match="config must"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("patch, match", [
    ({"run": {"seeds": []}}, "run.seeds"),
    ({"methods": [{"name": "m1"}, {"name": "m1"}]}, "unique"),
    ({"datasets": [{"name": "a", "kind": "cifar", "n": [10]}]}, "datasets.kind"),
    ({"datasets": [{"name": "a", "kind": "gmm", "n": [1]}]}, "datasets.n"),
    ({"datasets": [{"name": "a", "kind": "gmm", "n": [10], "methods": ["zzz"]}]}, "unknown"),
])
def test_check_config_names_the_bad_key(patch, match):
    with pytest.raises(ValueError, match=match):
        check_config({**CONFIG, **patch})
    with pytest.raises(ValueError, match=r"\[eval\]"):
        check_config({k: v for k, v in CONFIG.items() if k != "eval"})


def test_shipped_configs_parse():
    from sims.experiments import GRID_CONFIG, SMOKE_CONFIG

    for path in (GRID_CONFIG, SMOKE_CONFIG):
        assert expand_grid(load_config(path))


# --- figures and table from cell results (sims.figures) ---------------------------------------------------
def _fake_result(dataset, n, method, family, seed, copy):
    import numpy as np

    sig = [0.1, 1.0, 10.0]
    readout = {"sigma": sig, **{k: list(np.linspace(0.1, 1.0, 3) + seed) for k in
                                ("ratio", "necessity", "net_train", "net_test", "emp_train", "emp_test", "gen_train", "gen_test")}}
    metrics = {"copy_share": copy, "nn_distance": 1.0 - copy, "cosine_share": copy, "fd": 2.0 + seed, "wasserstein": 0.5,
               "js": 0.1, "mmd": 0.01, "train_loss": 0.2, "ref_copy_share": 0.0,
               "ref_nn_distance": 1.5, "ref_cosine_share": 0.0, "ref_fd": 0.5, "ref_wasserstein": 0.1}
    return {"cell": {"dataset": dataset, "n": n, "method": method, "seed": seed}, "family": family,
            "metrics": metrics, "readout": readout, "sigma_c": 0.7}


def test_t_interval_matches_scipy():
    import numpy as np
    from scipy import stats

    from sims.figures import t_interval

    v = [0.2, 0.5, 0.9, 0.4]
    mean, half, k = t_interval(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert k == 4 and mean == pytest.approx(np.mean(v)) and half == pytest.approx((hi - lo) / 2)
    assert t_interval([1.0, float("nan")])[1] != t_interval([1.0, float("nan")])[1]  # one finite value: nan width
    assert t_interval([])[2] == 0


def test_figures_write_table_plots_and_sidecars(tmp_path):
    from sims.artifacts import atomic_write_json
    from sims.figures import make_all

    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        for method, fam, copy in (("edm", "standard", 0.3), ("ambient_1.0", "ambient", 0.1), ("ci_ddpm_low_0.4", "CI (DDPM, t)", 0.2)):
            atomic_write_json(runs / "cells" / f"mnist1d-n100-{method}-s{seed}.json",
                              _fake_result("mnist1d", 100, method, fam, seed, copy + 0.01 * seed))
    written = make_all(runs, tmp_path / "figs")
    names = sorted(p.name for p in written)
    assert names == ["claims.md", "readout_mnist1d_n100.png", "results.csv", "results.json", "results.md",
                     "tradeoff_mnist1d_n100.png"]
    sidecar = json.loads((tmp_path / "figs" / "results.json").read_text())
    assert sidecar["seed"] == [0, 1, 2] and sidecar["config"]["cells"] == 9 and sidecar["git_revision"]
    for png in ("readout_mnist1d_n100", "tradeoff_mnist1d_n100"):
        assert json.loads((tmp_path / "figs" / f"{png}.json").read_text())["config"]["cells"] == 9
    import pandas as pd

    table = pd.read_csv(tmp_path / "figs" / "results.csv")
    edm = table[table.method == "edm"].iloc[0]
    assert edm.seeds == 3 and edm.copy_share == pytest.approx(0.31)
    assert edm.copy_share_pm == pytest.approx(4.302653 * 0.01 / 3**0.5, rel=1e-5)  # t_{0.975,2} s / sqrt(3)
    assert "| mnist1d | 100 | edm | 3 |" in (tmp_path / "figs" / "results.md").read_text()
    # copy onset from the readout: seed 0 has r = (0.1, 0.55, 1.0), crossing 1/2 at 0.1 * 10^(0.4 / 0.45);
    # seeds 1, 2 start above 1/2 (no copying band: nan, left out of the mean)
    assert edm.copy_onset == pytest.approx(0.1 * 10 ** (0.4 / 0.45))
    claims = (tmp_path / "figs" / "claims.md").read_text()
    assert "| mnist1d | 100 | ambient_1.0 - edm | 3 | -0.2 ± " in claims  # paired per seed: 0.1 + s/100 - (0.3 + s/100)
    assert "| mnist1d | 100 | ci_ddpm_low_0.4 - ddpm" not in claims  # no ddpm baseline in this grid


def test_config_extends_a_base(tmp_path):
    from sims.experiments import GRID_CONFIG, expand_grid, load_config

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
