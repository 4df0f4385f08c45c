"""Read and write the plain TOML that configurations use: scalars, lists of scalars, tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from ..errors import BoltzflowError
from .atomic import atomic_path


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps_toml(data: dict) -> str:
    """TOML text of ``data``: top-level scalars first, then one ``[table]`` per nested dict
    (its own dict values written inline), then one ``[[array]]`` entry per dict of a list of dicts."""
    lines = [f"{_key(key)} = {_value(v)}" for key, v in data.items() if not isinstance(v, dict) and not _is_table_list(v)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_key(key)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    for key, tables in data.items():
        if _is_table_list(tables):
            for table in tables:
                lines += ["", f"[[{_key(key)}]]"] + [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_toml(path: Union[str, Path], data: dict) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_toml(data))


def read_toml(path: Union[str, Path]) -> dict:
    """Parse a TOML file; a missing or malformed file is a ``BoltzflowError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise BoltzflowError(f"no such file: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BoltzflowError(f"{path}: not valid TOML: {exc}") from None
