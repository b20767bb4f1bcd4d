"""SIGINT and SIGTERM stop a grid within seconds, end its workers, start no queued cell and keep the finished
cells; ``memdiff sim`` exits with 130 and the same command resumes to the results of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grid_slow_runner import CONFIG_TOML, slow_runner
from sims.artifacts import REPO_ROOT
from sims.grid import GridInterrupted, load_config, read_cell, run_grid

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals; process states from /proc")


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid``."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _results(out: Path) -> dict[str, dict]:
    """The runner's outputs per cell file (the run-dependent ``wall_s`` and the checksum left out)."""
    return {f.name: {k: v for k, v in read_cell(f).items() if k not in ("wall_s", "sha256")}
            for f in sorted((out / "cells").glob("*.json"))}


@pytest.mark.slow
def test_sigint_ends_a_two_worker_grid_and_the_same_command_resumes_it(tmp_path, monkeypatch):
    config = tmp_path / "grid.toml"
    config.write_text(CONFIG_TOML)
    out = tmp_path / "out"
    command = [sys.executable, "-c", "import grid_slow_runner; grid_slow_runner.main()",
               "--config", str(config), "--out", str(out), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO_ROOT)]), "OMP_NUM_THREADS": "1",
           "GRID_SLOW_RUNNER_SLEEP": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((out / "cells").glob("*.json")):  # the first cell finished
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 10
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert "interrupted by SIGINT" in lines[-1] and "run the same command again to resume" in lines[-1]
    started = {p.stem: int(p.read_text()) for p in (out / "started").glob("*.pid")}
    done = set(_results(out))
    assert workers >= set(started.values()) and len(workers) >= 2
    deadline = time.monotonic() + 5  # the workers were ended (and reaped) before the command exited
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_running, workers))
    assert 1 <= len(done) < 6 and len(started) <= len(done) + 2  # no queued cell started after the interrupt
    time.sleep(0.5)
    assert set(_results(out)) == done  # and nothing is still writing

    again = subprocess.run(command, env={**env, "GRID_SLOW_RUNNER_SLEEP": "0"}, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} already done, {6 - len(done)} to run" in again.stdout
    monkeypatch.setenv("GRID_SLOW_RUNNER_SLEEP", "0")
    run_grid(load_config(config), tmp_path / "uninterrupted", slow_runner, log=lambda _: None)
    assert _results(out) == _results(tmp_path / "uninterrupted") and len(_results(out)) == 6


def test_sigterm_stops_a_serial_grid_keeps_the_finished_cells_and_restores_the_handler(tmp_path, monkeypatch):
    class NotHandled(Exception):
        pass

    def fallback(signum, frame):  # were SIGTERM not handled by run_grid, this fails the test (instead of killing it)
        raise NotHandled

    def terminating_runner(config, cell, out):
        if cell.seed == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler's exception
        return slow_runner(config, cell, out)

    monkeypatch.setenv("GRID_SLOW_RUNNER_SLEEP", "0")
    config = tmp_path / "grid.toml"
    config.write_text(CONFIG_TOML)
    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        with pytest.raises(GridInterrupted, match="SIGTERM after 2 of 6 cells; the finished cells are kept"):
            run_grid(load_config(config), tmp_path / "out", terminating_runner, log=lambda _: None)
        assert signal.getsignal(signal.SIGTERM) is fallback
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(_results(tmp_path / "out")) == ["d-n10-m1-s0.json", "d-n10-m2-s0.json"]
