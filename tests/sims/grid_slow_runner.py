"""A slow, deterministic stand-in for the 1D track's cell runner, and ``memdiff sim`` with it (interruption tests).

``python -c "import grid_slow_runner; grid_slow_runner.main()" --config C --out O --workers 2`` (this folder on
``PYTHONPATH``) runs ``memdiff sim`` with ``slow_runner`` in place of ``sims.track1d.cell.run_cell`` and no data
preparation. Each cell writes its process id to ``<out>/started/<cell id>.pid`` when it starts, sleeps
``$GRID_SLOW_RUNNER_SLEEP`` seconds (default 1.5) and returns numbers that depend on the cell only.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

CONFIG_TOML = """
[run]
seeds = [0, 1, 2]
[train]
steps = 1
[eval]
readout_sigmas = [1.0]
[[datasets]]
name = "d"
kind = "gmm"
n = [10]
source = 20
test = 10
pool = 10
[[methods]]
name = "m1"
[[methods]]
name = "m2"
"""  # 6 cells


def slow_runner(config, cell, out):
    started = Path(out) / "started"
    started.mkdir(parents=True, exist_ok=True)
    (started / f"{cell.id}.pid").write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("GRID_SLOW_RUNNER_SLEEP", "1.5")))
    value = int(hashlib.sha256(cell.id.encode()).hexdigest()[:12], 16) / 16**12
    return {"cell": {"dataset": cell.dataset, "n": cell.n, "method": cell.method, "seed": cell.seed, "id": cell.id},
            "metrics": {"value": value}, "readout": {"sigma": [1.0], "ratio": [value]}}


def main() -> None:
    import memdiff.sim
    from memdiff.cli import main as memdiff_main

    memdiff.sim.run_cell = slow_runner
    memdiff.sim.prepare = lambda config, out: None
    sys.exit(memdiff_main(["sim", *sys.argv[1:]]))
