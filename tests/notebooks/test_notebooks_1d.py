"""The 1D-track notebooks execute end to end in fast mode (a tiny grid) through ``memdiff notebooks``, and
write nothing outside its ``--out`` folder."""
from __future__ import annotations

import argparse

import nbformat
import pytest

from memdiff import notebooks


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("nb1d")  # shared: the second notebook reuses the first one's cells
    return cwd, cwd / "out"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["03_ambient_1d", "04_ci_sampler_1d"])
def test_notebook_runs_in_fast_mode_and_writes_only_under_out(name, folders, monkeypatch, capsys):
    pytest.importorskip("jupytext")
    pytest.importorskip("nbclient")
    cwd, out = folders
    monkeypatch.chdir(cwd)
    assert notebooks.run(argparse.Namespace(out="out", only=name, fast=True, timeout=300)) == 0
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert [p.name for p in cwd.iterdir()] == ["out"]  # the smoke grid went under --out, not the working folder
    assert (out / "sim_fast" / "cells").is_dir()  # MEMDIFF_NOTEBOOK_OUT is the --out folder
    assert f"{name}.py [1/" in capsys.readouterr().out  # one progress line per cell
