"""Notebook 02 runs as a script in fast mode: every law's mass table and the SNR argument come out."""
from __future__ import annotations

import re


def test_notebook02_runs_in_fast_mode(run_fast_notebook, tmp_path):
    out = run_fast_notebook("02_noise_level_distributions.py")
    sigma_c = float(re.search(r"sigma_C \(MNIST-1D, n = 300\): ([0-9.]+)", out).group(1))
    assert 0.5 < sigma_c < 5
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:6]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| law")}
    assert len(rows) == 17
    # the high-noise CI interval trains almost nowhere below sigma_C, the low-noise one mostly there
    assert rows["ci_ddpm_high_0.4"][1] < 0.01 < 0.5 < rows["ci_ddpm_low_0.4"][1]
    # ambient with sigma_n < sigma_C sees clean data only below sigma_n: less clean mass than EDM
    assert rows["ambient_1.0"][3] < rows["edm"][3] == rows["edm"][1]
    assert "linear: SNR spans" in out and "cosine: SNR spans" in out
    assert not list(tmp_path.iterdir())  # the notebook writes no files
