"""Cell files are validated on read: schema and checksum written, a damaged file named and its cell run again,
files written before the schema still accepted."""
from __future__ import annotations

import hashlib
import json

import pytest

from sims.grid import Cell, cell_path, read_cell, run_grid

SIZES = {"source": 40, "test": 20, "pool": 50}
CONFIG = {"run": {"seeds": [0]}, "train": {}, "eval": {"readout_sigmas": [1.0]},
          "datasets": [{"name": "a", "kind": "gmm", "n": [10, 20], **SIZES}], "methods": [{"name": "m1"}]}
CELL = Cell("a", 10, "m1", 0)


def runner(config, cell, out):
    return {"cell": {"id": cell.id}, "value": cell.n * 10 + cell.seed, "nan": float("nan"), "pair": (1, 2)}


def _payload(result):
    return {k: v for k, v in result.items() if k not in ("wall_s", "sha256")}


def test_each_cell_file_carries_its_schema_and_the_sha256_of_the_rest(tmp_path):
    run_grid(CONFIG, tmp_path, runner, log=lambda _: None)
    result = json.loads(cell_path(tmp_path, CELL).read_text())
    rest = {k: v for k, v in result.items() if k != "sha256"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    assert result["schema"] == 1 and result["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert result["value"] == 100 and result["pair"] == [1, 2] and result["nan"] != result["nan"]
    assert read_cell(cell_path(tmp_path, CELL)) == json.loads(cell_path(tmp_path, CELL).read_text())


def _truncate(text):
    return text[: len(text) // 2]


def _edit_value(text):
    return text.replace('"value": 100', '"value": 101')


def _schema_2(text):
    return text.replace('"schema": 1', '"schema": 2')


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "is not valid JSON"),
    (lambda text: "", "is empty"),
    (lambda text: "{}", r"has no schema and lacks \['cell', 'metrics', 'readout'\]"),
    (lambda text: "[1, 2]", "must hold a JSON object"),
    (lambda text: "\x00\x01binary", "is not valid JSON"),
    (_schema_2, "has schema 2, expected 1"),
    (_edit_value, "does not match its sha256 checksum"),
])
def test_a_damaged_cell_file_is_named_in_one_line_and_its_cell_runs_again(tmp_path, damage, reason):
    run_grid(CONFIG, tmp_path, runner, log=lambda _: None)
    path = cell_path(tmp_path, CELL)
    good = read_cell(path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match=f"cell file .*{CELL.id}.json {reason}"):
        read_cell(path)
    lines = []
    s = run_grid(CONFIG, tmp_path, runner, log=lines.append)
    assert s == {**s, "done": 1, "skipped": 1}
    named = [line for line in lines if f"{CELL.id}.json" in line]
    assert len(named) == 1 and "runs that cell again" in named[0]
    assert _payload(read_cell(path)) == _payload(good)


def test_a_cell_file_without_schema_is_accepted_with_the_result_keys(tmp_path):
    legacy = tmp_path / "old.json"
    old = {"cell": {"id": "x"}, "metrics": {"copy_share": 0.1}, "readout": {"sigma": [1.0]}, "wall_s": 3.0}
    legacy.write_text(json.dumps(old))
    assert read_cell(legacy) == old
    legacy.write_text(json.dumps({k: v for k, v in old.items() if k != "readout"}))
    with pytest.raises(ValueError, match=r"old.json has no schema and lacks \['readout'\]"):
        read_cell(legacy)
