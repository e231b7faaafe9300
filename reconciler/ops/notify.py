"""Alerts: tell the owner when something breaks that the gateway cannot fix by itself, remind
while it lasts, and say when it is back (ops/incidents.py decides; this module listens and sends).

`[notify]` in gateway.toml (validated here; spec.py keeps it as a plain table):

    [notify]
    urls = ["ntfy://my-topic", "json://127.0.0.1:9000/hook"]   # apprise URLs
    events = ["down", "back_up", "health", "port_held", "database", "disk", "tunnel", "sync"]
    group = "1s"           # what happens within this window goes out as one message
    up_for = "5s"          # a server that was down counts as back up after answering this long
    remind = "1h"          # while an incident lasts, say so again this often ("0s": never)
    min_interval = "1m"    # per server: told "back up", it is told it is down again only after this
    health_after = 3       # consecutive failed health checks before "health" alerts
    disk_percent = 90      # "disk" alerts above this use of the data folder's disk

The dispatcher subscribes to the events the loop records; an event about a server makes it look
at that server's state (`incidents.assess`), and while anything is open it looks again four
times a second, so "back up" follows the recovery and nothing is decided on stale news: what is
sent is decided at send time. Limits are per server, never shared. Incidents are recorded in
PostgreSQL (table `incidents`, through the sink: an outage of the database loses nothing), so a
gateway restart neither forgets nor repeats them; every message sent is recorded in `alerts`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from reconciler.core.events import EventKind as K
from reconciler.core.spec import parse_duration
from reconciler.ops import section_errors
from reconciler.ops.incidents import Incident, Message, Policy, Tracker, Trouble, Truth
from reconciler.ops.messages import TITLES, Alert, compose, deliver, load_apprise, severity
from reconciler.platform.aio import wait_for

__all__ = ["ALL_KINDS", "Alert", "Classifier", "Dispatcher", "NotifySettings", "NotifySettingsError", "Sent",
           "TITLES", "compose", "deliver", "load_apprise", "parse_settings", "severity"]
log = logging.getLogger("gateway")
Kind = Literal["down", "back_up", "health", "port_held", "database", "disk", "tunnel", "sync", "battery",
               "rollback"]
ALL_KINDS: tuple[str, ...] = ("down", "back_up", "health", "port_held", "database", "disk", "tunnel", "sync",
                              "battery", "rollback")
Seconds = Annotated[float, BeforeValidator(parse_duration)]
LOOK_EVERY = 0.25  # seconds between looks while an incident is open or a message is gathering


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...] = ()
    events: tuple[Kind, ...] = ALL_KINDS  # type: ignore[assignment]
    group: Seconds = 1.0
    min_interval: Seconds = 60.0  # per server: down again after a "back up"
    remind: Seconds = 3600.0
    health_after: int = Field(3, ge=1)
    up_for: Seconds = 5.0
    disk_percent: float = Field(90.0, gt=0, le=100)

    def policy(self) -> Policy:
        return Policy(up_for=self.up_for, remind=self.remind, min_interval=self.min_interval)


class NotifySettingsError(ValueError):
    pass


def parse_settings(table: dict[str, Any]) -> NotifySettings:
    """`[notify]` -> settings; errors in the words of the config loader (key: message)."""
    try:
        return NotifySettings.model_validate(table)
    except ValidationError as exc:
        raise NotifySettingsError(section_errors("notify", exc)) from None


@dataclass(frozen=True)
class Sent:
    title: str
    body: str
    alerts: tuple[Alert, ...]
    ok: bool
    error: str | None


# --- pure: which recorded events matter --------------------------------------------------
@dataclass
class Classifier:
    """What a recorded event means for the alerts: the escalation it reports (a server's is
    confirmed on its state before anyone is told), a gateway-wide condition that starts or ends,
    or a note. Decided on the kind and the structured detail, never on the words of a reason."""

    health_after: int = 3
    quiet_until: float = 0.0  # after a sleep or a freeze: failures while the host wakes up are no alert
    ends: dict[str, str] = field(default_factory=dict)  # gateway-wide condition that ended -> its cause

    def quiet(self, now: float) -> bool:
        return now < self.quiet_until

    def __call__(self, op: dict[str, Any], now: float = 0.0) -> Alert | None:
        self.ends.clear()
        if op.get("op") != "event":
            return None
        kind, server, reason = op.get("kind"), op.get("server"), op.get("reason") or ""
        detail = op.get("detail") or {}
        if kind == K.HOST_RESUMED:  # reconciler/engine/resume.py: a settling window follows
            self.quiet_until = now + float(detail.get("settle") or 0.0)
            return None
        if self.quiet(now) and kind in (K.ESCALATED, K.HEALTH_FAILED, K.ERROR, K.TUNNEL_OFFLINE):
            return None
        if kind == K.ESCALATED:
            return Alert("down", server, reason)
        if kind == K.ERROR and detail.get("port") is not None:  # another program holds its port
            return Alert("port_held", server, reason)
        if kind == K.HEALTH_FAILED and detail.get("failures") == self.health_after:
            return Alert("health", server, f"{self.health_after} checks failed: {reason}")
        if kind == K.DATABASE_EXITED:
            return Alert("database", None, reason)
        if kind == K.TUNNEL_OFFLINE:
            return Alert("tunnel", None, reason)
        if kind == K.DATABASE_RESTARTED:
            self.ends["database"] = reason
        if kind == K.TUNNEL_ONLINE:
            self.ends["tunnel"] = reason
        if kind == K.SYNC_FAILED:
            return Alert("sync", None, reason, "note")
        if kind == K.ROLLED_BACK:
            return Alert("rollback", server, reason, "note")
        if kind == K.BATTERY_LOW:  # reconciler/host/power.py raises it once per discharge
            return Alert("battery", None, reason, "note")
        return None


# --- the dispatcher ------------------------------------------------------------------------
Record = Callable[[Sent], Awaitable[None]]
TruthOf = Callable[[str], Truth | None]  # a server's truth now (None: no such server)


class Dispatcher:
    """Incidents opened, reminded and resolved; notes; one message per flurry, decided at send time."""

    def __init__(self, settings: Callable[[], NotifySettings], record: Record | None = None,
                 watch: Callable[[], list[Alert]] = list, watch_every: float = 10.0,
                 server_truth: TruthOf | None = None, put: Callable[[dict[str, Any]], None] | None = None,
                 load: Callable[[], Awaitable[list[Incident]]] | None = None,
                 names: Callable[[], Iterable[str]] = tuple) -> None:
        self.settings = settings
        self.record = record
        self.watch = watch  # polled conditions (disk, database) -> alerts
        self.watch_every = watch_every
        self.server_truth = server_truth or (lambda name: None)
        self.put = put or (lambda op: None)  # the sink: incident rows
        self.load = load
        self.names = names  # every server, for the slow level-based sweep
        self.classify = Classifier(settings().health_after)
        self.tracker = Tracker()
        self.flags: dict[str, str] = {}  # gateway-wide conditions now: cause -> text
        self.notes: list[Alert] = []
        self.sent: list[Sent] = []
        self.wake = asyncio.Event()
        self.gathering: float | None = None  # when the first news of the next message came
        self.noted: set[str] = set()  # incidents recorded as not sent (no address yet)

    # --- listening (on the loop, never blocking) -------------------------------------------
    def observe(self, op: dict[str, Any]) -> None:
        """Called with every op the loop records."""
        now = time.time()
        alert = self.classify(op, time.monotonic())
        if alert is not None and alert.what == "note":
            self.notes.append(alert)
        elif alert is not None and alert.server is None:
            self.flags[alert.kind] = alert.text
        for cause in self.classify.ends:
            self.flags.pop(cause, None)
        server = op.get("server") if op.get("op") == "event" else None
        if server is not None:
            self._look(server, now)
        for cause in set(self.flags) | {i.cause for i in self.tracker.open.values() if i.server is None}:
            self._look_gateway(cause, now)
        self.wake.set()

    def add(self, alert: Alert) -> None:
        """A condition found by polling (disk, database) or by hand."""
        if alert.server is None and alert.kind in ("database", "tunnel") and alert.what == "resolved":
            self.flags.pop(alert.kind, None)
        elif alert.server is None and alert.kind in ("database", "tunnel"):
            self.flags[alert.kind] = alert.text
        else:
            self.notes.append(alert if alert.what == "note" else Alert(alert.kind, alert.server, alert.text, "note"))
        self.wake.set()

    def _truth(self, inc_or_name: Incident | str) -> Truth:
        if isinstance(inc_or_name, Incident) and inc_or_name.server is None:
            return self._gateway_truth(inc_or_name.cause)
        name = inc_or_name.server if isinstance(inc_or_name, Incident) else inc_or_name
        assert name is not None
        truth = self.server_truth(name) or Truth(None, False, watched=False)
        if truth.trouble is not None and self.classify.quiet(time.monotonic()):
            return Truth(None, truth.answering, truth.watched)  # waking up: not news yet
        return truth

    def _gateway_truth(self, cause: str) -> Truth:
        text = self.flags.get(cause)
        return Truth(Trouble(cause, text) if text is not None else None, text is None)

    def _look(self, server: str, now: float) -> None:
        self._record(self.tracker.see(server, server, self._truth(server), now))

    def _look_gateway(self, cause: str, now: float) -> None:
        self._record(self.tracker.see(f"gateway:{cause}", None, self._gateway_truth(cause), now))

    def _record(self, incidents: Iterable[Incident]) -> None:
        for inc in incidents:
            self.put(inc.op())

    # --- the task ----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.settings().urls:  # a slow import (and ~3 MB): never on the loop, and only when used
            await asyncio.to_thread(load_apprise)
        if self.load is not None:  # what a previous gateway left open: neither forgotten nor told twice
            try:
                for inc in await self.load():
                    self.tracker.open.setdefault(inc.key, inc)
            except Exception as exc:  # noqa: BLE001 - the database may be away: start without them
                log.warning("open incidents not read from PostgreSQL: %s", exc)
        watched = time.monotonic()
        while True:
            # short looks only while something is about to be said: a message gathering, or an
            # open incident whose subject answers again (its "back up" is due after up_for)
            busy = self.notes or self.gathering is not None or any(
                i.answering_since is not None for i in self.tracker.open.values())
            try:
                await wait_for(self.wake.wait(), LOOK_EVERY if busy else self.watch_every)
            except TimeoutError:
                pass
            self.wake.clear()
            if time.monotonic() - watched >= self.watch_every:
                watched = time.monotonic()
                for alert in self.watch():
                    self.add(alert)
                now = time.time()
                for name in self.names():  # level based: a trouble no event announced is found too
                    self._look(name, now)
            await self.step(time.time())

    async def step(self, now: float) -> Sent | None:
        """Look again at everything open; gather; send what is due once the group window is over."""
        settings = self.settings()
        self.classify.health_after = settings.health_after
        for cause in list(self.flags):
            self._look_gateway(cause, now)
        messages, quiet = self.tracker.due(now, settings.policy(), self._truth)
        self._record(quiet)
        if not settings.urls:  # nobody to tell: incidents stay untold (told once an address exists)
            fresh = [m for m in messages if m.what == "opened" and m.incident and m.incident.id not in self.noted]
            notes, self.notes, self.gathering = self.notes, [], None
            self.noted.update(m.incident.id for m in fresh if m.incident)
            if not fresh and not notes:
                return None
            # recorded once as "did not go out", so the settings page shows what was missed
            return await self.send([Alert(m.kind, m.server, m.text, m.what) for m in fresh] + notes, settings)
        if not messages and not self.notes:
            self.gathering = None
            return None
        if self.gathering is None:
            self.gathering = now
        if now - self.gathering < settings.group:
            return None
        self.gathering = None
        chosen: list[Message] = []
        skipped: list[Message] = []
        for m in messages:
            (chosen if m.kind in settings.events else skipped).append(m)
        for m in skipped:  # not wanted: a resolution closes quietly; an opening stays untold
            if m.what == "resolved":
                self._record(self.tracker.told([m], now, True))
        notes, self.notes = [n for n in self.notes if n.kind in settings.events or n.kind == "test"], []
        alerts = [Alert(m.kind, m.server, m.text, m.what) for m in chosen] + notes
        if not alerts:
            return None
        sent = await self.send(alerts, settings)
        self._record(self.tracker.told(chosen, time.time(), sent.ok))
        return sent

    async def send(self, batch: list[Alert], settings: NotifySettings, test: bool = False) -> Sent:
        """Send one message now. A `test` one neither waits for nor delays the real alerts."""
        title, body = compose(batch)
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
