"""The grid config is checked before any work: unknown keys at every level (with the nearest known key), missing
required keys, wrong types and ranges, each named by the file and the dotted key."""
from __future__ import annotations

import copy
import re

import pytest

from sims.grid import check_config, load_config, run_grid

SIZES = {"source": 40, "test": 20, "pool": 50}
CONFIG = {"run": {"seeds": [0], "workers": 1}, "train": {"lr": 2e-3, "steps": 10}, "eval": {"readout_sigmas": [1.0]},
          "datasets": [{"name": "a", "kind": "gmm", "n": [10], **SIZES}],
          "methods": [{"name": "edm", "loss": "edm"}, {"name": "amb", "loss": "hybrid_ambient", "sigma_n": 1.0}]}


def _with(path: str, value):
    """CONFIG with the dotted ``path`` (``datasets.0.n``) set to ``value`` (deleted when ``value`` is ``...``)."""
    config = copy.deepcopy(CONFIG)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = config
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return config


@pytest.mark.parametrize("path, value, match", [
    ("trian", {}, r"unknown key 'trian'; did you mean 'train'\?"),
    ("run.worker", 2, r"unknown key run\.'worker'; did you mean run\.'workers'\?"),
    ("train.stepz", 5, r"unknown key train\.'stepz'; did you mean train\.'steps'\?"),
    ("eval.readout_sigma", [1.0], r"unknown key eval\.'readout_sigma'; did you mean eval\.'readout_sigmas'\?"),
    ("datasets.0.sorce", 40, r"dataset 'a': unknown key datasets\.'sorce'; did you mean datasets\.'source'\?"),
    ("methods.1.sigma", 1.0, r"method 'amb': unknown key methods\.'sigma'; did you mean methods\.'sigma_n'\?"),
    ("train.lr", 0, r"train\.lr must be a finite number > 0, got 0"),
    ("train.lr", "fast", r"train\.lr must be a finite number > 0, got 'fast'"),
    ("train.lr", float("nan"), r"train\.lr must be a finite number > 0"),
    ("train.steps", 0, r"train\.steps must be an integer >= 1, got 0"),
    ("train.steps", 2.5, r"train\.steps must be an integer >= 1, got 2.5"),
    ("train.steps", True, r"train\.steps must be an integer >= 1, got True"),
    ("train.ema_decay", 1.0, r"train\.ema_decay must be a number in \[0, 1\)"),
    ("train.arch", "transformer", r"train\.arch must be one of \['mlp', 'unet'\]"),
    ("run.workers", 0, r"run\.workers must be an integer >= 1, got 0"),
    ("run.seeds", [0, -1], r"run\.seeds must be a non-empty list, each an integer >= 0"),
    ("run.seeds", ..., r"run\.seeds must be given"),
    ("run", [1], r"run must be a table"),
    ("eval.readout_sigmas", [], r"eval\.readout_sigmas must be a non-empty list, each a finite number > 0"),
    ("eval.readout_sigmas", [0.1, -1.0], r"eval\.readout_sigmas must be a non-empty list"),
    ("eval.readout_sigmas", ..., r"eval\.readout_sigmas must be given"),
    ("eval.sampler", "ddim", r"eval\.sampler must be one of \['edm_euler', 'edm_heun'\]"),
    ("datasets.0.source", ..., r"dataset 'a': datasets\.source must be given"),
    ("datasets.0.n", [10, 50], r"dataset 'a': datasets\.n must be <= datasets\.source = 40"),
    ("datasets.0.name", "a-b", r"datasets\.name must be a non-empty name"),
    ("datasets", [], r"datasets must be a non-empty list of tables"),
    ("methods.0.name", "a/b", r"methods must have unique names"),
    ("methods.1.sigma_n", ..., r"methods entry 'amb': sigma_n must be given"),
    ("eval.two_net", "yes", r"eval\.two_net must be true, false or a list of method names"),
    ("eval.two_net", ["edm", "ambiant"], r"eval\.two_net must name configured methods, unknown: \['ambiant'\]"),
])
def test_check_config_names_the_source_and_the_dotted_key(path, value, match):
    with pytest.raises(ValueError, match=r"^grid\.toml[:,] .*" + match):
        check_config(_with(path, value), "grid.toml")


def test_load_config_names_the_file_that_holds_the_bad_key(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('[run]\nseeds = [0]\n[train]\nlr = 0.002\n[eval]\nreadout_sigmas = [1.0]\n[[datasets]]\nname = "a"\n'
                    'kind = "gmm"\nn = [10]\nsource = 40\ntest = 20\npool = 50\n[[methods]]\nname = "edm"\n')
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[train]\nlr = -1.0\n')
    with pytest.raises(ValueError, match=re.escape(f"{child}: train.lr must be a finite number > 0, got -1.0")):
        load_config(child)
    base.write_text(base.read_text().replace("lr = 0.002", "lr_warmup = 5"))
    with pytest.raises(ValueError, match=re.escape(f"{base}: unknown key train.'lr_warmup'; did you mean")):
        load_config(child)
    child.write_text("extends = 3\n")
    with pytest.raises(ValueError, match="extends must be a config file name"):
        load_config(child)


def test_run_grid_checks_the_config_before_preparing_any_data(tmp_path):
    def prepare(config, out):
        raise AssertionError("prepare ran on a bad config")

    with pytest.raises(ValueError, match=r"train\.lr must be"):
        run_grid(_with("train.lr", -1.0), tmp_path, runner=print, prepare=prepare, log=lambda _: None)
    assert not (tmp_path / "grid.json").exists()


def test_two_net_for_a_list_of_methods_halves_the_largest_n():
    from sims.grid import runs_two_net
    config = _with("eval.two_net", ["amb"])
    assert [runs_two_net(config, m) for m in ("edm", "amb")] == [False, True]
    assert runs_two_net(_with("eval.two_net", True), "edm") and not runs_two_net(CONFIG, "edm")
    config["datasets"][0]["n"] = [25]  # 2 x 25 > source 40: the two-net test's second subset would not fit
    with pytest.raises(ValueError, match=r"datasets\.n must be <= datasets\.source / 2"):
        check_config(config, "grid.toml")
