"""memdiff image train never clobbers a run: an occupied folder is refused (or moved aside with --overwrite),
and a damaged checkpoint fails resume, naming the file, before anything in the folder is rewritten."""
from __future__ import annotations

import json
import re

import pytest
import torch

from memdiff.cli import main
from sims.training import load_checkpoint

TINY = ["image", "train", "--dataset", "digits", "--n", "16", "--channels", "8", "--channel-mult", "1,2", "--blocks",
        "1", "--attn", "4", "--dropout", "0", "--batch", "8", "--lr-warmup", "0", "--log-every", "1", "--steps", "1",
        "--no-progress", "--device", "cpu"]
MISSING_DATA = ["image", "train", "--dataset", "fashion-mnist", "--data-path", "/nonexistent/fashion-mnist"]


@pytest.fixture
def old_run(tmp_path):
    """A folder holding an earlier run's files (their contents are never read before the refusal)."""
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("run.json", '{"old": true}'), ("log.jsonl", '{"step": 1}\n')):
        (run / name).write_text(text)
    return run


@pytest.mark.parametrize("files", [["run.json"], ["checkpoint.pt"], ["log.jsonl"]])
def test_train_into_an_occupied_folder_is_refused_before_any_work(tmp_path, files):
    run = tmp_path / "run"
    run.mkdir()
    for name in files:
        (run / name).write_text("earlier")
    with pytest.raises(ValueError, match=f"out_dir {run} already holds a run \\({files[0]}\\).*--resume.*--overwrite"):
        main([*MISSING_DATA, "--out", str(run)])  # refused before the (missing) data is read
    assert sorted(p.name for p in run.iterdir()) == files and (run / files[0]).read_text() == "earlier"


def test_overwrite_moves_the_earlier_run_aside(old_run, capsys):
    assert main([*TINY, "--out", str(old_run), "--overwrite"]) == 0
    aside = [p for p in old_run.parent.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and f"moved the earlier run aside to {aside[0]}" in capsys.readouterr().out
    assert (aside[0] / "run.json").read_text() == '{"old": true}' and (aside[0] / "log.jsonl").exists()
    assert json.loads((old_run / "run.json").read_text())["dataset"] == "digits"
    assert [json.loads(line)["step"] for line in (old_run / "log.jsonl").read_text().splitlines()] == [1]


def test_overwrite_with_bad_input_keeps_the_earlier_run_in_place(old_run):
    with pytest.raises(ValueError, match="fashion-mnist"):
        main([*MISSING_DATA, "--out", str(old_run), "--overwrite"])
    assert (old_run / "run.json").read_text() == '{"old": true}'
    assert [p.name for p in old_run.parent.iterdir()] == ["run"]


@pytest.mark.parametrize("damage, reason", [
    ("truncated", "cannot be read (truncated or corrupt?)"), ("garbage", "cannot be read (truncated or corrupt?)"),
    ("empty", "cannot be read (truncated or corrupt?)"),
    ("not a checkpoint", "must be a checkpoint of sims.training.train; it lacks ['data', 'ema', 'optimizer', 'rng']")])
def test_resume_from_a_damaged_checkpoint_fails_naming_it_and_rewrites_nothing(old_run, damage, reason):
    ckpt = old_run / "checkpoint.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "step": 1}, ckpt)
    whole = ckpt.read_bytes()
    ckpt.write_bytes({"truncated": whole[:len(whole) // 2], "garbage": b"\x80\x02garbage" * 50, "empty": b"",
                      "not a checkpoint": whole}[damage])
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {ckpt} {reason}")):
        main([*MISSING_DATA, "--out", str(old_run), "--resume"])  # checked before the (missing) data is read
    assert (old_run / "run.json").read_text() == '{"old": true}' and (old_run / "log.jsonl").read_text() == '{"step": 1}\n'
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {ckpt} {reason}")):
        load_checkpoint(old_run)


def test_resume_and_overwrite_exclude_each_other(old_run, capsys):
    with pytest.raises(SystemExit):
        main([*MISSING_DATA, "--out", str(old_run), "--resume", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err
