"""Settings pages that write `gateway.d/gateway.toml`: alerts and the port range (backups and
start at boot are in webview.settings_ops). Each save edits the file with tomlkit (comments
and key order kept), atomically, after checking the whole file still loads; then waits
until the gateway has loaded it, so the page can say "in force now" or what is not yet."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.digits import plain_digits
from reconciler.fsutil import read_regular
from reconciler.ops import tomledit
from reconciler.spec import GatewayFile
from webview import auth
from webview.render import redirect, render
from webview.gateway import Notifier
from webview.page import gateway_of

APPLY_WAIT = 5.0  # seconds to wait for the gateway to load the saved file
EVENT_WORDS = {
    "down": "A server keeps crashing", "back_up": "A server that was down is back up",
    "health": "A server stops answering its check", "port_held": "Another program took a server's port",
    "database": "The history database cannot be reached", "disk": "The disk is almost full",
    "tunnel": "The servers cannot be reached from outside", "sync": "Getting the settings from git failed",
    "battery": "The laptop's battery is running low",
    "rollback": "A change did not work and the previous version runs again",
}
URL_EXAMPLES = ("ntfy://my-secret-topic", "tgram://BOT_TOKEN/CHAT_ID", "mailto://me:app-password@gmail.com",
                "discord://WEBHOOK_ID/WEBHOOK_TOKEN", "json://127.0.0.1:9000/hook")


class SettingsError(ValueError):
    pass


def gateway_toml(request: Request) -> Path:
    return gateway_of(request).settings.config_dir / "gateway.toml"


def current_table(path: Path, section: str) -> dict[str, Any]:
    """`[section]` as the file says now (not as last loaded), or {}."""
    try:
        return dict(tomllib.loads(read_regular(path).decode("utf-8-sig")).get(section) or {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def write_checked(path: Path, changes: Mapping[str, Any], check: Callable[[dict[str, Any]], None]) -> str:
    """The file with `changes`, written only if it loads as gateway.toml and `check` accepts it."""
    try:
        text = read_regular(path).decode("utf-8-sig") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"gateway.toml cannot be read ({exc}); fix it first") from None
    try:
        out = tomledit.render(text, changes)
    except tomledit.TomlEditError as exc:
        raise SettingsError(f"gateway.toml cannot be read ({exc}); fix it in an editor first") from None
    data = tomllib.loads(out)
    try:
        GatewayFile.model_validate(data)
    except ValidationError as exc:
        raise SettingsError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    check(data)
    tomledit.write_atomic(path, out)
    return out


async def save(request: Request, changes: Mapping[str, Any], check: Callable[[dict[str, Any]], None],
               loaded: Callable[[GatewayFile], bool]) -> bool:
    """Write the change; True once the gateway has it in force (`loaded(result.settings)`)."""
    daemon = gateway_of(request)
    await asyncio.to_thread(write_checked, gateway_toml(request), changes, check)
    deadline = time.monotonic() + APPLY_WAIT
    while time.monotonic() < deadline:
        result = daemon.reconciler.result
        if result is not None and loaded(result.settings):
            return True
        await asyncio.sleep(0.05)
    return False


def in_force(ok: bool) -> str:
    return "In force now." if ok else ("Saved, but the gateway has not loaded it yet: it should within a few "
                                       "seconds; reload this page to see.")


# --- alerts ------------------------------------------------------------------------------
def _check_notify(data: dict[str, Any]) -> None:
    from reconciler.ops.notify import NotifySettingsError, load_apprise, parse_settings

    try:
        settings = parse_settings(dict(data.get("notify") or {}))
    except NotifySettingsError as exc:
        raise SettingsError(str(exc)) from None
    if settings.urls:
        box = load_apprise().Apprise()
        bad = [u for u in settings.urls if not box.add(u)]
        if bad:
            raise SettingsError(f"not an address alerts can go to: {', '.join(bad)} (see the examples)")


@auth.page
async def alerts_page(request: Request) -> Response:
    return await _alerts(request)


async def _alerts(request: Request, status: int = 200, error: str | None = None,
                  form: dict[str, Any] | None = None) -> Response:
    daemon = gateway_of(request)
    from reconciler.ops.notify import ALL_KINDS

    table = current_table(gateway_toml(request), "notify")
    notifier = daemon.notifier
    live = notifier.settings() if notifier is not None else None
    alerts: list[dict[str, Any]] = []
    db_error = None
    if daemon.store is not None:
        try:
            alerts = await daemon.store.recent_alerts()
        except Exception as exc:  # noqa: BLE001 - the database is down: say so
            db_error = f"The list of sent alerts cannot be read: the database is unreachable ({exc})."
    urls = form["urls"] if form else "\n".join(table.get("urls") or [])
    chosen = form["events"] if form else list(table.get("events", ALL_KINDS))
    return render(request, "settings_alerts.html", status=status, error=error, urls=urls, chosen=chosen,
                  kinds=[(k, EVENT_WORDS.get(k, k)) for k in ALL_KINDS], examples=URL_EXAMPLES, alerts=alerts,
                  db_error=db_error, live_targets=len(live.urls) if live else 0, section="alerts")


@auth.action
async def alerts_save(request: Request) -> Response:
    form = await request.form()
    from reconciler.ops.notify import ALL_KINDS

    urls = [u.strip() for u in str(form.get("urls", "")).splitlines() if u.strip()]
    events = [str(e) for e in form.getlist("events") if str(e) in ALL_KINDS]
    changes = {"notify": {"urls": urls or tomledit.DELETE,
                          "events": tomledit.DELETE if set(events) == set(ALL_KINDS) else events}}

    def loaded(settings: GatewayFile) -> bool:
        notify = dict(settings.notify)
        want = list(ALL_KINDS) if set(events) == set(ALL_KINDS) else events
        return list(notify.get("urls") or []) == urls and list(notify.get("events", ALL_KINDS)) == want

    try:
        ok = await save(request, changes, _check_notify, loaded)
    except SettingsError as exc:
        return await _alerts(request, 422, str(exc), {"urls": "\n".join(urls), "events": events})
    return redirect(request, "/settings/alerts", f"Alert settings saved. {in_force(ok)}")


async def send_test_alert(notifier: Notifier | None, user: str) -> tuple[bool | None, str]:
    """Send a test alert to every address in force, now: (None: no address yet | it went out, error)."""
    from reconciler.ops.notify import Alert

    if notifier is None or not notifier.settings().urls:
        return None, ""
    alert = Alert("test", None, f"a test alert sent by {user} from the web page: alerts reach you")
    sent = await notifier.send([alert], notifier.settings(), test=True)
    return sent.ok, sent.error or ""


@auth.action
async def alerts_test(request: Request) -> Response:
    ok, error = await send_test_alert(gateway_of(request).notifier, auth.user_name(request))
    if ok is None:
        return redirect(request, "/settings/alerts", "No alert addresses yet: add one above and save first.")
    return redirect(request, "/settings/alerts", "Test alert sent: check that it arrived." if ok else
                    f"The test alert did not go out: {error}")


# --- ports -------------------------------------------------------------------------------
@auth.page
async def ports_page(request: Request) -> Response:
    return _ports(request)


def _ports(request: Request, status: int = 200, error: str | None = None, value: str | None = None) -> Response:
    result = gateway_of(request).reconciler.result
    lo, hi = result.settings.ports.range if result else (20000, 29999)
    return render(request, "settings_ports.html", status=status, error=error, value=value or f"{lo}-{hi}",
                  in_force=f"{lo}-{hi}", section="ports")


@auth.action
async def ports_save(request: Request) -> Response:
    form = await request.form()
    value = str(form.get("range", "")).strip().replace(" ", "")
    lo, _, hi = value.partition("-")
    if not (plain_digits(lo) and plain_digits(hi) and 1024 <= int(lo) <= int(hi) <= 65535):
        return _ports(request, 422, "Write two port numbers from 1024 to 65535, the smaller first, "
                                    "like 20000-29999.", value)
    try:
        ok = await save(request, {"ports": {"range": value}}, lambda data: None,
                        lambda s: tuple(s.ports.range) == (int(lo), int(hi)))
    except SettingsError as exc:
        return _ports(request, 422, str(exc), value)
    return redirect(request, "/settings/ports", f"Port range saved. {in_force(ok)} Servers already running keep "
                                                "their ports; a server gets one from the new range the next time "
                                                "it needs an automatic port.")


@auth.page
async def index(request: Request) -> Response:
    return redirect(request, "/settings/alerts")


routes = [
    Route("/settings", index),
    Route("/settings/alerts", alerts_page),
    Route("/settings/alerts", alerts_save, methods=["POST"]),
    Route("/settings/alerts/test", alerts_test, methods=["POST"]),
    Route("/settings/ports", ports_page),
    Route("/settings/ports", ports_save, methods=["POST"]),
]
