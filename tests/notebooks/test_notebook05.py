"""Notebook 05 (the advice walked through) executes end to end in fast mode through ``memdiff notebooks``, shows
the advised sigma_n, and writes nothing but the executed notebook into ``--out``."""
from __future__ import annotations

import argparse
import re

import nbformat
import pytest

from memdiff import notebooks

NAME = "05_advice_from_theory"


@pytest.mark.slow
def test_notebook05_runs_in_fast_mode_and_shows_the_advice(tmp_path, monkeypatch, capsys):
    pytest.importorskip("jupytext")
    pytest.importorskip("nbclient")
    monkeypatch.chdir(tmp_path)
    assert notebooks.run(argparse.Namespace(out="out", only=NAME, fast=True, timeout=300)) == 0
    nb = nbformat.read(tmp_path / "out" / f"{NAME}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    advised = float(re.search(r"advised sigma_n \(gmm, n = 100\): ([0-9.e+-]+)", text).group(1))
    assert 0.1 < advised < 10
    # the rule's line of what `memdiff advise` prints names the same sigma_n
    assert float(re.search(r"rule: sigma_n = max\(sigma_M, sigma_A\) = ([0-9.e+-]+)", text).group(1)) == advised
    assert f'sigma_n = {advised:g}\nnoise = {{ kind = "edm_lognormal" }}' in text  # the [[methods]] snippet
    for table in ("confirm/confirm.md", "confirm_image/confirm.md", "explain_fitted/explain.md"):
        assert f"paper_figs/{table}" in text
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing outside --out
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{NAME}.ipynb"]  # and nothing but the notebook
    assert f"{NAME}.py [1/" in capsys.readouterr().out  # one progress line per cell
