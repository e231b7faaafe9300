"""Alerts: tell the owner when something breaks that the gateway cannot fix by itself.

`[notify]` in gateway.toml (validated here; spec.py keeps it as a plain table):

    [notify]
    urls = ["ntfy://my-topic", "json://127.0.0.1:9000/hook"]   # apprise URLs
    events = ["down", "back_up", "health", "port_held", "database", "disk", "tunnel", "sync"]
    group = "30s"          # gather what happens in this window into one message
    min_interval = "5m"    # at most one message per interval; the rest waits and is grouped
    up_for = "10s"         # a server that was down counts as back up after running this long
    health_after = 3       # consecutive failed health checks before "health" alerts
    disk_percent = 90      # "disk" alerts above this use of the data folder's disk

The dispatcher watches the events the loop records (it wraps `Runtime.put`, so no call site
changes), turns the ones that matter into alerts (once per incident: a server alerted as
down is not alerted again until it is back up), and sends them from a thread, so the loop
never waits for the network. Every message sent is recorded in the `alerts` table with its
outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from reconciler.aio import wait_for
from reconciler.events import EventKind as K
from reconciler.ops import live_section, section_errors
from reconciler.spec import parse_duration

log = logging.getLogger("gateway")
Kind = Literal["down", "back_up", "health", "port_held", "database", "disk", "tunnel", "sync", "battery",
               "rollback"]
ALL_KINDS: tuple[str, ...] = ("down", "back_up", "health", "port_held", "database", "disk", "tunnel", "sync",
                              "battery", "rollback")
Seconds = Annotated[float, BeforeValidator(parse_duration)]
DATABASE_AFTER = 30.0  # seconds unreachable before it alerts
TITLES = {"down": "down", "back_up": "back up", "health": "health failing", "port_held": "port held",
          "database": "database unreachable", "disk": "disk almost full", "tunnel": "tunnel offline",
          "sync": "git pull failed", "battery": "battery low", "rollback": "change rolled back"}


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...] = ()
    events: tuple[Kind, ...] = ALL_KINDS  # type: ignore[assignment]
    group: Seconds = 30.0
    min_interval: Seconds = 300.0
    health_after: int = Field(3, ge=1)
    up_for: Seconds = 10.0  # running this long after being down: "back up"
    disk_percent: float = Field(90.0, gt=0, le=100)


class NotifySettingsError(ValueError):
    pass


def parse_settings(table: dict[str, Any]) -> NotifySettings:
    """`[notify]` -> settings; errors in the words of the config loader (key: message)."""
    try:
        return NotifySettings.model_validate(table)
    except ValidationError as exc:
        raise NotifySettingsError(section_errors("notify", exc)) from None


@dataclass(frozen=True)
class Alert:
    kind: str
    server: str | None
    text: str


@dataclass(frozen=True)
class Sent:
    title: str
    body: str
    alerts: tuple[Alert, ...]
    ok: bool
    error: str | None


# --- pure: events -> alerts, alerts -> one message --------------------------------------
@dataclass
class Classifier:
    """Which recorded events are alerts, once per incident."""

    health_after: int = 3
    up_for: float = 10.0  # seconds running before a server that was down counts as back up
    open: set[tuple[str, str | None]] = field(default_factory=set)  # (kind, server) alerted, not yet over
    recovering: dict[str | None, float] = field(default_factory=dict)  # server -> running since
    quiet_until: float = 0.0  # after a sleep or a freeze: failures while the host wakes up are no alert

    def due(self, now: float) -> list[Alert]:
        """The servers that were down and have now stayed up for `up_for`."""
        out = []
        for server, since in list(self.recovering.items()):
            if now - since >= self.up_for:
                del self.recovering[server]
                self._close(server)
                out.append(Alert("back_up", server, f"running again (up for {self.up_for:.0f}s)"))
        return out

    def __call__(self, op: dict[str, Any], now: float = 0.0) -> Alert | None:
        if op.get("op") != "event":
            return None
        kind, server, reason = op.get("kind"), op.get("server"), op.get("reason") or ""
        detail = op.get("detail") or {}
        if kind == K.HOST_RESUMED:  # reconciler/resume.py: a settling window follows
            self.quiet_until = now + float(detail.get("settle") or 0.0)
            return None
        if now < self.quiet_until and kind in (K.ESCALATED, K.HEALTH_FAILED, K.ERROR, K.TUNNEL_OFFLINE):
            return None
        if kind == K.TRANSITION and op.get("to_phase") == "running":
            if ("down", server) in self.open or ("port_held", server) in self.open:
                self.recovering[server] = now  # "back up" once it has stayed up for a while
            return None
        if kind == K.TRANSITION and server in self.recovering:
            del self.recovering[server]  # it fell over again: still the same incident
        if kind == K.ESCALATED:
            return self._once("down", server, reason)
        if kind == K.ERROR and detail.get("port") is not None:  # another program holds its port
            return self._once("port_held", server, reason)
        if kind == K.HEALTH_FAILED and detail.get("failures") == self.health_after:
            return self._once("health", server, f"{self.health_after} checks failed: {reason}")
        if kind == K.DATABASE_EXITED:
            return self._once("database", None, reason)
        if kind == K.DATABASE_RESTARTED:
            self.open.discard(("database", None))
        if kind == K.TUNNEL_OFFLINE:
            return self._once("tunnel", server, reason)
        if kind == K.TUNNEL_ONLINE:  # over: the next time it goes offline is news again
            self.open.discard(("tunnel", server))
        if kind == K.SYNC_FAILED:
            return Alert("sync", None, reason)
        if kind == K.ROLLED_BACK:
            return Alert("rollback", server, reason)
        if kind == K.BATTERY_LOW:  # reconciler/power.py raises it once per discharge
            return Alert("battery", None, reason)
        return None

    def _once(self, kind: str, server: str | None, text: str) -> Alert | None:
        if (kind, server) in self.open:
            return None
        self.open.add((kind, server))
        return Alert(kind, server, text)

    def _close(self, server: str | None) -> None:
        self.open = {(k, s) for k, s in self.open if s != server}


def compose(alerts: list[Alert]) -> tuple[str, str]:
    """One message for a flurry: a title that names what happened, a line per alert."""
    summary: dict[str, list[str]] = {}
    for a in alerts:
        summary.setdefault(a.kind, []).append(a.server or "gateway")
    heads = [f"{', '.join(dict.fromkeys(names))} {TITLES.get(kind, kind)}" for kind, names in summary.items()]
    title = "omen-gateway: " + ("; ".join(heads) if len(heads) <= 3 else f"{len(alerts)} alerts")
    body = "\n".join(f"[{TITLES.get(a.kind, a.kind)}] {a.server or 'gateway'}: {a.text}" for a in alerts)
    return title, body


# --- sending ---------------------------------------------------------------------------
def load_apprise() -> Any:
    """apprise, imported once; its import warns about the `imghdr` module Python 3.13 drops."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ImportError):  # apprise's PGP support imports it when sending
            import imghdr  # noqa: F401
        import apprise
    return apprise


def severity(alerts: list[Alert] | tuple[Alert, ...]) -> str:
    """apprise's notify type for a message: "failure" when anything in it went wrong,
    "success" when it only says things are back, "info" otherwise (a test)."""
    if any(a.kind != "back_up" for a in alerts):
        return "failure"
    return "success" if alerts else "info"


def deliver(urls: tuple[str, ...] | list[str], title: str, body: str,
            notify_type: str = "info") -> tuple[bool, str | None]:
    """Send through apprise (blocking: call it in a thread). (ok, why not)."""
    apprise = load_apprise()
    if not urls:
        return False, "no [notify] urls configured"
    box = apprise.Apprise()
    bad = [u for u in urls if not box.add(u)]
    if bad:
        return False, f"not an apprise URL: {', '.join(bad)}"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = box.notify(title=title, body=body, notify_type=notify_type)
        text = captured.getvalue().strip() if hasattr(captured, "getvalue") else ""
    return bool(ok), None if ok else (text.splitlines()[-1] if text else "delivery failed")


Record = Callable[[Sent], Awaitable[None]]


class Dispatcher:
    """Gathers alerts and sends one message per flurry, at most one per `min_interval`."""

    def __init__(self, settings: Callable[[], NotifySettings], record: Record | None = None,
                 watch: Callable[[], list[Alert]] = list, watch_every: float = 10.0) -> None:
        self.settings = settings
        self.record = record
        self.watch = watch  # polled conditions (disk, database) -> alerts
        self.watch_every = watch_every
        self.classify = Classifier(settings().health_after, settings().up_for)
        self.pending: list[Alert] = []
        self.sent: list[Sent] = []
        self.wake = asyncio.Event()
        self.last_sent = float("-inf")

    def observe(self, op: dict[str, Any]) -> None:
        """Called with every op the loop records (on the loop, never blocking)."""
        recovering = len(self.classify.recovering)
        alert = self.classify(op, time.monotonic())
        if alert is not None:
            self.add(alert)
        elif len(self.classify.recovering) > recovering:
            self.wake.set()  # re-arm the wait with the short timeout (an empty batch sends nothing)

    def add(self, alert: Alert) -> None:
        if alert.kind in self.settings().events:
            self.pending.append(alert)
            self.wake.set()

    async def run(self) -> None:
        if self.settings().urls:  # a slow import (and ~3 MB): never on the loop, and only when used
            await asyncio.to_thread(load_apprise)
        watched = time.monotonic()
        while True:
            try:  # a short timeout only while a server is proving it is back up
                await wait_for(self.wake.wait(), 0.25 if self.classify.recovering else self.watch_every)
            except TimeoutError:
                now = time.monotonic()
                due = self.classify.due(now)
                if now - watched >= self.watch_every:
                    due, watched = [*self.watch(), *due], now
                for alert in due:
                    self.add(alert)
                continue
            settings = self.settings()
            self.classify.health_after, self.classify.up_for = settings.health_after, settings.up_for
            await asyncio.sleep(max(settings.group, self.last_sent + settings.min_interval - time.monotonic()))
            settings = self.settings()  # as it is now: [notify] may have been added during the wait
            batch, self.pending = self.pending, []
            self.wake.clear()
            if batch:
                await self.send(batch, settings)

    async def send(self, batch: list[Alert], settings: NotifySettings, test: bool = False) -> Sent:
        """Send one message now. A `test` one neither waits for nor delays the real alerts."""
        title, body = compose(batch)
        if test:
            pass
        elif settings.urls:
            self.last_sent = time.monotonic()  # nothing left the machine otherwise: no interval to keep
        else:
            for a in batch:  # not told: the next time it happens is still news, once targets exist
                self.classify.open.discard((a.kind, a.server))
        try:
            kind = "info" if test else severity(batch)
            ok, error = await asyncio.to_thread(deliver, settings.urls, title, body, kind)
        except Exception as exc:  # noqa: BLE001 - apprise plugin bugs: recorded, never fatal
            ok, error = False, f"{type(exc).__name__}: {exc}"
        sent = Sent(title, body, tuple(batch), ok, error)
        (log.info if ok else log.warning)("alert %s: %s%s", "sent" if ok else "NOT sent", title,
                                          f" ({error})" if error else "")
        if self.record is not None:
            try:
                await self.record(sent)
            except Exception as exc:  # noqa: BLE001 - the database may be the very thing that is down
                log.warning("alert not recorded in PostgreSQL: %s", exc)
        self.sent.append(sent)
        return sent


# --- recording -------------------------------------------------------------------------
INSERT = ("INSERT INTO alerts (kinds, servers, title, body, targets, ok, error) VALUES (%s, %s, %s, %s, %s, %s, %s)")


def recorder(pool: Any, targets: Callable[[], int]) -> Record:
    async def record(sent: Sent) -> None:
        async with pool.connection(timeout=5) as conn:
            await conn.execute(INSERT, (sorted({a.kind for a in sent.alerts}),
                                        sorted({a.server or "gateway" for a in sent.alerts}),
                                        sent.title, sent.body, targets(), sent.ok, sent.error))
    return record


def watcher(rt: Any, sink: Any, settings: Callable[[], NotifySettings]) -> Callable[[], list[Alert]]:
    """Polled conditions: disk use from the sampler's host figures, database unreachable."""
    state = {"disk": False, "db": False}

    def check() -> list[Alert]:
        out = []
        disk = (rt.host or {}).get("disk_percent")
        full = disk is not None and disk >= settings().disk_percent
        if full and not state["disk"]:
            out.append(Alert("disk", None, f"the data folder's disk is {disk:.0f}% full"))
        state["disk"] = full
        since = sink.unreachable_since if sink is not None else None  # a property of Sink
        down = since is not None and (time.time() - since.timestamp()) > DATABASE_AFTER
        if down and not state["db"]:
            out.append(Alert("database", None, f"PostgreSQL unreachable since {since:%H:%M:%S}; events wait "
                                               "in the journal"))
        state["db"] = down
        return out

    return check


def start(daemon: Any) -> Dispatcher:
    """Wire a dispatcher into a running daemon: observe its events, read `[notify]` live."""
    settings = live_section(daemon, "notify", parse_settings, NotifySettings,
                            "alerts use the defaults and no URLs until fixed")

    rt = daemon.rt
    dispatcher = Dispatcher(settings, recorder(daemon.store.pool, lambda: len(settings().urls)),
                            watcher(rt, daemon.sink, settings))
    rt.subscribe(dispatcher.observe)
    daemon.notifier = dispatcher
    return dispatcher
