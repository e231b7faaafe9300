"""Time the page's who-is-asking layers add to one request, in-process: the door, the Host check,
the authentication backend and the CSRF guard (webview.infra.doors, webview.infra.auth) around an endpoint
that answers "ok", against the endpoint alone; for a request with the API token, one with
nothing, and a POST with the API token. No network, no database (the token needs neither).

    .venv/bin/python bench/auth_overhead.py             # 20000 calls of each
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webview.infra import doors
from webview.infra.auth import Authenticate
from webview.infra.csrf import CsrfGuard
from webview.infra.page import Page

TOKEN = "t" * 43


async def ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app(layers: bool) -> Any:
    gateway = SimpleNamespace(token=TOKEN, store=None, attention=SimpleNamespace(looked=lambda: None))
    page = Page(gateway, secret=b"k" * 32, box=None, access=None)  # type: ignore[arg-type]
    middleware = [Middleware(doors.HostGuard, names=set), Middleware(Authenticate, page=page), Middleware(CsrfGuard)]
    built = Starlette(routes=[Route("/", ok, methods=["GET", "POST"])], middleware=middleware if layers else [])
    built.state.page = page
    return doors.Door(built, doors.LOCAL) if layers else built


async def call(asgi: Any, method: str, headers: list[tuple[bytes, bytes]]) -> None:
    scope = {"type": "http", "method": method, "path": "/", "raw_path": b"/", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8765), "scheme": "http", "root_path": "",
             "http_version": "1.1", "asgi": {"version": "3.0"}}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await asgi(scope, receive, send)


async def per_call(asgi: Any, n: int, method: str, headers: list[tuple[bytes, bytes]]) -> float:
    for _ in range(200):
        await call(asgi, method, headers)
    started = time.perf_counter()
    for _ in range(n):
        await call(asgi, method, headers)
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    n = ap.parse_args().calls
    host = [(b"host", b"127.0.0.1:8765")]
    bearer = [*host, (b"authorization", f"Bearer {TOKEN}".encode())]
    cases = [("GET with the API token", "GET", bearer), ("GET with nothing", "GET", host),
             ("POST with the API token", "POST", bearer)]
    bare, layered = app(False), app(True)
    print(f"per call, {n} calls each (in-process, one core):")
    for label, method, headers in cases:
        alone = await per_call(bare, n, method, headers)
        full = await per_call(layered, n, method, headers)
        print(f"  {label}: endpoint alone {alone:.0f} us, with the auth layers {full:.0f} us (+{full - alone:.0f} us)")


if __name__ == "__main__":
    asyncio.run(main())
