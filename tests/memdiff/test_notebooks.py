"""memdiff.notebooks: a jupytext percent file is executed in a fresh kernel into an .ipynb with outputs."""
from __future__ import annotations

import argparse

import nbformat
import pytest

from memdiff import notebooks

TRIVIAL = '''# %% [markdown]
# # A trivial notebook

# %%
import os
print(6 * 7, os.environ.get("MEMDIFF_FAST"), os.getcwd())
'''


@pytest.mark.slow
def test_execute_notebook_writes_outputs(tmp_path):
    src = tmp_path / "nb.py"
    src.write_text(TRIVIAL)
    work = tmp_path / "work"
    work.mkdir()
    out = notebooks.execute_notebook(src, tmp_path / "out" / "nb.ipynb", workdir=work, env={"MEMDIFF_FAST": "1"},
                                     timeout=120)
    nb = nbformat.read(out, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert text.split() == ["42", "1", str(work)]


@pytest.mark.slow
def test_failing_cell_raises_and_writes_nothing(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    (tmp_path / "bad.py").write_text("# %%\nraise RuntimeError('boom')\n")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path)
    args = argparse.Namespace(out=str(tmp_path / "out"), only="bad", fast=True, timeout=60)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="boom"):
        notebooks.run(args)
    assert not (tmp_path / "out" / "bad.ipynb").exists()


def test_rejects_missing_source_and_unmatched_glob(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="source"):
        notebooks.execute_notebook(tmp_path / "nope.py", tmp_path / "x.ipynb")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path)
    with pytest.raises(ValueError, match="--only"):
        notebooks.run(argparse.Namespace(out=str(tmp_path), only="zz*", fast=False, timeout=10))
