"""ECG beats: windowing against a ramp (exact), simulation invariants, caching, and the UCR reader."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sims.track1d.ecg import ECG_LENGTH, MORPHOLOGIES, cut_beats, read_ucr, simulate_beats, znormalise


def test_cut_beats_windows_are_exact_on_a_ramp():
    # On the ramp s[i] = i, a resampled window equals its own sample positions.
    signal = np.arange(1000, dtype=float)
    r = np.array([100.0, 300.0, 550.0, 700.0])
    beats = cut_beats(signal, r, length=11)
    assert beats.shape == (2, 11)
    for k, (prev, cur, nxt) in enumerate([(100, 300, 550), (300, 550, 700)]):
        expect = np.linspace(cur - 0.4 * (cur - prev), cur + 0.6 * (nxt - cur), 11)
        np.testing.assert_allclose(beats[k], expect, atol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(signal=np.zeros((2, 5)), r_peaks=np.array([0, 1, 2])), "signal"),
    (dict(signal=np.zeros(50), r_peaks=np.array([1, 2])), "r_peaks"),
    (dict(signal=np.zeros(50), r_peaks=np.array([5, 3, 9])), "r_peaks"),
    (dict(signal=np.zeros(50), r_peaks=np.array([1, 5, 9]), length=1), "length"),
])
def test_cut_beats_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cut_beats(**kwargs)


def test_znormalise_gives_zero_mean_unit_std_and_keeps_constants_finite():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(7, 30))
    z = znormalise(x)
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(znormalise(np.ones((2, 4))), 0.0)


def test_simulated_beats_are_normalised_labelled_deterministic_and_cached(tmp_path):
    x, y = simulate_beats(30, seed=3, beats_per_recording=6, cache_dir=tmp_path)
    assert x.shape == (30, ECG_LENGTH) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x.mean(1), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(1, unbiased=False), torch.ones(30), atol=1e-4, rtol=0)
    # balanced classes: recordings cycle through the morphologies
    assert set(y.tolist()) == set(range(len(MORPHOLOGIES)))
    # R peak of a normal beat sits where the window puts it: 0.4 of the way in
    normal = x[y == 0].mean(0)
    assert abs(int(normal.argmax()) - round(0.4 * (ECG_LENGTH - 1))) <= 4
    assert len(list(tmp_path.glob("ecg_beats_*.npz"))) == 1
    x2, y2 = simulate_beats(30, seed=3, beats_per_recording=6, cache_dir=tmp_path)  # from the cache
    torch.testing.assert_close(x2, x)
    assert torch.equal(y2, y)
    x3, _ = simulate_beats(6, seed=3, beats_per_recording=6)  # recomputed: the first recording again
    torch.testing.assert_close(x3, x[:6])
    x4, _ = simulate_beats(6, seed=4, beats_per_recording=6)
    assert not torch.allclose(x4, x[:6])


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=5, beats_per_recording=0)])
def test_simulate_beats_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="n must|beats_per_recording"):
        simulate_beats(**bad)


@pytest.mark.parametrize("sep", [",", "\t", "  "])
def test_read_ucr_round_trips_each_separator(tmp_path, sep):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(5, 9))
    labels = np.array([1, 2, 1, 5, 3])
    lines = [sep.join([f"{float(lab):.7e}"] + [f"{v:.7e}" for v in row]) for lab, row in zip(labels, values)]
    path = tmp_path / "ECG_TINY_TRAIN.txt"
    path.write_text(("  " if sep == "  " else "") + "\n".join(lines) + "\n\n")
    x, y = read_ucr(path)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x.numpy(), values, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), labels)
    xn, _ = read_ucr(path, normalise=True)
    np.testing.assert_allclose(xn.numpy(), znormalise(values), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("1,0.5,0.2\n2,0.1\n", "equal-length"),
    ("1\n2\n", "equal-length"),
    ("1,0.5,nan\n", "finite"),
    ("1,0.5,abc\n", "numbers"),
    ("1.5,0.5,0.2\n", "integer"),
])
def test_read_ucr_rejects_malformed_files(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_ucr(path)


def test_read_ucr_rejects_missing_path(tmp_path):
    with pytest.raises(ValueError, match="path"):
        read_ucr(tmp_path / "nope.txt")
