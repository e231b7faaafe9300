"""The operations' background tasks, started by `Daemon.serve` with the core ones.

The daemon treats a task that ends as a crash, so each of these runs inside `_guarded`:
a failure is logged and the work starts again after a pause, never ending the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from reconciler.ops import alerting, gitsync  # imported with the daemon: no slow import once it serves
from reconciler.ops.logs import rotate_forever

log = logging.getLogger("gateway")
RETRY_AFTER = 30.0


async def _guarded(name: str, work: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:  # an operations task never takes the gateway down
            log.exception("the %s task failed; starting it again in %.0fs", name, RETRY_AFTER)
        await asyncio.sleep(RETRY_AFTER)


def ops_tasks(daemon: Any) -> list[asyncio.Task[None]]:
    rt = daemon.rt
    alerts = alerting.start(daemon)
    jobs: dict[str, Callable[[], Awaitable[None]]] = {
        "log-rotation": lambda: rotate_forever(rt),
        "alerts": alerts.run,
        "git-pull": lambda: gitsync.pull_forever(daemon),
        "scheduled-backup": lambda: gitsync.backup_forever(daemon),
    }
    return [asyncio.create_task(_guarded(name, job), name=name) for name, job in jobs.items()]
