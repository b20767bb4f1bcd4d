"""The house rule: layers import only downward and no module import closes a circle.

theory (the maths) < sims (the engine, then its 1D track ``sims.track1d``) < image_track < memdiff (the command
layer). Every import is read from the source with ``ast`` (function-local ones included), so a circle hidden
by a late import fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("theory", "sims", "sims.track1d", "image_track", "memdiff")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("theory", "sims", "image_track", "memdiff") for p in (ROOT / top).rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """First-party modules ``path`` imports (``from pkg import sub`` counts as ``pkg.sub`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (write the absolute module name, so layers stay visible)"
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in ("theory", "sims", "image_track", "memdiff")}
    return found


def layer(module: str) -> int:
    return max(i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + "."))


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imported(p, set(mods)) for m, p in mods.items()}


def test_every_import_runs_down_or_sideways():
    upward = [f"{m} imports {d}" for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert not upward, "imports up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(d):] + [m, d]))
            if d in g and d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])


def test_only_the_command_layer_reads_argparse():
    for m, p in modules().items():
        if layer(m) < LAYERS.index("memdiff"):
            tree = ast.parse(p.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert "argparse" not in names, f"{m} imports argparse: only the command layer may"


def test_the_checker_catches_an_upward_import_and_a_circle(tmp_path):
    """Calibration: the rules fail on a planted violation (so passing means something)."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from memdiff.cli import main\n")
    deps = imported(bad, set(modules()))
    assert "memdiff.cli" in deps and layer("memdiff.cli") > layer("theory.denoiser")
    bad.write_text("from sims import losses\n")
    assert imported(bad, set(modules())) == {"sims.losses"}
