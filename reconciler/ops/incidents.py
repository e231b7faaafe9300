"""Incidents: what the owner is told, as the best monitors do it (Uptime Kuma's down and up
notifications with a resend interval, an incident that is opened, reminded and resolved).

One incident per server (and per gateway-wide cause: the database, the tunnel), with its cause:
- opened when the trouble escalates: a crash loop reached `restart.alert_after`, a running
  server failed `health_after` checks in a row (or was restarted because it did not answer),
  another program holds its port;
- reminded every `remind` while it lasts;
- resolved once the server has answered for `up_for`: "back up after 4 min".

Level based, like the planner: `assess` reads a server's state as it is now, so a crash loop that
comes back after a "back up" is a new incident even though no new "escalated" event is recorded,
and every message is decided again at send time (`Tracker.due`): a "down" that is no longer true
is never sent, and a "back up" whose server fell over again is not either. Limits are per server:
one server's messages never wait for another's. Pure: the dispatcher (ops/notify.py) feeds the
truth and the clock (epoch seconds, so a record survives a gateway restart) and sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.core.facts import CheckFact, ExitFact, HeldPort
from reconciler.core.reasons import Reason
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Phase, ServerState

P = Phase
SERVER_CAUSES = ("down", "health", "port_held")
GATEWAY_CAUSES = ("database", "tunnel")
RETRY_FAILED = 30.0  # seconds before a message that did not go out is tried again


@dataclass(frozen=True)
class Trouble:
    cause: str  # "down" | "health" | "port_held" | "database" | "tunnel" (the alert kinds of [notify] events)
    text: str  # what is wrong, in plain words for the message


@dataclass(frozen=True)
class Truth:
    """What is true of one incident's subject now."""

    trouble: Trouble | None
    answering: bool  # up and answering its check (a server), or back (the database, the tunnel)
    watched: bool = True  # meant to run (not stopped by the owner, not removed)


@dataclass
class Incident:
    server: str | None  # None: the gateway itself (database, tunnel)
    cause: str
    text: str
    opened_at: float  # epoch seconds
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    told_at: float | None = None  # the owner was told it opened (None: not yet)
    reminded_at: float | None = None
    reminders: int = 0
    resolved_at: float | None = None
    resolved_told: bool = False
    answering_since: float | None = None  # (not recorded: a restarted gateway looks again)
    retry_at: float = 0.0  # a message about it did not go out: not before this

    @property
    def key(self) -> str:
        return self.server if self.server is not None else f"gateway:{self.cause}"

    def op(self) -> dict[str, Any]:
        """The sink's op for its row (an upsert by id: a replayed journal lands once)."""
        return {"op": "incident", "id": self.id, "server": self.server, "cause": self.cause, "text": self.text,
                "opened_at": _iso(self.opened_at), "told_at": _iso(self.told_at),
                "reminded_at": _iso(self.reminded_at), "reminders": self.reminders,
                "resolved_at": _iso(self.resolved_at), "resolved_told": self.resolved_told}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Incident:
        return cls(row["server"], row["cause"], row["text"], _epoch(row["opened_at"]) or 0.0, str(row["id"]),
                   _epoch(row.get("told_at")), _epoch(row.get("reminded_at")), int(row.get("reminders") or 0))


@dataclass(frozen=True)
class Message:
    what: str  # "opened" | "reminder" | "resolved" | "note"
    kind: str  # the [notify] events name it falls under ("back_up" for a resolution)
    server: str | None
    text: str
    incident: Incident | None = None


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


# --- a server's truth, from its state (pure) ---------------------------------------------------
def answering(state: ServerState) -> bool:
    return (state.phase is P.RUNNING and state.healthy_since is not None and not state.health_failures
            and state.not_answering is None)


def assess(state: ServerState, spec: ServerSpec | None, watched: bool, health_after: int) -> Truth:
    """Is this server in trouble worth telling, answering, or neither (starting after a fix)?"""
    if spec is None or not spec.enabled or not watched:
        return Truth(None, False, watched=False)
    if answering(state) and not _unchecked_adoption(state, spec):
        return Truth(None, True)
    if state.phase is P.ERROR and state.held is not None:
        return Truth(Trouble("port_held", held_text(state.held)), False)
    check = state.not_answering
    if check is not None and (state.phase is not P.RUNNING or state.health_failures >= health_after):
        return Truth(Trouble("health", check_text(check)), False)
    if state.failures >= spec.restart.alert_after and state.phase is not P.RUNNING:
        return Truth(Trouble("down", f"keeps crashing ({state.failures} times in a row)"
                                     + (f": {exit_text(state.ended)}" if state.ended else "")), False)
    if state.phase is P.ERROR and state.failures >= spec.restart.alert_after:
        return Truth(Trouble("down", f"cannot start ({state.failures} times in a row)"), False)
    return Truth(None, False)


def _unchecked_adoption(state: ServerState, spec: ServerSpec) -> bool:
    """Adopted after a gateway restart and not checked yet: it counts as answering for the
    planner, but an incident is not resolved on that (the first check connects and measures)."""
    return (state.cause is Reason.ADOPTED and state.last_latency_ms is None
            and spec.effective_health().type != "none")


def held_text(held: HeldPort) -> str:
    who = f"{held.program} (pid {held.pid})" if held.program else "another program"
    return f"cannot start: port {held.port} is used by {who}"


def check_text(check: CheckFact) -> str:
    again = f"; restarted {check.restarts} time{'s' if check.restarts != 1 else ''}" if check.restarts else ""
    return f"not answering: {check.error}{again}"


def exit_text(ended: ExitFact) -> str:
    if ended.signal_name and ended.by == "outside":
        return f"killed from outside the gateway ({ended.signal_name})"
    if ended.signal_name:
        return f"ended by {ended.signal_name}"
    return f"exit code {ended.code}" if ended.code is not None else "it ended"


def minutes(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


# --- the tracker ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    up_for: float = 5.0  # answering this long: resolved
    remind: float = 3600.0  # a reminder this often while it lasts (0: never)
    min_interval: float = 60.0  # a server told "back up" is told it is down again only after this


class Tracker:
    """The open incidents and what is due to be said about them."""

    def __init__(self, incidents: Iterable[Incident] = ()) -> None:
        self.open: dict[str, Incident] = {i.key: i for i in incidents}
        self.resolved_told_at: dict[str, float] = {}  # per subject: when it was last told "back up"

    def see(self, key: str, server: str | None, truth: Truth, now: float) -> list[Incident]:
        """Take in the truth about one subject; the incidents whose record changed."""
        inc = self.open.get(key)
        changed: list[Incident] = []
        trouble = truth.trouble
        if trouble is not None and inc is not None and inc.cause != trouble.cause and inc.told_at is None:
            inc.cause, inc.text = trouble.cause, trouble.text  # not told yet: it is the same news
            changed.append(inc)
        elif trouble is not None and (inc is None or inc.cause != trouble.cause):
            if inc is not None:
                changed.append(self._close(inc, now))  # another cause: a new incident, told on its own
            inc = self.open[key] = Incident(server, trouble.cause, trouble.text, now)
            changed.append(inc)
        if inc is None:
            return changed
        if trouble is not None:
            inc.text, inc.answering_since = trouble.text, None
        elif not truth.watched:
            changed.append(self._close(inc, now))  # stopped by the owner, removed: nothing to tell
        elif truth.answering:
            inc.answering_since = inc.answering_since if inc.answering_since is not None else now
        else:
            inc.answering_since = None
        return changed

    def _close(self, inc: Incident, now: float) -> Incident:
        inc.resolved_at = now
        self.open.pop(inc.key, None)
        return inc

    def due(self, now: float, policy: Policy, truth_of: Callable[[Incident], Truth]) -> tuple[list[Message], list[Incident]]:
        """What to say now, each decided on the truth as it is now: (messages, incidents closed
        without a word: they were over before anyone was told)."""
        out: list[Message] = []
        quiet: list[Incident] = []
        for inc in list(self.open.values()):
            if now < inc.retry_at:
                continue
            truth = truth_of(inc)
            self.see(inc.key, inc.server, truth, now)  # at send time: as it is now
            if inc.resolved_at is not None:  # the owner stopped it, or it failed another way (its own incident)
                quiet.append(inc)
                continue
            up = inc.answering_since is not None and now - inc.answering_since >= policy.up_for
            if inc.told_at is None:
                if truth.trouble is not None and now >= self.resolved_told_at.get(inc.key, -1e18) + policy.min_interval:
                    out.append(Message("opened", inc.cause, inc.server, inc.text, inc))
                elif up:  # over before anyone was told: nothing to say
                    quiet.append(self._close(inc, now))
            elif up:
                out.append(Message("resolved", "back_up", inc.server, self._back(inc, now), inc))
            elif truth.trouble is not None and policy.remind > 0 and \
                    now - (inc.reminded_at or inc.told_at) >= policy.remind:
                out.append(Message("reminder", inc.cause, inc.server,
                                   f"still {inc.text} (since {minutes(now - inc.opened_at)} ago)", inc))
        return out, quiet

    @staticmethod
    def _back(inc: Incident, now: float) -> str:
        return f"back up after {minutes(now - inc.opened_at)}"

    def told(self, messages: Iterable[Message], now: float, ok: bool) -> list[Incident]:
        """Messages went out (ok) or did not; the incidents whose record changed."""
        changed: list[Incident] = []
        for m in messages:
            inc = m.incident
            if inc is None:
                continue
            if not ok:
                inc.retry_at = now + RETRY_FAILED
                continue
            if m.what == "opened":
                inc.told_at = now
            elif m.what == "reminder":
                inc.reminded_at, inc.reminders = now, inc.reminders + 1
            elif m.what == "resolved":
                inc.resolved_told = True
                self.resolved_told_at[inc.key] = now
                if inc.resolved_at is None:
                    self._close(inc, now)
            changed.append(inc)
        return changed
