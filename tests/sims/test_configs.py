"""sims.configs and the typed theory config: a file is read once, and a bad key or value is named."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from memdiff.theory_run import TheoryConfig
from sims.artifacts import REPO_ROOT
from sims.configs import from_mapping, read_config_file


@dataclass
class Small:
    steps: int = 10
    lr: float = 1e-3
    name: str = "x"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    flag: bool = False


def test_from_mapping_builds_and_accepts_an_int_for_a_float():
    assert from_mapping(Small, {"steps": 3, "lr": 1}, "f.toml") == Small(steps=3, lr=1)


@pytest.mark.parametrize("mapping, match", [
    ({"stepz": 3}, r"f.toml: unknown key 'stepz'; did you mean 'steps'\?"),
    ({"zzz": 3}, r"f.toml: unknown key 'zzz'; expected one of"),
    ({"lr": "fast"}, "f.toml: lr must be of type float"),
    ({"steps": 2.5}, "f.toml: steps must be of type int"),
    ({"flag": 1}, "f.toml: flag must be of type bool"),
    ({"steps": True}, "f.toml: steps must be of type int"),
])
def test_from_mapping_names_the_file_and_the_key(mapping, match):
    with pytest.raises(ValueError, match=match):
        from_mapping(Small, mapping, "f.toml")


def test_read_config_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = \n")
    with pytest.raises(ValueError, match="bad.toml.*not valid TOML"):
        read_config_file(bad)
    with pytest.raises(ValueError, match="must end in .toml or .json"):
        read_config_file(tmp_path / "c.yaml")
    with pytest.raises(ValueError, match="existing"):
        read_config_file(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["theory_gmm", "theory_mnist1d", "demo_gmm", "demo_mnist1d"])
def test_shipped_theory_configs_parse(name):
    cfg = TheoryConfig.from_file(REPO_ROOT / "configs" / f"{name}.toml", seed=3)
    assert cfg.seed == 3 and cfg.data in name


def test_theory_grids_are_log_spaced_tables():
    cfg = TheoryConfig.from_file(REPO_ROOT / "configs" / "theory_gmm.toml")
    np.testing.assert_array_equal(cfg.sigmas, np.geomspace(0.01, 100.0, 31))
    assert len(cfg.switches) == 13
    with pytest.raises(ValueError, match="sigmas must be a list or a table"):
        TheoryConfig(sigmas={"lo": 0.1, "hi": 1.0})
    with pytest.raises(ValueError, match="unknown key"):
        TheoryConfig.from_file(REPO_ROOT / "configs" / "theory_gmm.toml", samplez=3)
