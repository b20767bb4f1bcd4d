"""Test-wide settings and fixtures. One torch thread per test process: the tensors here are small, and on a
2-core machine shared with other work, OpenMP's spinning threads make small ops up to 30x slower (measured).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def run_fast_notebook(tmp_path):
    """Run ``notebooks/<name>`` as a script in fast mode in an empty folder; returns its stdout."""
    def run(name: str) -> str:
        env = {**os.environ, "MEMDIFF_FAST": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, str(NOTEBOOKS / name)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    return run
