"""memdiff bench sim: the trainer-versus-plain-loop measurement runs and reports what it says (no timing asserted)."""
from __future__ import annotations

import argparse
import statistics

import pytest

from memdiff import bench_sim as bench


def test_train_ratio_times_every_loop_and_reports_medians():
    res = bench.train_ratio("mlp", steps=2, batch=8, length=40, rounds=3)
    assert all(res[f"{loop}_steps_per_s"] > 0 for loop in bench.LOOPS)
    for loop in bench.PLAIN_ADAM:
        assert len(res[f"{loop}_ratios"]) == 3 and all(r > 0 for r in res[f"{loop}_ratios"])
        assert res[f"{loop}_ratio"] == statistics.median(res[f"{loop}_ratios"])


def test_bad_sizes_rejected_before_any_work():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    with pytest.raises(ValueError, match="--rounds must be a positive integer"):
        bench.run(parser.parse_args(["--rounds", "0"]))


TINY_RECIPES = """
extends = "{base}"

[run]
seeds = [0]

[train]
batch_size = 4

[eval]
two_net = false
"""
TINY_ENTRY = """
[[datasets]]
name = "{name}"
kind = "mnist1d"
n = [10]
methods = ["edm"]
source = 20
test = 10
pool = 10
train = {{ {train} }}
"""
TINY_TRAIN = {"small": "width = 8, depth = 1, steps = 30", "big": "width = 16, depth = 1, steps = 10",
              "small_long": "width = 8, depth = 1, steps = 60, lr = 1e-2"}  # small_long: small's net and batch


def _recipes(tmp_path):
    from sims.artifacts import REPO_ROOT

    path = tmp_path / "recipes.toml"
    path.write_text(TINY_RECIPES.format(base=(REPO_ROOT / "configs" / "sim_grid.toml").as_posix())
                    + "".join(TINY_ENTRY.format(name=name, train=train) for name, train in TINY_TRAIN.items()))
    return path


def test_config_mode_prints_one_row_per_entry_with_cell_costs_and_ratios(tmp_path, capsys):
    import json

    from memdiff.cli import main

    out = tmp_path / "costs.json"
    assert main(["bench", "sim", "--config", str(_recipes(tmp_path)), "--against", "big", "--steps", "2",
                 "--rounds", "2", "--nn", "0", "0", "0", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    entries = {e["name"]: e for e in res["entries"]}
    assert list(entries) == ["small", "big", "small_long"] and res["against"] == "big"
    assert res["timed"] == 2 and entries["small_long"]["timed_as"] == "small"  # same net and batch: timed once
    assert entries["small_long"]["ms_per_step_rounds"] == entries["small"]["ms_per_step_rounds"]
    assert entries["big"]["ratio"] == 1.0
    for e in entries.values():
        assert (e["width"], e["depth"], e["batch"], e["length"]) == ((8 if "small" in e["name"] else 16), 1, 4, 40)
        assert len(e["ms_per_step_rounds"]) == 2 and e["ms_per_step"] == statistics.median(e["ms_per_step_rounds"])
        assert e["net_cpu_s"] == pytest.approx(e["steps"] * e["ms_per_step"] / 1000)
        assert e["ratio"] == pytest.approx(entries["big"]["net_cpu_s"] / e["net_cpu_s"])
    printed = capsys.readouterr().out.splitlines()
    for name in entries:
        assert sum(line.split()[0] == name for line in printed if line.strip()) == 1
    assert any(line.startswith("big ") and "1.00x" in line for line in printed)


def test_config_mode_rejects_a_bad_against_or_a_missing_config(tmp_path):
    from memdiff.cli import main

    tiny = ["--steps", "2", "--rounds", "2", "--nn", "0", "0", "0"]
    with pytest.raises(ValueError, match=r"^--against must name .*'nope'.*small, big, small_long$"):
        main(["bench", "sim", "--config", str(_recipes(tmp_path)), "--against", "nope", *tiny])
    with pytest.raises(ValueError, match="^--config must be an existing"):
        main(["bench", "sim", "--config", str(tmp_path / "missing.toml"), *tiny])
