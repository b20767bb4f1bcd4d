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
