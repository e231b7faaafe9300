"""The gateway's background tasks, each added to one `Runner` under one guard
(controller-runtime's Manager and its Runnables): a task that raises is logged, recorded as an
`internal_error` event and started again after a backoff; one that returns is logged. None is
ever silently dead, and none takes the gateway down (the core tasks, the loop, the watcher and
the page, are the daemon's own: one of those ending is a crash).

A task is built with what it uses (its runtime, store, settings reader), never the daemon: the
runner only knows its name and how to run it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from reconciler.core.backoff import Backoff
from reconciler.core.events import EventKind
from reconciler.engine.runtime import Runtime

log = logging.getLogger("gateway")
Work = Callable[[], Awaitable[None]]  # run the task once (most never return)
TASK_BACKOFF = Backoff(start=1.0, cap=300.0, reset=60.0)  # the first failure: again at once; then 1 s, 2 s ... 5 min


class Runner:
    def __init__(self, rt: Runtime, backoff: Backoff = TASK_BACKOFF) -> None:
        self.rt = rt
        self.backoff = backoff
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, work: Work) -> asyncio.Task[None]:
        """Run `work` from now on, guarded; the task is named `name`."""
        task = asyncio.create_task(self._guarded(name, work), name=name)
        self.tasks.append(task)
        return task

    async def _guarded(self, name: str, work: Work) -> None:
        failures = 0
        while True:
            began = time.monotonic()
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a background task never takes the gateway down, nor dies unseen
                failures = self.backoff.failures_after_exit(failures, began, time.monotonic())
                delay = self.backoff.delay(failures)
                log.exception("the %s task failed (%d in a row); starting it again in %.0fs", name, failures, delay)
                self.rt.event(EventKind.INTERNAL_ERROR, None, f"the {name} task failed: {exc!r}; it starts again "
                              f"in {delay:.0f}s", detail={"task": name, "failures": failures, "retry_in": delay})
                await asyncio.sleep(delay)
                continue
            log.info("the %s task ended", name)
            return

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel every task; the tasks, for the caller to wait on."""
        for task in self.tasks:
            task.cancel()
        return list(self.tasks)
