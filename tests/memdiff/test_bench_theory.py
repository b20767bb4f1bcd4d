"""memdiff bench theory: the benchmark command runs, and its measurements mean what they say."""
from __future__ import annotations


def test_bench_smoke(capsys):
    """`memdiff bench theory` on a tiny problem: runs, and the streamed method is exact where cdist is not."""
    import argparse

    from memdiff import bench_theory as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--n", "300", "--d", "64", "--batch", "8", "--sigmas", "0.01,5", "--repeats", "1",
                              "--tv-items", "200", "--tv-queries", "8", "--no-memory"])
    assert bench.run(args) == 0
    assert "exact-stream" in capsys.readouterr().out
    data, x = bench.near_neighbour_problem(200, 256, 8, 0.01, seed=1)
    acc = bench.accuracy(data, x, 0.01, {})
    assert acc["exact-stream"]["tv_max"] < 1e-5 < acc["cdist+softmax"]["tv_max"]
    assert bench.memory_probe("exact-stream", 300, 16, 8, 0.1, 0, {}) >= 0.0
