"""The image grid (``memdiff image grid``) on the shared runner: a tiny digits grid end to end, resume, ``--list``,
config errors naming the dotted key, the shipped config, and the feature cosine on a constructed case."""
from __future__ import annotations

import pytest
import torch

from image_track.data import downsample, load_images
from image_track.features import ClassifierConfig, feature_net
from image_track.grid_cell import IMAGE_GRID, run_image_grid
from memdiff.cli import entry, main
from sims import metrics
from sims.grid import cell_path, expand_grid, load_config, read_cell

TINY = """
[run]
seeds = [0]
[train]
model_channels = 8
channel_mult = [1, 2]
num_blocks = 1
attn_resolutions = []
dropout = 0.0
steps = 4
batch_size = 16
lr = 1e-3
[eval]
num_samples = 24
sampler_steps = 3
readout_sigmas = [0.1, 1.0]
readout_items = 12
classifier_epochs = 1
two_net = ["edm"]
[[datasets]]
name = "digits"
kind = "digits"
resolution = 8
n = [20]
source = 100
test = 40
pool = 80
[[methods]]
name = "edm"
loss = "edm"
[[methods]]
name = "amb_ci"
loss = "hybrid_ambient"
sigma_n = 1.2
noise = { kind = "ci_t", interval = [0.4, 1.0] }
"""
CELLS = ["digits-n20-edm-s0", "digits-n20-amb_ci-s0"]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_a_tiny_grid_runs_resumes_and_lists(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    grid = ["image", "grid", "--config", str(tiny), "--out", str(out)]
    assert main([*grid, "--list"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == [f"todo {c}" for c in CELLS]
    assert main(grid) == 0
    assert "2 cells, 0 already done, 2 to run" in capsys.readouterr().out
    cells = {c.id: read_cell(cell_path(out, c)) for c in expand_grid(load_config(tiny, IMAGE_GRID))}
    assert list(cells) == CELLS
    for res in cells.values():
        m = res["metrics"]
        assert all(0 <= m[k] <= 1 for k in ("copy_share", "cosine_share", "ref_copy_share", "js", "js_train"))
        assert -1 <= m["max_cosine_mean"] <= 1 and m["fd"] >= 0 and m["wasserstein_train"] >= 0
        assert len(res["readout"]["sigma"]) == 2 and len(res["readout"]["heldout_ratio"]) == 2
        assert res["sigma_c"] > 0 and res["reference"] == "wiener_pool" and res["sigma_data"] == 0.5
        assert "digits-8px CNN classifier" in res["features"]
    assert len(cells[CELLS[0]]["two_net"]["v"]) == 2 and cells[CELLS[1]]["two_net"] is None
    assert cells[CELLS[1]]["family"] == "ambient + CI"

    first = cell_path(out, expand_grid(load_config(tiny, IMAGE_GRID))[0]).read_bytes()
    assert main(grid) == 0  # resume: nothing to do, nothing rewritten
    assert "2 cells, 2 already done, 0 to run" in capsys.readouterr().out
    (out / "cells" / f"{CELLS[1]}.json").unlink()
    assert main([*grid, "--only", "*amb_ci*", "--list"]) == 0
    assert capsys.readouterr().out == f"todo {CELLS[1]}\n"
    assert main(grid) == 0
    assert "2 cells, 1 already done, 1 to run" in capsys.readouterr().out
    assert (out / "cells" / f"{CELLS[1]}.json").exists()
    assert (out / "cells" / f"{CELLS[0]}.json").read_bytes() == first


@pytest.mark.parametrize("old, new, line", [
    ("steps = 4", "stepz = 4", "unknown key train.'stepz'; did you mean train.'steps'?"),
    ("resolution = 8", "resolutoin = 8",
     "dataset 'digits': unknown key datasets.'resolutoin'; did you mean datasets.'resolution'?"),
    ("resolution = 8", "resolution = 3",
     "dataset 'digits': datasets.resolution must divide the native side 8 of digits (average pooling), got 3"),
    ("model_channels = 8", "model_channels = 6", "train.model_channels must be a multiple of 4, >= 4, got 6"),
    ('kind = "digits"', 'kind = "svhn"', "datasets.kind must be one of ['fashion-mnist', 'cifar10', 'digits']"),
])
def test_a_bad_config_key_is_one_line_naming_the_dotted_key(tiny, tmp_path, capsys, monkeypatch, old, new, line):
    monkeypatch.delenv("MEMDIFF_DEBUG", raising=False)
    tiny.write_text(TINY.replace(old, new, 1))
    with pytest.raises(SystemExit) as done:
        entry(["image", "grid", "--config", str(tiny), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and err.startswith(f"memdiff: error: {tiny}")
    assert line in err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_shipped_config_parses():
    from memdiff.image import GRID_CONFIG

    config = load_config(GRID_CONFIG, IMAGE_GRID)
    cells = expand_grid(config)
    per_seed = {}
    for c in cells:
        per_seed.setdefault((c.dataset, c.n, c.method), set()).add(c.seed)
    assert all(len(s) >= 5 for k, s in per_seed.items() if k[:2] == ("digits", 100))
    assert all(len(s) >= 3 for s in per_seed.values())
    assert len({m["sigma_n"] for m in config["methods"] if m["loss"] == "hybrid_ambient"}) >= 3


def test_downsample_averages_blocks():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(downsample(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert downsample(x, 4) is x
    with pytest.raises(ValueError, match="resolution must divide the side 4"):
        downsample(x, 3)


def test_feature_cosine_scores_an_exact_copy_1_and_a_shuffled_image_below_the_threshold(tmp_path):
    fn = feature_net("digits", cache_dir=tmp_path, config=ClassifierConfig(epochs=1))
    images, _ = load_images("digits")
    train, probe = images[:200], images[:8]
    gen = torch.Generator().manual_seed(0)
    shuffled = torch.stack([img.flatten()[torch.randperm(64, generator=gen)].reshape(img.shape) for img in probe])
    cos_copy = metrics.max_cosine(fn(probe), fn(train))
    cos_shuffled = metrics.max_cosine(fn(shuffled), fn(train))
    torch.testing.assert_close(cos_copy, torch.ones(8, dtype=torch.float64))
    assert (cos_shuffled < 0.9).all(), cos_shuffled
    report = metrics.memorization_report(torch.cat([probe, shuffled]), train, features=fn(torch.cat([probe, shuffled])),
                                         train_features=fn(train))
    assert report["cosine_share"] == 0.5 and report["copy_share"] == 0.5


def test_preview_samples_puts_the_first_samples_beside_their_nearest_training_rows(tiny, tmp_path):
    from image_track.grid_cell import _bundle, _spec
    from sims.cell import training_subset

    tiny.write_text(TINY.replace('two_net = ["edm"]', "two_net = false\npreview_samples = 2"))
    config = load_config(tiny, IMAGE_GRID)
    run_image_grid(config, tmp_path / "out", only="*-edm-*", log=lambda _: None)
    p = read_cell(cell_path(tmp_path / "out", expand_grid(config)[0]))["preview"]
    train, _ = training_subset(_bundle(_spec(config, "digits")).source, 20, 0)  # the cell's training subset
    samples, nearest = torch.tensor(p["samples"]), torch.tensor(p["nearest"])
    assert p["shape"] == [1, 8, 8] and samples.shape == nearest.shape == (2, 1, 8, 8)
    flat = train.reshape(20, -1).double()
    to_rows = torch.cdist(nearest.reshape(2, -1).double(), flat)  # each "nearest" is a training row (to 4 decimals)
    assert (to_rows.min(dim=1).values < 1e-3).all()
    d = torch.cdist(samples.reshape(2, -1).double(), flat)  # and the nearest one
    torch.testing.assert_close((samples - nearest).reshape(2, -1).double().norm(dim=1), d.min(dim=1).values,
                               atol=1e-3, rtol=0)
    assert all(0 < r <= 1 for r in p["distance_ratio"])


def test_closed_form_samples_of_the_exact_optimum_all_copy(tiny, tmp_path):
    # the exact optimum's last step returns a training item itself: every one of its samples is a copy (§2.1, §6.3)
    tiny.write_text(TINY.replace('two_net = ["edm"]', "two_net = false\nclosed_form_samples = 3"))
    config = load_config(tiny, IMAGE_GRID)
    run_image_grid(config, tmp_path / "out", only="*-edm-*", log=lambda _: None)
    cell = read_cell(cell_path(tmp_path / "out", expand_grid(config)[0]))
    assert cell["metrics"]["emp_copy_share"] == 1.0 and cell["timing"]["closed_form_samples_s"] > 0
