"""Operations around the loop: log rotation and reading, backup and restore, autostart,
alerts and the git-synced folder. Each module is one idea; the daemon starts their
background tasks and the CLI calls their entry points."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from pydantic import ValidationError

    from reconciler.engine.config import LoadResult

T = TypeVar("T")
log = logging.getLogger("gateway")


Loaded = Callable[[], "LoadResult | None"]  # the folder as last loaded (`Reconciler.result`)


def live_section(loaded: Loaded, section: str, parse: Callable[[dict[str, Any]], T], default: Callable[[], T],
                 broken: str) -> Callable[[], T]:
    """A function returning gateway.toml's `[section]` as last loaded, validated by `parse`
    (re-parsed only when the table changes); `default()` and one logged error while it is broken."""
    cache: dict[str, Any] = {"table": None, "value": default()}

    def current() -> T:
        result = loaded()
        table = dict(getattr(result.settings, section)) if result is not None else {}
        if table != cache["table"]:
            cache["table"] = table
            try:
                cache["value"] = parse(table)
            except ValueError as exc:
                log.error("gateway.toml: %s (%s)", exc, broken)
                cache["value"] = default()
        return cache["value"]  # type: ignore[no-any-return]

    return current


def section_errors(section: str, exc: ValidationError) -> str:
    """A `[section]` table's validation errors in the config loader's words: `section.key: message`."""
    return "; ".join(f"{section}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
