"""Templates and the small helpers every page shares: render with the signed-in user and the
CSRF token, and one-shot flash messages."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from webview.infra import cookies
from webview.infra.doors import door_of
from webview.infra.words import duration

HERE = Path(__file__).resolve().parent.parent
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True, auto_reload=False)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MB"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def _clock(value: datetime | str | None) -> str:
    """An ISO time (or datetime) on the laptop's clock: '14:02:05' today, else 'Mon 1 Dec 14:02'."""
    if not value:
        return "-"
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    local = at.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%a %-d %b %H:%M")


env.filters["mb"] = _mb
env.filters["clock"] = _clock
env.filters["ms"] = _ms
env.filters["duration"] = duration


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    flash = unquote(cookies.get(request, cookies.FLASH)) or None
    context.setdefault("flash", flash)
    html = env.get_template(template).render(
        user=getattr(request.state, "user", None), csrf=getattr(request.state, "csrf", ""), path=request.url.path,
        door=door_of(request.scope), **context)
    response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
    if flash:
        cookies.drop(response, request, cookies.FLASH)
    return response


def fragment(template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)


def redirect(request: Request, to: str, message: str | None = None) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    if message:
        cookies.put(response, request, cookies.FLASH, quote(message)[:900], max_age=60)
    return response

