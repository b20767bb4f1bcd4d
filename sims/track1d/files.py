"""Bring your own 1D data: signals, and class labels where the file has them, read from one file.

``read_signals(path, labels=None) -> (x, y)``: ``x`` float32 of shape ``(N, L)`` or ``(N, C, L)``; ``y`` int64
``(N,)`` class indices ``0..K-1`` (the file's label values in sorted order, numbers sorted as numbers) or
``None``. The format follows the extension:

* ``.npy``: the array itself, ``(N, L)`` or ``(N, C, L)``, numeric; no labels.
* ``.npz``: the signals under key ``"x"`` (or the file's only array besides the labels); the labels under the
  key ``labels`` names, by default ``"y"`` where the file has it.
* ``.csv``: comma-separated, one item per row, ``(N, L)``. The first row is a header when any of its fields
  is not a number; ``labels`` names a label column of that header (so a header is required then), which is
  taken out of the signal.
* ``.tsv`` (UCR archive): tab-separated, no header, the first column the class label and the rest the
  series; the labels are always used.
* ``.ts`` (sktime / UEA-UCR format): ``#`` comments and ``@`` header lines up to ``@data``, then one item per
  line, its dimensions separated by ``:`` and the values of a dimension by ``,``; with ``@classLabel true``
  the last field is the class label; ``@targetLabel true`` (a regression target) drops the last field;
  univariate files give ``(N, L)``, multivariate ones ``(N, C, L)``; ``@timeStamps true`` is refused.

``labels`` applies to ``.csv`` and ``.npz`` files only. Values are used as they are (no standardisation).
Every bad input is a one-line ``ValueError`` naming the file: a missing file, an unknown extension, ragged
rows (items of different lengths or dimension counts, empty fields), non-numeric values, non-finite values
(NaN, inf, UCR's ``?``: missing values and NaN-padded variable-length series are not supported), a label
column or array that is not there, an item without a label, a wrong shape. ``file_digest(path)`` is the
SHA-256 of the file's bytes, for caches keyed by content.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".ts")
LABELLED_BY_NAME = (".csv", ".npz")  # the formats where ``labels`` names a column or an array
Read = tuple[np.ndarray, np.ndarray | None]  # signals and label values as read


def _existing(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` when it names an existing file with a known extension."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise ValueError(f"data file {str(p)!r} must end in one of {', '.join(SUFFIXES)}, got {p.suffix or 'no extension'!r}")
    if not p.is_file():
        raise ValueError(f"data file {str(p)!r} does not exist (path must name an existing {p.suffix} file)")
    return p


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the bytes of the data file ``path`` (checked as ``read_signals`` checks it)."""
    h = hashlib.sha256()
    with _existing(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _numbers(cells: np.ndarray, p: Path) -> np.ndarray:
    """A 2D array of strings as float64; an empty field means a ragged row, a non-number is named."""
    empty = cells == ""
    if empty.any():
        i = int(np.argwhere(empty)[0][0])
        raise ValueError(f"data file {str(p)!r}: item {i} has {int((~empty[i]).sum())} of {cells.shape[1]} values "
                         f"(ragged rows or empty fields); every item must have the same length")
    try:
        return cells.astype(np.float64)
    except ValueError:
        i, j = np.argwhere(~np.vectorize(_is_number, otypes=[bool])(cells))[0]
        raise ValueError(f"data file {str(p)!r}: item {i}, value {j} is {str(cells[i, j])!r}; values must be numbers") from None


def _table(p: Path, sep: str) -> np.ndarray:
    """The fields of a delimited text file as a 2D array of strings (empty strings for missing fields)."""
    try:
        frame = pd.read_csv(p, sep=sep, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"data file {str(p)!r} is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"data file {str(p)!r}: ragged rows ({str(e).strip()})") from None
    return frame.to_numpy(str)


def _arrays(p: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` (under key ``"x"``) or ``.npz`` file, without unpickling anything."""
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        why = ("holds an object array (ragged rows?)" if "Object arrays" in str(e)
               else f"cannot be read as {p.suffix} ({str(e).strip()})")
        raise ValueError(f"data file {str(p)!r} {why}; expected a numeric (N, L) or (N, C, L) array") from None


def _npy(p: Path, labels: str | None) -> Read:
    return _arrays(p)["x"], None


def _npz(p: Path, labels: str | None) -> Read:
    arrays = _arrays(p)
    key = labels or "y"
    if labels is not None and labels not in arrays:
        raise ValueError(f"data file {str(p)!r} has no array {labels!r} (labels); it holds {sorted(arrays)}")
    names = ["x"] if "x" in arrays else [k for k in arrays if k != key]
    if len(names) != 1:
        raise ValueError(f"data file {str(p)!r} must hold the signals under key 'x' (or as its only array besides "
                         f"the labels {key!r}); it holds {sorted(arrays)}")
    return arrays[names[0]], arrays.get(key)


def _csv(p: Path, labels: str | None) -> Read:
    cells = _table(p, ",")
    if labels is None and all(_is_number(c) for c in cells[0] if c):
        return _numbers(cells, p), None
    header, cells = list(cells[0]), cells[1:]
    if labels is None:
        return _numbers(cells, p), None
    if labels not in header:
        raise ValueError(f"data file {str(p)!r}: labels {labels!r} is not a column of its header row "
                         f"{header[:8] + (['...'] if len(header) > 8 else [])}")
    col = header.index(labels)
    return _numbers(np.delete(cells, col, axis=1), p), cells[:, col]


def _tsv(p: Path, labels: str | None) -> Read:
    cells = _table(p, "\t")
    return _numbers(cells[:, 1:], p), cells[:, 0]


def _ts(p: Path, labels: str | None) -> Read:
    lines = [ln.strip() for ln in p.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    start = next((i for i, ln in enumerate(lines) if ln.lower() == "@data"), None)
    if start is None:
        raise ValueError(f"data file {str(p)!r} has no '@data' line; expected the sktime .ts format")
    tags = {}
    for ln in lines[:start]:
        key, _, value = ln[1:].partition(" ")
        tags[key.lower()] = value.strip().lower().startswith("true")
    if tags.get("timestamps"):
        raise ValueError(f"data file {str(p)!r} has @timeStamps true; only equally spaced series without time "
                         f"stamps are supported")
    if start + 1 == len(lines):
        raise ValueError(f"data file {str(p)!r} has no items after '@data'")
    fields = pd.Series(lines[start + 1:], dtype=str).str.split(":", expand=True).fillna("").to_numpy(str)
    tail = int(bool(tags.get("classlabel") or tags.get("targetlabel")))
    dims = [pd.Series(fields[:, c], dtype=str).str.split(",", expand=True).fillna("").to_numpy(str)
            for c in range(fields.shape[1] - tail)]
    if len({d.shape[1] for d in dims}) > 1:
        raise ValueError(f"data file {str(p)!r}: dimensions of different lengths {[d.shape[1] for d in dims]}; "
                         f"every dimension of every item must have the same length")
    x = np.stack([_numbers(np.where(d == "?", "nan", d), p) for d in dims], axis=1)
    return (x[:, 0] if x.shape[1] == 1 else x), (fields[:, -1] if tags.get("classlabel") else None)


READERS: dict[str, Callable[[Path, str | None], Read]] = {
    ".npy": _npy, ".npz": _npz, ".csv": _csv, ".tsv": _tsv, ".ts": _ts}


def _signals(a: np.ndarray, p: Path) -> Tensor:
    """A numeric ``(N, L)`` or ``(N, C, L)`` array of finite values as float32."""
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or a.ndim not in (2, 3) or 0 in a.shape:
        raise ValueError(f"data file {str(p)!r} must hold numbers of shape (N, L) or (N, C, L) with N, C, L >= 1, "
                         f"got {a.dtype} of shape {a.shape}")
    x = a.astype(np.float32)
    finite = np.isfinite(x).reshape(x.shape[0], -1).all(1)
    if not finite.all():
        raise ValueError(f"data file {str(p)!r}: item {int(np.argmin(finite))} holds NaN or inf (or a value beyond "
                         f"float32); values must be finite (missing values and NaN-padded series are not supported)")
    return torch.from_numpy(x)


def _classes(y: np.ndarray, p: Path, n: int) -> Tensor:
    """Label values as class indices ``0..K-1`` in sorted order (strings that are all numbers sort as numbers)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"data file {str(p)!r}: labels must hold one value per item, shape ({n},), got {y.shape}")
    if y.dtype.kind == "U":
        if (y == "").any():
            raise ValueError(f"data file {str(p)!r}: item {int(np.argmax(y == ''))} has no label")
        if all(_is_number(v) for v in y):
            y = y.astype(np.float64)
    elif y.dtype.kind not in "biuf":
        raise ValueError(f"data file {str(p)!r}: labels must be numbers or strings, got {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"data file {str(p)!r}: item {int(np.argmin(np.isfinite(y)))} has a NaN or inf label")
    return torch.from_numpy(np.unique(y, return_inverse=True)[1].reshape(-1).astype(np.int64))


def read_signals(path: str | os.PathLike, labels: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Signals ``(N, L)`` or ``(N, C, L)`` float32 and class labels ``(N,)`` int64 or ``None`` from a ``.npy``,
    ``.npz``, ``.csv``, UCR ``.tsv`` or sktime ``.ts`` file (the rules are in the module docstring); ``labels``
    names the label column (``.csv``) or array (``.npz``, default ``"y"``). ``ValueError`` naming the file for
    any bad input."""
    p = _existing(path)
    suffix = p.suffix.lower()
    if labels is not None and (not isinstance(labels, str) or suffix not in LABELLED_BY_NAME):
        raise ValueError(f"labels must be None or the name of a label column (.csv) or array (.npz); data file "
                         f"{str(p)!r} is {suffix}, got labels={labels!r}")
    a, y = READERS[suffix](p, labels)
    x = _signals(a, p)
    return x, None if y is None else _classes(y, p, x.shape[0])
