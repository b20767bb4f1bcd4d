"""Typed configs from TOML or JSON: read once, with errors that name the file and the key.

A config is a dataclass; ``from_mapping(cls, mapping, source)`` builds it from a parsed file, rejecting
keys the dataclass does not have (with a "did you mean" suggestion) and values whose type differs from the
field's default (an ``int`` is accepted where a ``float`` is expected). Anything finer is the dataclass's own
``__post_init__``. ``where`` prefixes key names, so a nested table is named by its dotted path.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a ``.toml`` or ``.json`` file (``ValueError`` naming the file when it cannot be read)."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"config must end in .toml or .json, got {path.name!r}")
    if not path.is_file():
        raise ValueError(f"config must be an existing .toml or .json file, got {str(path)!r}")
    try:
        return tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"config {str(path)!r} is not valid {path.suffix[1:].upper()}: {e}") from None


def _type_ok(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple, dict))  # dict: a grid spec the dataclass expands
    return isinstance(value, type(default))


def check_keys(mapping: Mapping[str, Any], allowed: Any, source: str, where: str = "") -> None:
    """``ValueError`` naming ``source`` and the first key of ``mapping`` not in ``allowed``, with the nearest
    allowed key as a suggestion."""
    for key in mapping:
        if key not in allowed:
            near = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean {where}{near[0]!r}?" if near else f"; expected one of {sorted(allowed)}"
            raise ValueError(f"{source}: unknown key {where}{key!r}{hint}")


def from_mapping(cls: type[T], mapping: Mapping[str, Any], source: str, where: str = "") -> T:
    """``cls(**mapping)`` after checking every key is a field of ``cls`` and every value has its default's type."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(mapping, fields, source, where)
    for key, value in mapping.items():
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if not _type_ok(value, default):
            raise ValueError(f"{source}: {where}{key} must be of type {type(default).__name__}, got {value!r}")
    return cls(**mapping)
