"""uvicorn on the daemon's own event loop, on a socket the daemon bound before it started
any server (so a taken address fails early). Imported only once the servers are spawned."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from webview.app import create_app


class WebServer(uvicorn.Server):
    """uvicorn on our loop; the daemon owns the signal handlers, not uvicorn. Its main loop
    wakes once a second (uvicorn's own wakes ten times a second to look at `should_exit`);
    `stop()` ends it at once."""

    TICK = 1.0  # the Date header is refreshed on each tick: uvicorn refreshes it once a second too

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._exit.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # counter 0: uvicorn's "once a second" work, every tick
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.TICK):
                    await self._exit.wait()


def build(daemon: Any) -> WebServer:
    """The server for the page and the local API; `serve(sockets=[...])` runs it on the
    socket the daemon bound."""
    config = uvicorn.Config(create_app(daemon), log_level="warning", access_log=False, lifespan="off")
    return WebServer(config)
