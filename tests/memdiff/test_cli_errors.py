"""The memdiff command's errors: one line and exit status 2 (a traceback only with --debug), unknown commands
with the nearest names, an unwritable --out and an oversized theory run refused before any work."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import pytest

from memdiff.cli import entry, main
from memdiff.demo import DEMO_CONFIGS, FAST
from memdiff.figs_theory import PAPER_CONFIGS
from memdiff.theory_run import MEMORY_LIMIT, TIME_LIMIT, TheoryConfig, check_cost, estimate_cost
from sims.artifacts import REPO_ROOT
from sims.configs import read_config_file


def exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        entry(argv)
    return done.value.code


def test_a_user_error_is_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEMDIFF_DEBUG", raising=False)
    assert exit_status(["theory", "--n", "1", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == "memdiff: error: n must be an integer >= 2, got 1\n" and captured.out == ""


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMDIFF_DEBUG", raising=False)
    with pytest.raises(ValueError, match="n must be"):
        entry(["--debug", "theory", "--n", "1", "--out", str(tmp_path)])
    monkeypatch.setenv("MEMDIFF_DEBUG", "1")
    with pytest.raises(ValueError, match="n must be"):
        entry(["theory", "--n", "1", "--out", str(tmp_path)])


def test_a_multi_line_message_still_prints_as_one_line(capsys, monkeypatch):
    monkeypatch.delenv("MEMDIFF_DEBUG", raising=False)

    def run(args):
        raise OSError("disk full\nwhile writing x.csv")

    monkeypatch.setattr(importlib.import_module("memdiff.notebooks"), "run", run)
    assert exit_status(["notebooks"]) == 2
    assert capsys.readouterr().err == "memdiff: error: disk full while writing x.csv\n"


@pytest.mark.parametrize("argv, line", [
    (["nosuch"], "memdiff: error: unknown command 'nosuch'"),
    (["theroy", "--n", "3"], "memdiff: error: unknown command 'theroy'; did you mean 'theory'?"),
    (["figs"], "memdiff: error: unknown command 'figs'; did you mean 'figs theory', 'figs sim', 'figs confirm', "
               "'figs curve', 'figs image' or 'figs explain'?"),
    (["figs", "thoery"], "memdiff: error: unknown command 'figs thoery'; did you mean 'figs theory'?")])
def test_an_unknown_command_names_it_with_the_nearest_and_the_usage(capsys, argv, line):
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == line and "usage: memdiff [--debug] COMMAND" in err and "figs theory" in err


def test_help_and_no_command_print_the_usage(capsys):
    assert main([]) == 0 and main(["--help"]) == 0
    assert capsys.readouterr().out.count("usage: memdiff") == 2


@pytest.mark.parametrize("command, module", [
    (["demo"], "memdiff.demo"), (["theory"], "memdiff.theory_run"), (["figs", "theory"], "memdiff.figs_theory"),
    (["figs", "sim"], "memdiff.figs_sim"), (["image", "train"], "memdiff.image")])
def test_an_unwritable_out_fails_before_the_command_runs(tmp_path, monkeypatch, command, module):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(importlib.import_module(module), "run", lambda args: pytest.fail("the command ran"))
    with pytest.raises(ValueError, match=f"--out must be a writable folder, got {tmp_path}/file/out"):
        main([*command, "--out", str(tmp_path / "file" / "out")])


@pytest.mark.parametrize("data", ["gmm", "mnist1d"])
def test_an_oversized_theory_run_is_refused_at_once(tmp_path, data):
    out = tmp_path / "out"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"must fit 8 GiB and 12 h: estimated \d+.* GiB .*--force"):
        main(["theory", "--data", data, "--n", "10000000", "--out", str(out)])
    assert time.perf_counter() - start < 1.0 and not out.exists()


def test_force_lifts_the_size_limit_and_shipped_configs_fit_it():
    big = TheoryConfig(n=10_000_000)
    memory, seconds = estimate_cost(big)
    assert memory > MEMORY_LIMIT
    check_cost(big, force=True)
    fast = read_config_file(FAST)
    shipped = [TheoryConfig.from_file(p) for p in (*DEMO_CONFIGS.values(), *PAPER_CONFIGS.values())]
    shipped += [TheoryConfig.from_file(p, **fast) for p in DEMO_CONFIGS.values()]
    for cfg in shipped + [TheoryConfig(data=d) for d in ("gmm", "mnist1d", "digits")]:
        memory, seconds = estimate_cost(cfg)
        assert memory < MEMORY_LIMIT / 8 and seconds < TIME_LIMIT / 10, cfg
    assert estimate_cost(TheoryConfig(data="digits", n=100, pool=10**9))[0] < MEMORY_LIMIT  # digits caps the pool


def test_the_console_commands_print_one_line(tmp_path):
    """``memdiff`` (pyproject's script) and ``python -m memdiff.cli`` (torchrun) both go through entry()."""
    scripts = read_config_file(REPO_ROOT / "pyproject.toml")["project"]["scripts"]
    assert scripts["memdiff"] == "memdiff.cli:entry"
    env = {k: v for k, v in os.environ.items() if k != "MEMDIFF_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "memdiff.cli", "theory", "--n", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stderr == "memdiff: error: n must be an integer >= 2, got 1\n"
