"""Edit a TOML file the way a person would: change the keys asked, keep everything else
(comments, blank lines, key order, quoting) as it was, and write it atomically.

`edit(path, changes)` takes nested `{key: value}` changes; a value of `DELETE` removes the
key, a dict descends into (or creates) a table. Strings are written as TOML basic strings
with their backslashes escaped, so a Windows path like `C:\\Users\\me` reads back as typed.
tomlkit is imported when an edit happens, not at the daemon's start.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.platform.fsutil import atomic_write, read_regular

DELETE = object()  # a change that removes its key


class TomlEditError(ValueError):
    """The file is not TOML: it is left alone and the message says where it is wrong."""


def _apply(table: Any, changes: Mapping[str, Any]) -> None:
    import tomlkit

    for key, value in changes.items():
        if value is DELETE:
            if key in table:
                del table[key]
        elif isinstance(value, Mapping):
            inner = table.get(key)
            if inner is None or not hasattr(inner, "items"):
                inner = tomlkit.table()
                table[key] = inner
            _apply(inner, value)
            if len(inner) == 0:
                del table[key]
        elif key in table and table[key] == value:
            continue  # unchanged: keep its original spelling (quotes, comments after it)
        else:
            table[key] = toml_value(value)


def render(text: str, changes: Mapping[str, Any]) -> str:
    """`text` with `changes` applied; raises TomlEditError when `text` is not TOML."""
    import tomlkit

    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise TomlEditError(str(exc)) from None
    _apply(doc, changes)
    out = tomlkit.dumps(doc)
    tomllib.loads(out)  # what we write always reads back
    return out


def write_atomic(path: Path, text: str) -> None:
    """temp file (a dot file: the watcher ignores it) + fsync + rename."""
    atomic_write(path, text)


def edit(path: Path, changes: Mapping[str, Any]) -> str:
    """Apply `changes` to the file at `path` (created when missing); return the new text."""
    text = read_regular(path).decode("utf-8-sig") if path.exists() else ""
    out = render(text, changes)
    write_atomic(path, out)
    return out


def replace_all(text: str, data: Mapping[str, Any]) -> str:
    """`text` changed so it holds exactly `data` (keys missing from `data` are removed),
    keeping the comments and order of what stays."""
    import tomlkit

    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise TomlEditError(str(exc)) from None
    _sync(doc, data)
    out = tomlkit.dumps(doc)
    tomllib.loads(out)
    return out


def _sync(table: Any, data: Mapping[str, Any]) -> None:
    import tomlkit

    for key in [k for k in table if k not in data]:
        del table[key]
    for key, value in data.items():
        current = table.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict) and not _is_inline(current):
            _sync(current, value)
        elif isinstance(value, Mapping) and current is None and any(isinstance(v, Mapping) for v in value.values()):
            fresh = tomlkit.table()
            _sync(fresh, value)
            table[key] = fresh
        elif current is not None and _plain(current) == value:
            continue
        elif isinstance(value, Mapping) and current is None:
            fresh = tomlkit.table()
            _sync(fresh, value)
            table[key] = fresh
        else:
            table[key] = toml_value(value)


def toml_value(value: Any) -> Any:
    """Strings with a backslash (Windows paths) as TOML literal strings ('C:\\Users\\me'),
    which read back exactly as typed; lists item by item; anything else as it is."""
    import tomlkit

    if isinstance(value, str) and "\\" in value and "'" not in value and "\n" not in value:
        return tomlkit.string(value, literal=True)
    if isinstance(value, list) and any(isinstance(v, str) and "\\" in v for v in value):
        arr = tomlkit.array()
        arr.extend(toml_value(v) for v in value)
        return arr
    return value


def _is_inline(item: Any) -> bool:
    import tomlkit

    return isinstance(item, tomlkit.items.InlineTable)


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item
