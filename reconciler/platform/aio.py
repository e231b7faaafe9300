"""asyncio.wait_for without Python 3.11's lost cancel; asyncio.run on the platform's loop.

On 3.11, `asyncio.wait_for` swallows a cancel that arrives as the awaited thing finishes
(gh-86296, fixed in 3.12): the task goes on as if never cancelled. A loop that waits this way
(`while True: await wait_for(...)`) then never ends, and a gateway stop that cancels it hangs.
`asyncio.timeout` (3.11+) counts cancels and does not lose one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`await awaitable`, raising TimeoutError after `timeout` seconds (None: no limit)."""
    async with asyncio.timeout(None if timeout is None else max(timeout, 0.0)):
        return await awaitable


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the platform's event loop: on Windows a selector loop, the one
    psycopg's async mode accepts (`asyncio.run` would make a Proactor loop there)."""
    from reconciler.platform import current

    with asyncio.Runner(loop_factory=current().new_event_loop) as runner:
        return runner.run(main)
