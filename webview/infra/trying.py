"""The add/edit form's "Try it first" (reconciler/engine/trial.py does the trying). Two ways to see it:

- without JavaScript the POST waits for the verdict and the whole form comes back with it;
- with JavaScript (static/try.js) the same POST asks for `application/x-ndjson` and gets
  `LiveTry`: one JSON object a line, sent as they happen: `{"note": ...}` once the program
  runs, `{"line": ...}` for each line it prints, and finally `{"done": true, "ok": ...,
  "html": ...}`, the same verdict section the form renders without JavaScript.

A try is its own task, never the request's: a page that is closed (the connection ends)
cancels it, and the try then stops its whole process tree by itself. One try per server
name at a time: a new one ends the one before (they share a log file).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from reconciler.core.spec import ServerSpec
from reconciler.engine.launch import Verdict, try_length
from reconciler.engine.trial import try_spec
from reconciler.platform.fsutil import server_log
from reconciler.settings import Settings
from webview.infra.render import fragment

LIVE = "application/x-ndjson"
KEEP_LINES = 200  # lines of output kept for the verdict section (the live box keeps its own)


def wants_live(request: Request) -> bool:
    return LIVE in request.headers.get("accept", "")


class Tries:
    """The tries under way, by server name: the page's memory of them (one per app, held by
    webview.infra.page.Page), in the folders of `settings`."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Verdict]] = {}

    async def start(self, settings: Settings, spec: ServerSpec, on_line: Callable[[str], None],
                    on_start: Callable[[int | None], None] = lambda port: None) -> asyncio.Task[Verdict]:
        """Begin a try of `spec` as a task of its own, after ending an earlier try of that name."""
        tries = self._running
        earlier = tries.get(spec.name)
        if earlier is not None and not earlier.done():
            earlier.cancel()
            await asyncio.wait([earlier])
        log = server_log(settings.data_dir, f"try-{spec.name}")
        task = asyncio.ensure_future(try_spec(spec, settings.config_dir, log, on_line, on_start))
        tries[spec.name] = task

        def forget(done: asyncio.Task[Verdict]) -> None:
            if tries.get(spec.name) is done:
                del tries[spec.name]
            if not done.cancelled():
                done.exception()  # retrieved: a failed try is reported by whoever awaits it

        task.add_done_callback(forget)
        return task


def tried_view(verdict: Verdict, lines: list[str]) -> dict[str, Any]:
    return {"ok": verdict.ok, "text": verdict.text, "port": verdict.port, "lines": lines}


def replaced(lines: deque[str]) -> dict[str, Any]:
    """The view of a try that a newer try of the same server ended (another tab)."""
    return {"ok": False, "replaced": True, "text": "", "port": None, "lines": list(lines)}


def waiting_note(spec: ServerSpec, port: int | None) -> str:
    kind = spec.effective_health().type
    if kind == "running":
        return f"it must keep running for {try_length(spec):g} s"
    if kind == "none":
        return f"it has no check, so it must keep running for {try_length(spec):g} s"
    where = f" on port {port}, a spare one" if port is not None else ""
    return f"waiting up to {try_length(spec):g} s for it to answer{where}"


async def tried(tries: Tries, settings: Settings, spec: ServerSpec) -> dict[str, Any]:
    """Without JavaScript: run the try to its end; the verdict section's view."""
    lines: deque[str] = deque(maxlen=KEEP_LINES)
    task = await tries.start(settings, spec, lines.append)
    try:
        await asyncio.wait([task])
    finally:
        task.cancel()  # a no-op once it has ended
    return replaced(lines) if task.cancelled() else tried_view(task.result(), list(lines))


async def _closed(receive: Receive) -> None:
    """Returns when the browser has gone (the request body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class LiveTry:
    """The live answer to a try (an ASGI response): see the module's docstring."""

    def __init__(self, tries: Tries, settings: Settings, spec: ServerSpec, adding: bool) -> None:
        self.tries, self.settings, self.spec, self.adding = tries, settings, spec, adding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lines: deque[str] = deque(maxlen=KEEP_LINES)

        def on_line(line: str) -> None:
            lines.append(line)
            out.put_nowait({"line": line})

        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", LIVE.encode()), (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]})
        closed = asyncio.ensure_future(_closed(receive))
        task: asyncio.Task[Verdict] | None = None
        try:
            task = await self.tries.start(self.settings, self.spec, on_line,
                                          lambda port: out.put_nowait({"note": waiting_note(self.spec, port)}))
            while not task.done():
                getting = asyncio.ensure_future(out.get())
                done, _ = await asyncio.wait({getting, task, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    getting.cancel()
                    return  # the page was closed: the finally ends the try
                if getting in done:
                    await self._send(send, getting.result())
                else:
                    getting.cancel()
            while not out.empty():
                await self._send(send, out.get_nowait())
            view = replaced(lines) if task.cancelled() else tried_view(task.result(), list(lines))
            html = fragment("_tried.html", tried=view, adding=self.adding)
            await self._send(send, {"done": True, "ok": view["ok"], "html": html})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            closed.cancel()
            if task is not None and not task.done():
                task.cancel()  # the try stops its own process tree; nothing here waits for it

    @staticmethod
    async def _send(send: Send, message: dict[str, Any]) -> None:
        body = (json.dumps(message, ensure_ascii=False) + "\n").encode()
        await send({"type": "http.response.body", "body": body, "more_body": True})
