"""Notebook 01 runs top to bottom as a script in fast mode and prints its tables."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_where_memorization_is_necessary.py"


@pytest.mark.slow
def test_notebook01_runs_in_fast_mode(tmp_path):
    env = {**os.environ, "MEMDIFF_FAST": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(NOTEBOOK)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| n | closed form | entropy root (exact density) | entropy root (Gaussian fit) |" in out
    assert "| empirical | 1 |" in out  # the memorizer copies every sample
    assert "| local patch 9 | 0 |" in out  # the patch-local memorizer copies none
    assert not list(tmp_path.iterdir())  # the notebook writes no files
