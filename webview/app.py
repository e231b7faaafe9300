"""`create_app(page) -> Starlette`: the page, its live stream, the JSON API and /metrics,
behind the security headers, the local door's Host check (webview.infra.doors), the one
authentication backend (webview.infra.auth) and the CSRF check of every POST. What the app holds
(the gateway, its keys, its memory) is one `webview.infra.page.Page`, at `app.state.page`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from webview import (account, api, cloudflare, forms, pages, settings_ops, settings_pages, settings_tokens, setup,
                     signin, stream)
from webview.infra import auth, doors
from webview.infra.auth import Authenticate
from webview.infra.csrf import CsrfGuard
from webview.infra.gateway import Gateway
from webview.infra.page import Page
from webview.infra.render import HERE, render
from webview.infra.security import SecurityHeaders
from webview.metrics import metrics


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)
    return render(request, "error.html", status=exc.status_code, code=exc.status_code, message=exc.detail)


def _local_names(daemon: Gateway) -> set[str]:
    result = daemon.reconciler.result
    return doors.configured_names(result.settings.web if result else None)


def _hostname(daemon: Gateway) -> str | None:
    """The page's public name as the tunnel routes it (lower-case ASCII), or None."""
    from reconciler.tunnel.hostnames import HostnameError, ascii_hostname

    result = daemon.reconciler.result
    name = result.settings.web.hostname if result else None
    try:
        return ascii_hostname(name) if name and not name.startswith("*") else None
    except HostnameError:
        return None


@auth.anyone
async def favicon(request: Request) -> Response:
    """/favicon.ico, where browsers look when a response names no icon (a JSON answer, a file)."""
    return FileResponse(HERE / "static" / "icons" / "favicon.ico", media_type="image/vnd.microsoft.icon",
                        headers={"cache-control": "public, max-age=86400"})


def all_routes() -> list[BaseRoute]:
    """Every route of the page, in the order they are matched: the JSON API first (polled
    most, it would else be tried against every page's pattern), then the sign-in pages."""
    return [*api.routes, *signin.routes, *setup.routes, *account.routes, *pages.routes, *forms.routes,
            *settings_pages.routes, *settings_ops.routes, *settings_tokens.routes, *cloudflare.routes, *stream.routes,
            Route("/metrics", metrics), Route("/favicon.ico", favicon),
            Mount("/static", auth.anyone(StaticFiles(directory=HERE / "static")), name="static")]


def create_app(page: Page) -> Starlette:
    daemon = page.gateway
    routes = all_routes()
    undeclared = auth.undeclared(routes)
    if undeclared:  # every route says what it requires (webview.infra.auth.Guard); one that does not is a bug
        raise RuntimeError(f"routes that declare no guard (webview.infra.auth): {', '.join(undeclared)}")
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(doors.HostGuard, names=lambda: _local_names(daemon)),
                    Middleware(doors.HttpsOnly, hostname=lambda: _hostname(daemon)),
                    Middleware(Authenticate, page=page), Middleware(CsrfGuard)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.page = page
    return app
