"""sims.artifacts: file modes follow the umask, folders are swapped in whole, nothing foreign is deleted,
writability is checked before work."""
from __future__ import annotations

import os
import stat
import tempfile

import pytest

from sims.artifacts import atomic_folder, atomic_write_text, check_writable, move_aside


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_and_folders_get_the_umask_modes(tmp_path, umask, mask):
    umask(mask)
    assert mode(atomic_write_text(tmp_path / "a.txt", "x")) == 0o666 & ~mask  # mkstemp alone gives 0600
    with atomic_folder(tmp_path / "set", "done") as folder:
        (folder / "done").write_text("")
    assert mode(tmp_path / "set") == 0o777 & ~mask  # mkdtemp alone gives 0700


def test_atomic_folder_replaces_the_whole_earlier_set(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "done").write_text("old")
    (out / "stale.png").write_text("from an earlier run")
    with atomic_folder(out, "done") as folder:
        assert folder.parent == out.parent and folder != out and (out / "stale.png").exists()  # old set intact meanwhile
        (folder / "done").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries, no old copy left
    assert sorted(p.name for p in out.iterdir()) == ["done"] and (out / "done").read_text() == "new"


def test_atomic_folder_keeps_the_old_set_when_the_work_fails(tmp_path):
    out = tmp_path / "out"
    with atomic_folder(out, "done") as folder:
        (folder / "done").write_text("first")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_folder(out, "done") as folder:
            (folder / "half.csv").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["done"] and (out / "done").read_text() == "first"


def test_atomic_folder_refuses_a_folder_of_other_files_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=f"output folder {tmp_path}.*summary.json"):
        with atomic_folder(tmp_path, "summary.json"):
            raise AssertionError("the body must not run")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with atomic_folder(tmp_path / "empty", "summary.json"):  # a new folder is fine, and so is an empty one
        pass
    with atomic_folder(tmp_path / "empty", "summary.json"):
        pass


def test_move_aside_keeps_every_earlier_folder(tmp_path):
    asides = []
    for k in range(3):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "log.jsonl").write_text(str(k))
        asides.append(move_aside(tmp_path / "run"))
    assert not (tmp_path / "run").exists() and len(set(asides)) == 3
    assert all(p.name.startswith("run.old-") for p in asides)
    assert [p.joinpath("log.jsonl").read_text() for p in asides] == ["0", "1", "2"]


def test_check_writable_names_the_argument_and_creates_nothing(tmp_path, monkeypatch):
    assert check_writable(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert check_writable(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    assert check_writable(tmp_path / "file", "--out")  # an output file, replaced through its folder
    with pytest.raises(ValueError, match=f"--out must be a writable folder, got {tmp_path}/file/sub .*not a folder"):
        check_writable(tmp_path / "file" / "sub", "--out")

    def denied(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # what a read-only folder answers (root ignores modes)
    with pytest.raises(ValueError, match="--out must be a writable folder.*Permission denied"):
        check_writable(tmp_path / "new", "--out")
