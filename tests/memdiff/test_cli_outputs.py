"""Outputs are never clobbered or mixed: theory, demo and figure sets are swapped in whole, folders of other
files are refused, and figures go under runs/ unless published."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import memdiff.figs_sim as figs_sim
import memdiff.figs_theory as figs_theory
import memdiff.theory_run as theory_run
from memdiff.cli import main
from sims.artifacts import REPO_ROOT

TINY = ["--n", "12", "--test", "8", "--num-items", "8", "--samples", "0", "--sigma-n", "0"]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_theory_replaces_an_earlier_set_whole(tmp_path):
    out = tmp_path / "out"
    assert main(["theory", "--out", str(out), *TINY, "--sigmas", "0.1", "1"]) == 0
    first = names(out)
    (out / "generation.csv").write_text("from an earlier run with samples")  # a file this run does not write
    assert main(["theory", "--out", str(out), *TINY, "--sigmas", "0.1", "1", "10"]) == 0
    assert names(out) == first and names(tmp_path) == ["out"]
    assert (out / "diagnostics.csv").read_text().count("\n") == 1 + 3 * 2  # header + 3 sigmas x 2 denoisers


def test_an_interrupted_theory_run_leaves_the_earlier_set_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["theory", "--out", str(out), *TINY, "--sigmas", "0.1", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(theory_run, "save_figure", killed)  # after the CSVs are written
    with pytest.raises(KeyboardInterrupt):
        main(["theory", "--out", str(out), *TINY, "--sigmas", "0.5", "5"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and names(tmp_path) == ["out"]


@pytest.mark.parametrize("command", [["theory", *TINY], ["demo", "--fast"]])
def test_a_folder_of_other_files_is_refused_and_kept(tmp_path, command):
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match=f"output folder {tmp_path} must be new, empty or an earlier output"):
        main([*command, "--out", str(tmp_path)])
    assert names(tmp_path) == ["thesis.tex"]


@pytest.mark.parametrize("module, name", [(figs_theory, "theory"), (figs_sim, "sim")])
def test_figures_go_under_runs_unless_published(module, name):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    assert parser.parse_args([]).out == Path("runs/figs") / name
    assert parser.parse_args(["--publish"]).out == REPO_ROOT / "paper_figs" / name
    assert parser.parse_args(["--out", "elsewhere"]).out == Path("elsewhere")


def test_figs_theory_replaces_one_dataset_set_and_keeps_the_others(tmp_path, monkeypatch):
    config = tmp_path / "gmm.toml"
    config.write_text('data = "gmm"\nn = 12\ntest = 8\nnum_items = 8\nsamples = 0\nsigmas = [0.1, 1.0]\n')
    monkeypatch.setattr(figs_theory, "PAPER_CONFIGS", {"gmm": config})
    monkeypatch.setattr(figs_theory, "SIZES", (6, 12))
    out = tmp_path / "figs"
    for name, marker in (("gmm", "summary.json"), ("mnist1d", "summary.json")):
        (out / name).mkdir(parents=True)
        (out / name / marker).write_text("{}")
        (out / name / "stale.png").write_text("an earlier figure")
    assert main(["figs", "theory", "--only", "gmm", "--out", str(out)]) == 0
    assert "stale.png" not in names(out / "gmm") and "collapse_by_n.png" in names(out / "gmm")
    assert names(out / "mnist1d") == ["stale.png", "summary.json"] and names(out) == ["gmm", "mnist1d"]


def test_figs_sim_replaces_the_earlier_set_whole(tmp_path, monkeypatch, capsys):
    out = tmp_path / "figs"
    out.mkdir()
    for stale in ("results.json", "readout_mnist1d_n1000_n1000.png"):
        (out / stale).write_text("an earlier grid")

    def write_all(run_dir, folder):  # the real one needs a grid's cells (tests/memdiff/test_figs_sim.py)
        (folder / "results.json").write_text("{}")
        return [folder / "results.json"]

    monkeypatch.setattr(figs_sim, "_write_all", write_all)
    assert main(["figs", "sim", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert names(out) == ["results.json"] and names(tmp_path) == ["figs"]
    assert capsys.readouterr().out.strip() == str(out / "results.json")
