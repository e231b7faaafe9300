"""Settings pages that write `gateway.d/gateway.toml`: alerts and the port range (backups and
start at boot are in webview.settings_ops). Each form is made from the schema of its section
(webview.settings_form: ALERTS, PORTS); a save edits the file with tomlkit (comments and key
order kept), atomically, after checking the whole file still loads; then waits until the
gateway has loaded it, so the page can say "in force now" or what is not yet."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.core.spec import GatewayFile, PortsSettings
from reconciler.ops import tomledit
from reconciler.ops.messages import load_apprise
from reconciler.ops.notify import NotifySettings
from reconciler.platform.fsutil import read_regular
from webview.infra import auth
from webview.infra.gateway import Notifier
from webview.infra.page import gateway_of
from webview.infra.render import redirect, render
from webview.settings_form import Model, Setting, SettingsError, SettingsForm

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
    check(data)  # first: a form's own words for its fields
    try:
        GatewayFile.model_validate(data)
    except ValidationError as exc:
        raise SettingsError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
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
URL_HINT = (Markup("For a phone, the free ntfy app is the simplest: pick a secret topic and write ntfy://that-topic. "
                   "Other examples: ") + Markup(", ").join(Markup("<code>{}</code>").format(e) for e in URL_EXAMPLES)
            + Markup("."))


def _reachable(settings: NotifySettings) -> None:
    """Every address is one apprise can send to (what the schema cannot say)."""
    if settings.urls:
        box = load_apprise().Apprise()
        bad = [u for u in settings.urls if not box.add(u)]
        if bad:
            raise SettingsError(f"not an address alerts can go to: {', '.join(bad)} (see the examples)")


ALERTS = SettingsForm("notify", NotifySettings, [
    Setting("urls", "Where to send alerts, one address a line", hint=URL_HINT, attrs={
        "rows": "3", "spellcheck": "false", "autocapitalize": "none", "placeholder": "ntfy://my-secret-topic"}),
    Setting("events", "Tell me when", choices=EVENT_WORDS,
            empty="Nothing is ticked, so no alert is sent, whatever happens."),
], check=_reachable)


async def save_form(request: Request, form: SettingsForm[Model], sent: FormData) -> bool:
    """Write what `sent` changes of `form`'s section, checked by its schema; True once in force."""
    written: list[Model] = []
    return await save(request, form.changes(sent), lambda data: written.append(form.check(data)),
                      lambda settings: form.in_force(written[-1], settings))


@auth.page
async def alerts_page(request: Request) -> Response:
    return await _alerts(request)


async def _alerts(request: Request, status: int = 200, error: str | None = None,
                  typed: dict[str, str | list[str]] | None = None) -> Response:
    daemon = gateway_of(request)
    notifier = daemon.notifier
    live = notifier.settings() if notifier is not None else None
    alerts: list[dict[str, Any]] = []
    db_error = None
    if daemon.store is not None:
        try:
            alerts = await daemon.store.recent_alerts()
        except Exception as exc:  # noqa: BLE001 - the database is down: say so
            db_error = f"The list of sent alerts cannot be read: the database is unreachable ({exc})."
    fields = ALERTS.fields(current_table(gateway_toml(request), "notify"), typed)
    return render(request, "settings_alerts.html", status=status, error=error, fields=fields, alerts=alerts,
                  db_error=db_error, live_targets=len(live.urls) if live else 0, section="alerts")


@auth.action
async def alerts_save(request: Request) -> Response:
    sent = await request.form()
    try:
        ok = await save_form(request, ALERTS, sent)
    except SettingsError as exc:
        return await _alerts(request, 422, str(exc), ALERTS.typed(sent))
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
def _range_text(value: object) -> str:
    return "-".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


PORTS = SettingsForm("ports", PortsSettings, [
    Setting("range", "Port range", hint="two numbers from 1024 to 65535, like 20000-29999",
            refused="Write two port numbers from 1024 to 65535, the smaller first, like 20000-29999.",
            accept=lambda value: isinstance(value, tuple) and value[0] >= 1024,  # not a port only root may use
            show=_range_text, clean=lambda text: text.strip().replace(" ", ""),
            attrs={"inputmode": "numeric", "autocapitalize": "none", "placeholder": "20000-29999"}),
])


@auth.page
async def ports_page(request: Request) -> Response:
    return _ports(request)


def _ports(request: Request, status: int = 200, error: str | None = None,
           typed: dict[str, str | list[str]] | None = None) -> Response:
    result = gateway_of(request).reconciler.result
    lo, hi = result.settings.ports.range if result else (20000, 29999)
    fields = PORTS.fields(current_table(gateway_toml(request), "ports"), typed)
    return render(request, "settings_ports.html", status=status, error=error, fields=fields, in_force=f"{lo}-{hi}",
                  section="ports")


@auth.action
async def ports_save(request: Request) -> Response:
    sent = await request.form()
    try:
        ok = await save_form(request, PORTS, sent)
    except SettingsError as exc:
        return _ports(request, 422, str(exc), PORTS.typed(sent))
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
