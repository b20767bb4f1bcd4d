"""ECG heartbeats: simulated with ``neurokit2.ecg_simulate`` (ECGSYN), or read from a local UCR file.

Simulated beats imitate ECG5000: each recording (one synthetic "patient") has one of five morphology
classes, jittered per recording; R peaks are found with ``neurokit2.ecg_peaks``; each beat is the window
``[r - 0.4 RR_prev, r + 0.6 RR_next]`` linearly resampled to ``length`` (140) points and z-normalised
per beat, as the UCR archive stores ECG5000. ECG5000 itself cannot be downloaded here: ``read_ucr``
reads it (or any UCR-format file) from a local path.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sims.artifacts import atomic_write

ECG_LENGTH = 140
BEFORE_R, AFTER_R = 0.4, 0.6  # window around an R peak, in units of the neighbouring RR intervals

# ECGSYN extrema (P, Q, R, S, T): angles ti (degrees), amplitudes ai, widths bi. Class 0 is the ECGSYN
# default; the others are stylised abnormal beats (not clinical models).
_DEFAULT = ((-70.0, -15.0, 0.0, 15.0, 100.0), (1.2, -5.0, 30.0, -7.5, 0.75), (0.25, 0.1, 0.1, 0.1, 0.4))
MORPHOLOGIES: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
    "normal": _DEFAULT,
    "wide_qrs_inverted_t": ((-70.0, -25.0, 0.0, 25.0, 100.0), (0.1, -5.0, 30.0, -12.0, -0.9), (0.25, 0.25, 0.25, 0.25, 0.4)),
    "inverted_t": (_DEFAULT[0], (1.2, -5.0, 30.0, -7.5, -0.75), _DEFAULT[2]),
    "deep_s": ((-70.0, -15.0, 0.0, 20.0, 110.0), (1.2, -3.0, 25.0, -20.0, 0.5), (0.25, 0.1, 0.1, 0.15, 0.45)),
    "tall_p_peaked_t": ((-80.0, -15.0, 0.0, 15.0, 90.0), (3.0, -5.0, 30.0, -7.5, 1.8), (0.3, 0.1, 0.1, 0.1, 0.25)),
}


def znormalise(beats: np.ndarray) -> np.ndarray:
    """Per-beat z-normalisation ``(b - mean(b)) / std(b)`` along the last axis (constant beats -> 0)."""
    mean = beats.mean(axis=-1, keepdims=True)
    std = beats.std(axis=-1, keepdims=True)
    return (beats - mean) / np.where(std > 0, std, 1.0)


def cut_beats(signal: np.ndarray, r_peaks: np.ndarray, length: int = ECG_LENGTH) -> np.ndarray:
    """Cut one window per interior R peak, ``[r - 0.4 RR_prev, r + 0.6 RR_next]``, resampled to ``length``.

    The first and last peaks are dropped (they lack a neighbour). Returns ``(len(r_peaks) - 2, length)``.
    """
    signal = np.asarray(signal, dtype=np.float64)
    r = np.asarray(r_peaks, dtype=np.float64)
    if signal.ndim != 1 or signal.size < 2:
        raise ValueError(f"signal must be a 1D array with at least 2 samples, got shape {signal.shape}")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    if r.ndim != 1 or r.size < 3 or np.any(np.diff(r) <= 0):
        raise ValueError(f"r_peaks must be >= 3 increasing sample indices, got {r.size} peaks")
    start = r[1:-1] - BEFORE_R * (r[1:-1] - r[:-2])
    stop = r[1:-1] + AFTER_R * (r[2:] - r[1:-1])
    grid = start[:, None] + (stop - start)[:, None] * np.linspace(0.0, 1.0, length)[None, :]
    return np.interp(grid, np.arange(signal.size), signal)


def simulate_recording(klass: int, rng: np.random.Generator, duration: float = 31.0, sampling_rate: int = 250,
                       jitter: float = 0.1, noise: float = 0.02) -> np.ndarray:
    """Beats (not yet normalised) of one synthetic patient of morphology ``klass``.

    Heart rate ~ U(55, 95) bpm; ECGSYN amplitudes and widths are jittered by ``exp(N(0, jitter^2))`` and
    angles by ``N(0, (5 jitter)^2)`` degrees, once per recording. ECGSYN integrates ``2^k`` seconds of
    rhythm, so the default duration sits just below 32 s.
    """
    import neurokit2 as nk

    names = list(MORPHOLOGIES)
    if not 0 <= klass < len(names):
        raise ValueError(f"klass must be in [0, {len(names) - 1}], got {klass}")
    ti, ai, bi = (np.asarray(v) for v in MORPHOLOGIES[names[klass]])
    ti = ti + rng.normal(0.0, 5.0 * jitter, 5) * (np.arange(5) != 2)
    ai = ai * np.exp(rng.normal(0.0, jitter, 5))
    bi = bi * np.exp(rng.normal(0.0, jitter, 5))
    heart_rate = float(rng.uniform(55.0, 95.0))
    ecg = nk.ecg_simulate(duration=duration, sampling_rate=sampling_rate, heart_rate=heart_rate,
                          heart_rate_std=2.0, noise=noise, random_state=int(rng.integers(2**31)),
                          ti=tuple(ti), ai=tuple(ai), bi=tuple(bi))
    _, info = nk.ecg_peaks(ecg, sampling_rate=sampling_rate)
    peaks = np.asarray(info["ECG_R_Peaks"])
    return cut_beats(ecg, peaks) if peaks.size >= 3 else np.empty((0, ECG_LENGTH))


def simulate_beats(n: int, seed: int = 0, beats_per_recording: int = 40, jitter: float = 0.1,
                   noise: float = 0.02, cache_dir: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """``n`` z-normalised simulated beats ``(n, 140)`` float32 and their morphology labels ``(n,)`` int64.

    Recordings cycle through the classes (balanced); each contributes at most ``beats_per_recording``
    beats, so the pool spans many patients. Deterministic in ``seed``; cached as ``.npz`` in ``cache_dir``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if beats_per_recording < 1:
        raise ValueError(f"beats_per_recording must be >= 1, got {beats_per_recording}")
    key = dict(n=n, seed=seed, beats_per_recording=beats_per_recording, jitter=jitter, noise=noise, v=1)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"ecg_beats_{digest}.npz"
        if path.exists():
            with np.load(path) as f:
                return torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    rng = np.random.default_rng(seed)
    beats, labels, k = [], [], 0
    while sum(map(len, beats)) < n:
        klass = k % len(MORPHOLOGIES)
        b = simulate_recording(klass, rng, jitter=jitter, noise=noise)[:beats_per_recording]
        beats.append(b)
        labels.append(np.full(len(b), klass))
        k += 1
    x = znormalise(np.concatenate(beats)[:n]).astype(np.float32)
    y = np.concatenate(labels)[:n].astype(np.int64)
    if path is not None:
        atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), x=x, y=y))
    return torch.from_numpy(x), torch.from_numpy(y)


def read_ucr(path: str | os.PathLike, normalise: bool = False) -> tuple[Tensor, Tensor]:
    """Read a UCR-archive text file (one series per line: label then values; comma, tab or space separated).

    Returns ``(x, labels)``: ``x`` float32 of shape ``(n, L)``, labels int64 ``(n,)``. With ``normalise``
    each series is z-normalised (ECG5000 already is).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing UCR text file, got {str(path)!r}")
    rows = [re.split(r"[,\s]+", line.strip()) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"path must hold at least one series, {str(path)!r} is empty")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or lengths.pop() < 2:
        raise ValueError(f"path must hold equal-length rows of a label and >= 1 value, got row lengths {sorted({len(r) for r in rows})}")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"path must hold numbers only: {err}") from None
    if not np.isfinite(table).all():
        raise ValueError("path must hold finite values only (found NaN or inf; variable-length series are not supported)")
    labels, x = table[:, 0], table[:, 1:]
    if np.any(labels != np.round(labels)):
        raise ValueError("path must have integer class labels in its first column")
    if normalise:
        x = znormalise(x)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))
