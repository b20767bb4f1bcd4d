"""Atomic writes and provenance sidecars: nothing is ever written half, nothing is clobbered unasked, every
figure says how it was made. Files get the modes of a plain ``open`` (``0666 & ~umask``), folders those of a
plain ``mkdir`` (``0777 & ~umask``), although their temporaries are made private by ``tempfile``."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file in the target folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | os.PathLike, name: str = "path") -> Path:
    """Raise a ``ValueError`` naming ``name`` unless ``path`` (a folder or a file, existing or not) can be
    written: a file is created and removed in the nearest folder that exists, so the answer is the file
    system's own (read-only mounts, permissions, a file where a folder should be). Nothing is created."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe == path and probe.is_file():
        probe = path.parent  # an output file is replaced through its folder
    if not probe.is_dir():
        raise ValueError(f"{name} must be a writable folder, got {path} ({probe} is not a folder)")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".memdiff-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"{name} must be a writable folder, got {path} ({probe}: {e.strerror})") from None
    return path


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to ``<path>.old-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when taken); returns the new name."""
    path = Path(path).resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in itertools.count(1):
        aside = path.with_name(f"{path.name}.old-{stamp}" + (f"-{k}" if k > 1 else ""))
        if not aside.exists():
            return path.rename(aside)


@contextmanager
def atomic_folder(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Build a folder's whole content in a temporary sibling (yielded), then swap it in for ``path``: on
    success the old folder is replaced (no stale files of an earlier run beside new ones), on failure the
    temporary is removed and ``path`` is left as it was. ``marker`` is a file every complete output of the
    caller holds (e.g. ``summary.json``): an existing ``path`` that is not empty and lacks it is refused
    before any work, so a folder of other files is never deleted."""
    path = Path(path).resolve()
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / marker).is_file())):
        raise ValueError(f"output folder {path} must be new, empty or an earlier output (holding {marker}); "
                         f"it holds other files: choose another folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = move_aside(path) if path.exists() else None
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_revision() -> str:
    """The current commit (with ``-dirty`` if the tree has changes), or ``unknown`` outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(config: dict[str, Any], seed: int | list[int] | None) -> dict[str, Any]:
    """What a sidecar records: the command line, the config, the seed, the git revision and the time."""
    return {
        "command": " ".join(["memdiff" if Path(sys.argv[0]).name == "memdiff" else sys.argv[0], *sys.argv[1:]]),
        "config": config,
        "seed": seed,
        "git_revision": git_revision(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
    }


def save_figure(fig, path: str | os.PathLike, config: dict[str, Any], seed: int | list[int] | None, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically as PNG with a ``<name>.json`` provenance sidecar beside it."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))
    atomic_write_json(path.with_suffix(".json"), provenance(config, seed))
    return path
