"""Watch the config folder and mark the loop dirty; one wake per batch of changes.

On Linux the folder is watched with inotify on the event loop: nothing wakes at rest. Elsewhere
watchfiles, with `step` and `debounce` passed explicitly (its defaults, 50 ms / 1600 ms, would
spend the latency budget). A `git pull` that writes many files within the debounce window
arrives as one batch, so it costs one reload."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

from reconciler.core.names import GATEWAY_FILE
from reconciler.engine.config import is_server_file
from reconciler.platform import inotify

log = logging.getLogger("gateway")
STEP_MS = 150  # watchfiles (Windows, macOS): its thread looks ~7 times a second; a save is seen within ~250 ms
DEBOUNCE_MS = 100  # after the first change, gather more of the same batch for this long


def is_config_file(change: Any, path: str) -> bool:  # watchfiles' filter: (Change, path)
    p = Path(path)
    return p.name == GATEWAY_FILE or is_server_file(p)


async def watch_folder(folder: Path, on_change: Callable[[], None], stop: asyncio.Event) -> None:
    """Linux: inotify on the event loop (no wake-up at rest); elsewhere watchfiles."""
    if inotify.available():
        async for names in inotify.watch(folder, lambda name: is_config_file(None, name),
                                         DEBOUNCE_MS / 1000, stop):
            log.debug("config folder changed: %s", sorted(names))
            on_change()
        return
    from watchfiles import awatch  # not imported where inotify watches (its thread and ~1 MB)

    async for changes in awatch(
        folder, watch_filter=is_config_file, step=STEP_MS, debounce=DEBOUNCE_MS, stop_event=stop,
        recursive=False, ignore_permission_denied=True,
    ):
        log.debug("config folder changed: %s", sorted(p for _, p in changes))
        on_change()
