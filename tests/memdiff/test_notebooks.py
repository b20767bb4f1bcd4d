"""memdiff.notebooks: a jupytext percent file is executed in a fresh kernel into an .ipynb with outputs."""
from __future__ import annotations

import argparse
import os
import re

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
def test_execute_notebook_writes_outputs(tmp_path, capsys):
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
    assert re.fullmatch(r"nb\.py \[1/1\] import os \.\.\. \d+\.\d s\n", capsys.readouterr().out)


def test_progress_is_one_line_per_code_cell(capsys):
    cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("\nx = 1\ny = 2"),
             nbformat.v4.new_code_cell("  \n"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    progress = notebooks._CellProgress("nb.py", cells)
    for index, status in ((0, None), (1, "ok"), (2, None), (3, "error")):  # nbclient skips 0 and 2 after start
        progress.start(cells[index], index)
        if status:
            progress.executed(cells[index], index, {"content": {"status": status}})
    first, second = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"nb\.py \[1/2\] x = 1 \.\.\. \d+\.\d s", first)
    assert re.fullmatch(r"nb\.py \[2/2\] raise ValueError\('boom'\) \.\.\. \d+\.\d s \(error\)", second)


@pytest.mark.slow
def test_kernels_run_in_the_out_folder(tmp_path, monkeypatch):
    """Whatever a notebook writes lands under --out; MEMDIFF_SIM_RUNS is resolved against the starting folder."""
    (tmp_path / "writer.py").write_text("# %%\nimport os\n"
                                        "open('made.txt', 'w').write(os.environ['MEMDIFF_SIM_RUNS'])\n")
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    monkeypatch.delenv("MEMDIFF_SIM_RUNS", raising=False)
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path)
    notebooks.run(argparse.Namespace(out="out", only="writer", fast=True, timeout=60))
    assert sorted(p.name for p in start.iterdir()) == ["out"]
    assert sorted(p.name for p in (start / "out").iterdir()) == ["made.txt", "writer.ipynb"]
    assert (start / "out" / "made.txt").read_text() == os.path.join(start, "runs", "sim_grid")


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
