"""`create_app(daemon) -> Starlette`: the routes of the local API (and, later, the page)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webview import api

if TYPE_CHECKING:
    from reconciler.daemon import Daemon


async def root(request: Request) -> PlainTextResponse:
    return PlainTextResponse("omen-gateway is running. The status page arrives with the web page issue; "
                             "meanwhile use `gateway status`.\n")


def create_app(daemon: Daemon) -> Starlette:
    app = Starlette(routes=[Route("/", root), *api.routes])
    app.state.daemon = daemon
    return app
