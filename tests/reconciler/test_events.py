"""The one vocabulary of events: every kind is emitted somewhere, every alert a kind names is
raised by the classifier from that kind (and its structured detail), and listeners hear
events through `Runtime.subscribe`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.core.events import EventKind
from reconciler.engine.runtime import Runtime
from reconciler.ops.notify import ALL_KINDS, Classifier

SOURCE = Path(__file__).resolve().parents[2]
EMITTED = re.compile(r"\.event\(\s*(?:EventKind|K)\.([A-Z_]+)")


def emitters() -> dict[str, list[str]]:
    """EventKind member name -> the files that record it (rt.event(EventKind.X, ...))."""
    found: dict[str, list[str]] = {}
    for path in [*SOURCE.glob("reconciler/**/*.py"), *SOURCE.glob("webview/**/*.py")]:
        for name in EMITTED.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(str(path.relative_to(SOURCE)))
    return found


def test_every_event_kind_is_emitted_by_name():
    missing = [k.name for k in EventKind if k.name not in emitters()]
    assert not missing, f"kinds nothing records (dead listeners wait for them): {missing}"


def test_no_event_is_recorded_under_a_free_string():
    free = []
    for path in [*SOURCE.glob("reconciler/**/*.py"), *SOURCE.glob("webview/**/*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.event\(\s*[\"']", line):
                free.append(f"{path.relative_to(SOURCE)}:{number}: {line.strip()}")
    assert not free, free


def test_an_unknown_kind_is_refused_when_recorded(tmp_path: Path):
    rt = Runtime(tmp_path, tmp_path, lambda op: None)
    with pytest.raises(ValueError):
        rt.event("tunnel_down", None, "nothing emits this")  # type: ignore[arg-type]


ALERT_CASES = {
    EventKind.ESCALATED: ({}, "down"),
    EventKind.ERROR: ({"port": 8080, "holder_pid": 1}, "port_held"),
    EventKind.HEALTH_FAILED: ({"failures": 3}, "health"),
    EventKind.DATABASE_EXITED: ({}, "database"),
    EventKind.TUNNEL_OFFLINE: ({}, "tunnel"),
    EventKind.SYNC_FAILED: ({}, "sync"),
    EventKind.BATTERY_LOW: ({"percent": 15}, "battery"),
    EventKind.ROLLED_BACK: ({"failed_hash": "h"}, "rollback"),
}


@pytest.mark.parametrize("kind", [k for k in EventKind if k.alert])
def test_every_alert_a_kind_names_is_raised_from_that_kind(kind: EventKind):
    detail, alert = ALERT_CASES[kind]
    assert kind.alert == alert and alert in ALL_KINDS
    op = {"op": "event", "kind": str(kind), "server": "blog", "reason": "it happened", "detail": detail}
    got = Classifier(health_after=3)(op, 100.0)
    assert got is not None and got.kind == alert


def test_an_error_without_a_port_is_not_a_port_alert():
    # the alert is decided on the structured detail, never on the words of the reason
    op = {"op": "event", "kind": "error", "server": "blog", "reason": "port 80 is held by pid 1 (x)", "detail": {}}
    assert Classifier()(op, 0.0) is None


def test_listeners_hear_the_kinds_they_asked_for(tmp_path: Path):
    ops: list[dict[str, object]] = []
    rt = Runtime(tmp_path, tmp_path, ops.append)
    heard: list[str] = []
    only_errors: list[str] = []
    rt.subscribe(lambda op: heard.append(str(op["kind"])))
    rt.subscribe(lambda op: only_errors.append(str(op["kind"])), kinds=[EventKind.ERROR])

    def broken(op: dict[str, object]) -> None:
        raise RuntimeError("a listener's bug")

    rt.subscribe(broken)
    rt.event(EventKind.INTENT, "blog", "stop requested")
    rt.event(EventKind.ERROR, "blog", "port held", detail={"port": 1})
    assert heard == ["intent", "error"] and only_errors == ["error"]
    assert [op["kind"] for op in ops] == ["intent", "error"]  # recorded, whatever the listener did


def test_the_tunnel_alert_is_raised_again_after_it_was_back_online():
    """One incident per outage of the tunnel: opened once, resolved when it is back, and a later
    outage is news again (the dispatcher's tracker, fed by the classifier's kinds)."""
    from reconciler.ops.notify import Dispatcher, NotifySettings

    d = Dispatcher(lambda: NotifySettings())
    offline = {"op": "event", "kind": "tunnel_offline", "server": "cloudflared", "reason": "not ready", "detail": {}}
    online = {"op": "event", "kind": "tunnel_online", "server": "cloudflared", "reason": "ready", "detail": {}}
    d.observe(offline)
    d.observe(offline)
    [first] = d.tracker.open.values()
    assert first.cause == "tunnel" and first.server is None  # one incident, however often it is said
    d.observe(online)
    assert d.tracker.open["gateway:tunnel"].answering_since is not None  # back: resolved after up_for
    d.tracker.due(first.answering_since + 60, NotifySettings().policy(), d._truth)
    assert not d.tracker.open  # (never told: closed quietly)
    d.observe(offline)
    assert d.tracker.open["gateway:tunnel"] is not first  # a new incident
