"""Notebook 01 runs top to bottom as a script in fast mode and prints its tables."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_notebook01_runs_in_fast_mode(run_fast_notebook, tmp_path):
    out = run_fast_notebook("01_where_memorization_is_necessary.py")
    assert "| n | closed form | entropy root (exact density) | entropy root (Gaussian fit) |" in out
    assert "| empirical | 1 |" in out  # the memorizer copies every sample
    assert "| local patch 9 | 0 |" in out  # the patch-local memorizer copies none
    assert not list(tmp_path.iterdir())  # the notebook writes no files
