"""Bring your own 1D data: ``read_signals`` on files written here in every format (good ones round-trip, bad
ones give one line naming the file), and a tiny grid with ``kind = "file"`` datasets, labelled and not, run
end to end through ``sims.grid.run_grid``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sims.grid import check_config, run_grid
from sims.track1d.cell import _classifier, _data_path, _freeze, prepare, run_cell
from sims.track1d.classifier import Classifier1d
from sims.track1d.encoder import AutoEncoder1d
from sims.track1d.files import read_signals

X = np.round(np.random.default_rng(0).normal(size=(6, 5)), 4).astype(np.float32)  # round: text formats round-trip
X3 = np.random.default_rng(1).normal(size=(6, 2, 5)).astype(np.float32)
LABELS = ["b", "a", "b", "c", "a", "b"]
CLASSES = [1, 0, 1, 2, 0, 1]  # sorted order of the label values


def _rows(x: np.ndarray, sep: str, first: list[str] | None = None) -> str:
    return "".join(sep.join(([first[i]] if first else []) + [repr(float(v)) for v in row]) + "\n"
                   for i, row in enumerate(x))


def _ts(dims: list[np.ndarray], labels: list[str] | None) -> str:
    head = "# a comment\n@problemName t\n@timeStamps false\n@univariate " + ("true" if len(dims) == 1 else "false")
    head += f"\n@classLabel {'true a b c' if labels else 'false'}\n@data\n"
    return head + "".join(":".join([",".join(map(repr, map(float, d[i]))) for d in dims] + ([labels[i]] if labels else []))
                          + "\n" for i in range(len(dims[0])))


def _check(x: torch.Tensor, y: torch.Tensor | None, expected: np.ndarray, classes: list[int] | None) -> None:
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)
    if classes is None:
        assert y is None
    else:
        assert y.dtype == torch.int64 and y.tolist() == classes


def test_npy_npz_round_trip(tmp_path):
    np.save(tmp_path / "a.npy", X)
    _check(*read_signals(tmp_path / "a.npy"), X, None)
    np.save(tmp_path / "c.npy", X3.astype(np.float64))
    _check(*read_signals(str(tmp_path / "c.npy")), X3, None)
    np.savez(tmp_path / "xy.npz", x=X3, y=np.array([3, 7, 3, 9, 7, 3]))
    _check(*read_signals(tmp_path / "xy.npz"), X3, [0, 1, 0, 2, 1, 0])
    np.savez(tmp_path / "one.npz", signals=X)  # the only array; no labels
    _check(*read_signals(tmp_path / "one.npz"), X, None)
    np.savez(tmp_path / "named.npz", signals=X, cls=np.array(LABELS))
    _check(*read_signals(tmp_path / "named.npz", labels="cls"), X, CLASSES)


def test_csv_tsv_ts_round_trip(tmp_path):
    (tmp_path / "plain.csv").write_text(_rows(X, ","))
    _check(*read_signals(tmp_path / "plain.csv"), X, None)
    header = "t0,label,t1,t2,t3,t4\n"  # a label column among the values
    body = "".join(f"{r[0]!r},{lab},{','.join(map(repr, map(float, r[1:])))}\n" for r, lab in zip(X.tolist(), LABELS))
    (tmp_path / "labelled.csv").write_text(header + body)
    _check(*read_signals(tmp_path / "labelled.csv", labels="label"), X, CLASSES)
    (tmp_path / "header.csv").write_text("t0,t1,t2,t3,t4\n" + _rows(X, ","))
    _check(*read_signals(tmp_path / "header.csv"), X, None)  # a header of names is skipped
    (tmp_path / "ucr.tsv").write_text(_rows(X, "\t", ["1", "10", "1", "2", "10", "2"]))
    _check(*read_signals(tmp_path / "ucr.tsv"), X, [0, 2, 0, 1, 2, 1])  # numeric labels sort as numbers
    (tmp_path / "uni.ts").write_text(_ts([X], LABELS))
    _check(*read_signals(tmp_path / "uni.ts"), X, CLASSES)
    (tmp_path / "multi.ts").write_text(_ts([X3[:, 0], X3[:, 1]], None))
    _check(*read_signals(tmp_path / "multi.ts"), X3, None)


@pytest.mark.parametrize("name, content, labels, match", [
    ("short.csv", "1,2,3\n4,5\n", None, r"short\.csv': item 1 has 2 of 3 values \(ragged rows"),
    ("empty_field.csv", "1,2,3\n4,,6\n", None, r"item 1 has 2 of 3 values"),
    ("long.csv", "1,2\n3,4,5\n", None, r"long\.csv': ragged rows \(.*Expected 2 fields"),
    ("short.tsv", "1\t2\t3\n2\t5\n", None, r"short\.tsv': item 1 has 1 of 2 values"),
    ("ragged.ts", "@classLabel false\n@data\n1,2,3\n4,5\n", None, r"ragged\.ts': item 1 has 2 of 3 values"),
    ("dims.ts", "@classLabel false\n@data\n1,2,3:4,5\n1,2,3:4,5\n", None, r"dims\.ts': dimensions of different lengths"),
    ("nan.csv", "1,2,3\n4,nan,6\n", None, r"nan\.csv': item 1 holds NaN or inf"),
    ("inf.tsv", "1\t2\t3\n2\t5\tinf\n", None, r"inf\.tsv': item 1 holds NaN or inf"),
    ("missing.ts", "@classLabel false\n@data\n1,2,3\n4,?,6\n", None, r"missing\.ts': item 1 holds NaN"),
    ("word.csv", "1,2,3\n4,x,6\n", None, r"word\.csv': item 1, value 1 is 'x'; values must be numbers"),
    ("nolabel.csv", "a,b,label\n1,2,x\n3,4,\n", "label", r"nolabel\.csv': item 1 has no label"),
    ("wrongcol.csv", "a,b,c\n1,2,3\n", "label", r"wrongcol\.csv': labels 'label' is not a column"),
    ("notags.ts", "1,2,3\n", None, r"notags\.ts' has no '@data' line"),
    ("stamps.ts", "@timeStamps true\n@data\n(1,2)\n", None, r"stamps\.ts' has @timeStamps true"),
    ("x.txt", "1,2,3\n", None, r"x\.txt' must end in one of \.npy, \.npz, \.csv, \.tsv, \.ts, got '\.txt'"),
    ("x.tsv", "1\t2\n", "label", r"labels must be None or the name of a label column .*/x\.tsv' is \.tsv"),
    ("empty.csv", "", None, r"empty\.csv' is empty"),
])
def test_bad_text_files_are_one_line_errors_naming_the_file(tmp_path, name, content, labels, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        read_signals(tmp_path / name, labels)
    assert "\n" not in str(e.value)


def test_bad_array_files_and_a_missing_file(tmp_path):
    cases = []
    np.save(tmp_path / "ragged.npy", np.array([np.zeros(3), np.zeros(2)], dtype=object), allow_pickle=True)
    cases.append(("ragged.npy", None, r"ragged\.npy' holds an object array \(ragged rows\?\)"))
    np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0]]))
    cases.append(("nan.npy", None, r"nan\.npy': item 1 holds NaN or inf"))
    np.save(tmp_path / "flat.npy", np.zeros(5))
    cases.append(("flat.npy", None, r"flat\.npy' must hold numbers of shape \(N, L\) or \(N, C, L\)"))
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    cases.append(("x.npy", "y", r"labels must be None"))
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3)), b=np.zeros((2, 3)))
    cases.append(("two.npz", None, r"two\.npz' must hold the signals under key 'x'.*\['a', 'b'\]"))
    cases.append(("two.npz", "cls", r"two\.npz' has no array 'cls' \(labels\)"))
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 4)), y=np.arange(2))
    cases.append(("short.npz", None, r"short\.npz': labels must hold one value per item, shape \(3,\)"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    cases.append(("junk.npz", None, r"junk\.npz' cannot be read as \.npz"))
    cases.append(("absent.npy", None, r"absent\.npy' does not exist \(path must name an existing \.npy file\)"))
    for name, labels, match in cases:
        with pytest.raises(ValueError, match=match) as e:
            read_signals(tmp_path / name, labels)
        assert "\n" not in str(e.value), name


def _grid(datasets: list[dict]) -> dict:
    return {"run": {"seeds": [0]},
            "train": {"arch": "mlp", "width": 16, "depth": 1, "steps": 20, "batch_size": 8},
            "eval": {"num_samples": 16, "sampler_steps": 4, "readout_sigmas": [0.1, 1.0], "readout_items": 8,
                     "classifier_steps": 20},
            "datasets": datasets, "methods": [{"name": "edm", "loss": "edm"}]}


def _waves(n: int, length: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, length)
    y = np.arange(n) % 2
    s = np.sin(t + rng.uniform(0, 2 * np.pi, (n, 1)))
    return np.where(y[:, None] == 1, np.sign(s), s) + 0.1 * rng.normal(size=(n, length)), y


def test_a_grid_of_file_datasets_trains_end_to_end(tmp_path):
    x, y = _waves(60)
    np.save(tmp_path / "unlabelled.npy", x)
    (tmp_path / "labelled.tsv").write_text(_rows(x, "\t", [str(v) for v in y]))
    sizes = {"source": 20, "test": 16, "pool": 24}
    config = _grid([{"name": "free", "kind": "file", "path": str(tmp_path / "unlabelled.npy"), "n": [8], **sizes},
                    {"name": "ucr", "kind": "file", "path": str(tmp_path / "labelled.tsv"), "n": [8], **sizes}])
    out = tmp_path / "out"
    summary = run_grid(config, out, run_cell, prepare=prepare, log=lambda _: None)
    assert summary["done"] == 2
    for cell in ("free-n8-edm-s0", "ucr-n8-edm-s0"):
        metrics = json.loads((out / "cells" / f"{cell}.json").read_text())["metrics"]
        assert np.isfinite(metrics["fd"]) and np.isfinite(metrics["train_loss"])
    cache = out / "cache"
    assert len(list(cache.glob("autoencoder1d_*.pt"))) == 1  # the unlabelled pool's feature space
    assert len(list(cache.glob("classifier1d_*.pt"))) == 1  # the labelled pool's


@pytest.mark.parametrize("labels, net", [(np.zeros(30, dtype=int), AutoEncoder1d), (np.arange(30) % 3, Classifier1d)])
def test_a_pool_of_one_class_falls_back_to_the_label_free_features(tmp_path, labels, net):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(30, 8)), y=labels)
    config = _grid([{"name": "d", "kind": "file", "path": str(tmp_path / "d.npz"), "n": [4],
                     "source": 10, "test": 10, "pool": 10}])
    config["eval"]["classifier_steps"] = 2
    assert isinstance(_classifier(str(tmp_path), "d", _freeze(config)), net)


def test_the_data_cache_follows_the_file_content(tmp_path):
    path = tmp_path / "d.npy"
    spec = {"name": "d", "kind": "file", "path": str(path), "source": 2, "test": 2, "pool": 2}
    np.save(path, np.zeros((6, 4)))
    first = _data_path(tmp_path, spec)
    assert _data_path(tmp_path, spec) == first
    np.save(path, np.ones((6, 4)))  # edited in place: a new cache entry
    assert _data_path(tmp_path, spec) != first
    assert _data_path(tmp_path, {**spec, "labels": "y"}) != _data_path(tmp_path, spec)


def test_too_few_items_for_the_requested_sizes_is_one_line_before_any_cell(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((30, 8)))
    config = _grid([{"name": "d", "kind": "file", "path": str(tmp_path / "d.npy"), "n": [4],
                     "source": 20, "test": 8, "pool": 8}])
    with pytest.raises(ValueError, match=r"dataset 'd': source \+ test \+ pool = 36 items, but data file '.*d\.npy' "
                                         r"holds 30") as e:
        run_grid(config, tmp_path / "out", run_cell, prepare=prepare, log=lambda _: None)
    assert "\n" not in str(e.value) and not (tmp_path / "out" / "cells").exists()


@pytest.mark.parametrize("entry, match", [
    ({"kind": "file"}, r"dataset 'd': datasets\.path must be given for kind 'file'"),
    ({"kind": "gmm", "path": "x.npy"}, r"dataset 'd': datasets\.path and datasets\.labels apply to kind 'file' only"),
    ({"kind": "file", "path": ""}, r"datasets\.path must be a path to a \.npy"),
    ({"kind": "file", "path": "x.csv", "labels": 3}, r"datasets\.labels must be the name"),
])
def test_the_config_checks_the_file_keys(entry, match):
    with pytest.raises(ValueError, match=match):
        check_config(_grid([{"name": "d", "n": [4], "source": 8, "test": 8, "pool": 8, **entry}]))
