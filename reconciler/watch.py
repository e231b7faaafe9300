"""Watch the config folder and mark the loop dirty; one wake per batch of changes.

`step` and `debounce` are passed explicitly: watchfiles' defaults (50 ms / 1600 ms) would
spend most of the latency budget. A `git pull` that writes many files within `step` ms of
each other arrives as one batch, so it costs one reload."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable

from watchfiles import Change, awatch

from reconciler.config import is_server_file

log = logging.getLogger("gateway")
STEP_MS = 20
DEBOUNCE_MS = 400


def is_config_file(change: Change, path: str) -> bool:
    p = Path(path)
    return p.name == "gateway.toml" or is_server_file(p)


async def watch_folder(folder: Path, on_change: Callable[[], None], stop: asyncio.Event) -> None:
    async for changes in awatch(
        folder, watch_filter=is_config_file, step=STEP_MS, debounce=DEBOUNCE_MS, stop_event=stop,
        recursive=False, ignore_permission_denied=True,
    ):
        log.debug("config folder changed: %s", sorted(p for _, p in changes))
        on_change()
