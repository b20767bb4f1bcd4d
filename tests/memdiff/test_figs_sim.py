"""memdiff figs sim: the results table, claims and figures from cell results (fake cells written here)."""
from __future__ import annotations

import json

import pytest


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

    from memdiff.results import t_interval

    v = [0.2, 0.5, 0.9, 0.4]
    mean, half, k = t_interval(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert k == 4 and mean == pytest.approx(np.mean(v)) and half == pytest.approx((hi - lo) / 2)
    assert t_interval([1.0, float("nan")])[1] != t_interval([1.0, float("nan")])[1]  # one finite value: nan width
    assert t_interval([])[2] == 0


def test_figures_write_table_plots_and_sidecars(tmp_path):
    from sims.artifacts import atomic_write_json
    from memdiff.figs_sim import make_all

    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        for method, fam, copy in (("edm", "standard", 0.3), ("ambient_1.0", "ambient", 0.1), ("ci_ddpm_low_0.4", "CI (DDPM, t)", 0.2)):
            atomic_write_json(runs / "cells" / f"mnist1d-n100-{method}-s{seed}.json",
                              _fake_result("mnist1d", 100, method, fam, seed, copy + 0.01 * seed))
    written = make_all(runs, tmp_path / "figs")
    names = sorted(p.name for p in written if p.parent == tmp_path / "figs")
    assert names == ["claims.md", "readout_mnist1d_n100.png", "results.csv", "results.json", "results.md",
                     "tradeoff_mnist1d_n100.png", "verdicts.md"]
    cells = sorted(p.name for p in written if p.parent.name == "cells")  # the per-cell results travel along
    assert len(cells) == 9 and (tmp_path / "figs" / "cells" / cells[0]).read_bytes() == (runs / "cells" / cells[0]).read_bytes()
    again = make_all(tmp_path / "figs", tmp_path / "figs2")  # the published folder re-computes every table
    assert (tmp_path / "figs2" / "results.csv").read_text() == (tmp_path / "figs" / "results.csv").read_text()
    assert len(again) == len(written)
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


# --- loading cell results (memdiff.results) ------------------------------------------------------------------
def test_load_results_names_an_invalid_cell_file_and_how_to_repair_it(tmp_path):
    from memdiff.results import load_results
    from sims.artifacts import atomic_write_json

    for seed in (0, 1):  # files without a schema (written before it) still load
        atomic_write_json(tmp_path / "cells" / f"mnist1d-n100-edm-s{seed}.json",
                          _fake_result("mnist1d", 100, "edm", "standard", seed, 0.3))
    df, raw = load_results(tmp_path)
    assert len(df) == 2 and set(raw) == {"mnist1d-n100-edm-s0", "mnist1d-n100-edm-s1"}
    bad = tmp_path / "cells" / "mnist1d-n100-edm-s1.json"
    bad.write_text(bad.read_text()[:40])  # truncated
    with pytest.raises(ValueError, match=r"mnist1d-n100-edm-s1\.json is not valid JSON.*run `memdiff sim` again"):
        load_results(tmp_path)


def test_a_nan_metric_counts_as_a_missing_seed_for_that_metric_only(tmp_path):
    import math

    from memdiff.results import load_results, markdown_table, summarise
    from sims.artifacts import atomic_write_json

    for seed in (0, 1, 2):
        result = _fake_result("mnist1d", 100, "edm", "standard", seed, 0.3)
        if seed == 1:
            result["metrics"]["fd"] = math.nan  # a failed measurement
        atomic_write_json(tmp_path / "cells" / f"mnist1d-n100-edm-s{seed}.json", result)
    summary = summarise(load_results(tmp_path)[0])
    row = summary.iloc[0]
    assert row.seeds == 3 and row.fd_n == 2 and row.copy_share_n == 3
    assert row.fd == pytest.approx((2.0 + 4.0) / 2)  # seeds 0 and 2
    line = markdown_table(summary).splitlines()[2]
    assert "| 3 | 0.3 ± 0 | " in line and "| 3 ± 13 (n=2) |" in line


def test_copy_by_n_figure_joins_the_datasets_of_one_kind(tmp_path):
    from sims.artifacts import atomic_write_json
    from memdiff.figs_sim import make_all

    runs = tmp_path / "runs"
    for name, n in (("mnist1d", 100), ("mnist1d_n300", 300), ("gmm", 100)):
        for seed in (0, 1):
            atomic_write_json(runs / "cells" / f"{name}-n{n}-edm-s{seed}.json",
                              _fake_result(name, n, "edm", "standard", seed, 0.9 - n / 1000))
    atomic_write_json(runs / "grid.json", {"config": {"datasets": [
        {"name": "mnist1d", "kind": "mnist1d"}, {"name": "mnist1d_n300", "kind": "mnist1d"},
        {"name": "gmm", "kind": "gmm"}]}})
    names = {p.name for p in make_all(runs, tmp_path / "figs")}
    assert "copy_by_n_mnist1d.png" in names and (tmp_path / "figs" / "copy_by_n_mnist1d.json").exists()
    assert not any(n.startswith("copy_by_n_gmm") for n in names)  # one n only: nothing to draw against n
    sidecar = json.loads((tmp_path / "figs" / "copy_by_n_mnist1d.json").read_text())
    assert sidecar["seed"] == [0, 1] and sidecar["config"]["cells"] == 6
