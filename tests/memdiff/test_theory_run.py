"""memdiff theory / demo / figs theory: tiny end-to-end runs write complete, consistent artifacts."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from memdiff.cli import main
from memdiff.theory_run import TheoryConfig, run_theory
from memdiff import figs_theory as figures
from theory.diagnostics import COLUMNS

TINY = ["--n", "20", "--test", "16", "--num-items", "16", "--sigmas", "0.05", "0.5", "5", "--sigma-n", "0.3"]


@pytest.mark.parametrize("data, extra", [("gmm", []), ("mnist1d", ["--pool", "200"]), ("digits", ["--pool", "100"])])
def test_theory_command_writes_tables_figures_and_provenance(tmp_path, data, extra, capsys):
    local = {"local_patch_9"} if data == "mnist1d" else set()  # patch-local denoiser for 1D signals only
    out = tmp_path / data
    assert main(["theory", "--data", data, "--out", str(out), *TINY, *extra, "--samples", "0"]) == 0
    assert "sigma_C" in capsys.readouterr().out
    diag = pd.read_csv(out / "diagnostics.csv")
    assert list(diag.columns) == list(COLUMNS)
    assert sorted(diag.sigma.unique()) == [0.05, 0.5, 5.0]
    assert set(diag.denoiser) == {"empirical", "generalizing", "ambient"} | local
    amb = diag[diag.denoiser == "ambient"].set_index("sigma")
    assert math.isnan(amb.loc[0.05, "loss_train"]) and math.isfinite(amb.loc[5.0, "loss_train"])
    emp = diag[diag.denoiser == "empirical"].set_index("sigma")
    assert emp.necessity.is_monotonic_decreasing and emp.loc[0.05, "necessity"] > 0.9
    entropy = pd.read_csv(out / "entropy.csv")
    assert entropy.shape == (3, 3) and (entropy.drop(columns="sigma").diff().iloc[1:] > 0).all().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["data"] == data and summary["seed"] == 0 and summary["git_revision"]
    levels = summary["noise_levels"]
    assert levels["n"] == 20 and 0 < levels["sigma_C"] < 1e4 and levels["sigma_S"] > 0 and levels["sigma_n"] == 0.3
    sidecar = json.loads((out / "diagnostics.json").read_text())
    assert sidecar["config"] == summary["config"] and (out / "diagnostics.png").stat().st_size > 10_000
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_theory_runs_are_reproducible(tmp_path):
    cfg = TheoryConfig(data="gmm", n=12, test=8, num_items=8, sigmas=[0.1, 1.0], samples=0, sigma_n=None)
    run_theory(cfg, tmp_path / "a", progress=False)
    run_theory(cfg, tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "diagnostics.csv").read_text() == (tmp_path / "b" / "diagnostics.csv").read_text()


@pytest.mark.parametrize("argv, name", [
    (["--sigmas", "0.1", "-1"], "sigmas"), (["--sigmas", "0"], "sigmas"), (["--n", "1"], "n"),
    (["--sigma-n", "-0.5"], "sigma_n"), (["--samples", "-1"], "samples"), (["--test", "0"], "test"),
    (["--switches", "-1"], "switches"), (["--data", "mnist1d", "--reference", "exact"], "reference")])
def test_theory_command_rejects_bad_input(tmp_path, argv, name):
    with pytest.raises(ValueError, match=name):
        main(["theory", "--out", str(tmp_path), *argv])


def test_digits_without_a_pool_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="n \\+ test"):
        main(["theory", "--data", "digits", "--n", "1700", "--test", "97", "--out", str(tmp_path)])


def test_figs_theory_regenerates_every_configured_dataset(tmp_path, monkeypatch):
    tiny = 'n = 12\ntest = 8\npool = 100\nnum_items = 8\nsamples = 0\nsigmas = [0.1, 1.0]\n'
    configs = {}
    for name, path in figures.PAPER_CONFIGS.items():  # the shipped config with tiny sizes laid over it
        kept = [line for line in path.read_text().splitlines() if line.split(" =")[0] not in ("n", "test", "pool",
                "num_items", "samples", "sigmas")]
        configs[name] = tmp_path / f"{name}.toml"
        configs[name].write_text("\n".join(kept) + "\n" + tiny)
    monkeypatch.setattr(figures, "PAPER_CONFIGS", configs)
    monkeypatch.setattr(figures, "SIZES", (6, 12))
    assert main(["figs", "theory", "--out", str(tmp_path / "figs")]) == 0
    tmp_path = tmp_path / "figs"
    for name in ("gmm", "mnist1d"):
        for f in ("diagnostics.csv", "entropy.csv", "diagnostics.png", "diagnostics.json", "summary.json",
                  "collapse_by_n.csv", "collapse_by_n.png", "collapse_by_n.json"):
            assert (tmp_path / name / f).is_file()
        by_n = pd.read_csv(tmp_path / name / "collapse_by_n.csv")
        assert list(by_n.n) == [6, 12] and (by_n.sigma_C > 0).all()
        assert json.loads((tmp_path / name / "collapse_by_n.json").read_text())["config"]["sizes"] == [6, 12]


def test_demo_fast_writes_a_report_with_generation_tables(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--fast"]) == 0
    report = tmp_path / "report.md"
    assert str(report) in capsys.readouterr().out
    text = report.read_text()
    for name in ("gmm", "mnist1d"):
        assert f"## {name}" in text
        for png in ("diagnostics.png", "switch_sweep.png"):
            assert f"]({name}/{png})" in text and (tmp_path / name / png).is_file()
        gen = pd.read_csv(tmp_path / name / "generation.csv").set_index("denoiser")
        assert gen.loc["empirical", "copy_share"] == 1.0 and gen.loc["wiener_fit_to_train", "copy_share"] == 0.0
        sweep = pd.read_csv(tmp_path / name / "switch_sweep.csv")
        assert (sweep[sweep.hybrid == "generalizer_above_memorizer_below"].copy_share == 1.0).all()
    assert "| local_patch_9 |" in text


def _section_with(tmp_path, m_ambient):
    from memdiff.demo import _section

    rows = []
    for s, m in zip([0.5, 1.5, 3.0, 30.0], m_ambient):
        rows += [{"sigma": s, "denoiser": "empirical", "necessity": 0.9, "gap": 0.1, "max_weight": 0.5, "eff_items": 2.0},
                 {"sigma": s, "denoiser": "generalizing", "necessity": 0.0}, {"sigma": s, "denoiser": "ambient", "necessity": m}]
    pd.DataFrame(rows).to_csv(tmp_path / "diagnostics.csv", index=False)
    lv = {"n": 10, "d": 2, "sigma_C": 1.0, "sigma_C_gaussian_fit": 1.0, "sigma_C_isotropic": 1.0, "sigma_S": 2.0,
          "sigma_n": 1.0, "M_half_empirical": 1.2}
    return _section("toy", tmp_path, {"noise_levels": lv, "reference": "exact"})


def test_report_explains_negative_ambient_necessity(tmp_path):
    text = _section_with(tmp_path, [float("nan"), -16.5, -0.2, 0.01])
    assert "negative just above sigma_n (down to -16.5, at sigma = 1.5)" in text and "only sees the noisy copies" in text
    assert "negative just above" not in _section_with(tmp_path, [float("nan"), 0.3, 0.1, 0.01])
