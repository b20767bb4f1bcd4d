"""The 1D-track notebooks execute end to end in fast mode (a tiny grid in a temporary folder)."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("nb1d")  # shared: the second notebook reuses the first one's cells


@pytest.mark.slow
@pytest.mark.parametrize("name", ["03_ambient_1d.py", "04_ci_sampler_1d.py"])
def test_notebook_runs_in_fast_mode(name, workdir, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MEMDIFF_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(NOTEBOOKS / name)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert (workdir / "runs" / "notebooks" / "sim_fast" / "cells").is_dir()
