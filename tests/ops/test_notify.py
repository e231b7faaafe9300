"""Alerts as incidents (opened, reminded, resolved), decided on the servers' state at send time,
delivered for real (apprise's json:// to an HTTP receiver on 127.0.0.1), grouped, limited per
server, recorded in PostgreSQL with their outcome and surviving a gateway restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reconciler.core.facts import CheckFact, ExitFact, HeldPort
from reconciler.core.reasons import Reason
from reconciler.core.spec import HttpHealth, ServerSpec
from reconciler.core.state import Phase, ServerState
from reconciler.ops.alerting import recorder
from reconciler.ops.incidents import Incident, Policy, Tracker, Trouble, Truth, assess
from reconciler.ops.notify import (
    Alert,
    Classifier,
    Dispatcher,
    NotifySettings,
    NotifySettingsError,
    compose,
    parse_settings,
)
from reconciler.store import Store
from tests.fix_children import toml_str
from tests.fix_db import rows


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def ev(kind: str, server: str | None = "blog", reason: str = "why", **kw: Any) -> dict[str, Any]:
    return {"op": "event", "kind": kind, "server": server, "reason": reason, **kw}


SPEC = ServerSpec.model_validate({"name": "blog", "command": ["python", "x.py"], "port": None,
                                  "restart": {"alert_after": 3}})
CODE3 = ExitFact.of(3, None)


def crash_looping(failures: int = 3) -> ServerState:
    return ServerState("blog", Phase.BACKOFF, failures=failures, ended=CODE3, spec_hash="h")


def answering_now() -> ServerState:
    return ServerState("blog", Phase.RUNNING, healthy_since=1.0, spec_hash="h")


def test_a_servers_truth_comes_from_its_state() -> None:
    assert assess(crash_looping(2), SPEC, True, 3).trouble is None  # not escalated yet
    down = assess(crash_looping(3), SPEC, True, 3).trouble
    assert down == Trouble("down", "keeps crashing (3 times in a row): exit code 3")
    assert assess(crash_looping(3), SPEC, False, 3) == Truth(None, False, watched=False)  # stopped by the owner
    assert assess(answering_now(), SPEC, True, 3) == Truth(None, True)
    check = CheckFact("HTTP 500 from http://127.0.0.1:1/health", 0.0, "status", 500, restarts=1)
    restarted = ServerState("blog", Phase.STARTING, not_answering=check)  # restarted, still not answering
    assert assess(restarted, SPEC, True, 3).trouble == Trouble(
        "health", "not answering: HTTP 500 from http://127.0.0.1:1/health; restarted 1 time")
    blip = ServerState("blog", Phase.RUNNING, healthy_since=1.0, health_failures=1, not_answering=check)
    assert assess(blip, SPEC, True, 3) == Truth(None, False)  # one failed check: neither answering nor news
    adopted = ServerState("blog", Phase.RUNNING, healthy_since=1.0, cause=Reason.ADOPTED)  # after a restart
    http = SPEC.model_copy(update={"health": HttpHealth(type="http")})
    assert assess(adopted, http, True, 3) == Truth(None, False)  # not checked yet: no "back up" on it
    assert assess(adopted.update(last_latency_ms=2.0), http, True, 3) == Truth(None, True)
    held = ServerState("blog", Phase.ERROR, failures=1, held=HeldPort(8080, 12, "nginx"))
    assert assess(held, SPEC, True, 3).trouble == Trouble("port_held", "cannot start: port 8080 is used by nginx (pid 12)")


POLICY = Policy(up_for=5.0, remind=600.0, min_interval=60.0)


def test_an_incident_is_opened_reminded_and_resolved() -> None:
    t = Tracker()
    down = Truth(Trouble("down", "keeps crashing"), False)
    [opened] = t.see("blog", "blog", down, 100.0)
    msgs, _ = t.due(100.0, POLICY, lambda inc: down)
    assert [(m.what, m.kind, m.text) for m in msgs] == [("opened", "down", "keeps crashing")]
    t.told(msgs, 101.0, True)
    assert t.due(102.0, POLICY, lambda inc: down) == ([], [])  # told once
    msgs, _ = t.due(701.0, POLICY, lambda inc: down)
    assert [(m.what, m.text) for m in msgs] == [("reminder", "still keeps crashing (since 10 min ago)")]
    t.told(msgs, 701.0, True)
    up = Truth(None, True)
    assert t.due(800.0, POLICY, lambda inc: up) == ([], [])  # answering: up for 5 s first
    msgs, _ = t.due(805.0, POLICY, lambda inc: up)
    assert [(m.what, m.kind, m.text) for m in msgs] == [("resolved", "back_up", "back up after 11 min")]
    [closed] = t.told(msgs, 805.5, True)
    assert closed is opened and closed.resolved_told and not t.open


def test_a_down_that_is_no_longer_true_is_never_sent() -> None:
    t = Tracker()
    t.see("blog", "blog", Truth(Trouble("down", "keeps crashing"), False), 100.0)
    # at send time it answers again: nothing is said, not the down and not a "back up" for it
    msgs, quiet = t.due(101.0, POLICY, lambda inc: Truth(None, True))
    assert msgs == [] and quiet == []
    msgs, quiet = t.due(106.5, POLICY, lambda inc: Truth(None, True))
    assert msgs == [] and [i.resolved_at for i in quiet] == [106.5] and not t.open
    # told "down", then the owner stops it: no "back up" (it is not), the incident closes quietly
    t.see("blog", "blog", Truth(Trouble("down", "x"), False), 200.0)
    t.told(t.due(200.0, POLICY, lambda inc: Truth(Trouble("down", "x"), False))[0], 200.0, True)
    msgs, quiet = t.due(210.0, POLICY, lambda inc: Truth(None, False, watched=False))
    assert msgs == [] and len(quiet) == 1 and not t.open
    # a "back up" whose server fell over again before it went out is not sent
    t.see("blog", "blog", Truth(Trouble("down", "x"), False), 300.0)
    t.told(t.due(300.0, POLICY, lambda inc: Truth(Trouble("down", "x"), False))[0], 300.0, True)
    t.see("blog", "blog", Truth(None, True), 301.0)
    assert t.due(306.0, POLICY, lambda inc: Truth(Trouble("down", "again"), False)) == ([], [])


def test_limits_are_per_server_never_shared() -> None:
    t = Tracker()
    for name in ("blog", "api"):
        t.see(name, name, Truth(Trouble("down", "x"), False), 100.0)
    msgs, _ = t.due(100.0, POLICY, lambda inc: Truth(Trouble("down", "x"), False))
    assert sorted(m.server for m in msgs) == ["api", "blog"]
    t.told(msgs, 100.0, True)
    t.see("blog", "blog", Truth(None, True), 110.0)
    back, _ = t.due(115.0, POLICY, lambda inc: Truth(None, True) if inc.server == "blog" else Truth(Trouble("down", "x"), False))
    assert [m.server for m in back] == ["blog"]
    t.told(back, 115.0, True)
    # blog down again 20 s after its "back up": told once min_interval has passed, if still true...
    t.see("blog", "blog", Truth(Trouble("down", "again"), False), 135.0)
    # ...while another server's news is not held back by it
    t.see("web", "web", Truth(Trouble("down", "y"), False), 135.0)
    msgs, _ = t.due(135.0, POLICY, lambda inc: Truth(Trouble("down", "z"), False))
    assert [m.server for m in msgs] == ["web"]
    msgs, _ = t.due(175.0, POLICY, lambda inc: Truth(Trouble("down", "z"), False))
    assert sorted(m.server for m in msgs) == ["blog", "web"]


def test_classifier_names_the_escalation_a_kind_reports() -> None:
    c = Classifier(health_after=2)
    assert c(ev("escalated", reason="5 failures in a row")) == Alert("down", "blog", "5 failures in a row")
    assert c(ev("health_failed", detail={"failures": 1})) is None
    assert c(ev("health_failed", reason="timeout", detail={"failures": 2})).kind == "health"
    assert c(ev("error", reason="port 8080 is held by nginx (pid 4)")) is None  # words decide nothing
    assert c(ev("error", reason="port 8080 is held by nginx (pid 4)", detail={"port": 8080})).kind == "port_held"
    assert c(ev("database_exited", None)).kind == "database"
    assert c(ev("rolled_back", reason="it crashed")).what == "note"
    assert c({"op": "state", "row": {}}) is None


def test_compose_one_message_for_a_flurry() -> None:
    title, body = compose([Alert("down", "blog", "3 failures"), Alert("down", "api", "3 failures"),
                           Alert("disk", None, "95% full")])
    assert title == "omen-gateway: blog, api down; gateway disk almost full"
    assert body.splitlines() == ["[down] blog: 3 failures", "[down] api: 3 failures",
                                 "[disk almost full] gateway: 95% full"]
    assert compose([Alert("down", "blog", "still x", "reminder")])[0] == "omen-gateway: blog still down"


def test_settings_are_validated_with_words() -> None:
    assert parse_settings({"urls": ["json://x"], "group": "2s"}).group == 2.0
    assert parse_settings({}).up_for == 5.0 and parse_settings({"remind": "30m"}).remind == 1800.0
    with pytest.raises(NotifySettingsError, match=r"notify.events.0: Input should be 'down'"):
        parse_settings({"events": ["everything"]})
    with pytest.raises(NotifySettingsError, match=r"notify.colour: Extra inputs are not permitted"):
        parse_settings({"colour": "red"})


async def test_alerts_follow_the_state_recorded_and_survive_a_restart(receiver: Receiver, store: Store,
                                                                     tmp_path: Path) -> None:
    """A real dispatcher on a real runtime and sink: two servers escalate (one message), one comes
    back ("back up" within about up_for), and a gateway restart neither forgets the other's open
    incident nor tells it again; it is resolved after the restart."""
    from reconciler.engine.runtime import Runtime
    from reconciler.ops.alerting import server_truth
    from reconciler.store.sink import Sink

    settings = NotifySettings(urls=(receiver.url,), group="200ms", up_for="300ms", min_interval="0s")
    specs = {n: SPEC.model_copy(update={"name": n}) for n in ("blog", "api")}

    async def load() -> list[Incident]:
        return [Incident.from_row(r) for r in await store.load_open_incidents()]

    def dispatcher(rt: Runtime) -> Dispatcher:
        d = Dispatcher(lambda: settings, recorder(store.pool, lambda: 1), server_truth=server_truth(
            rt, lambda: specs, lambda: settings), put=rt.put, load=load, names=lambda: list(rt.states))
        rt.subscribe(d.observe)
        return d

    sink = Sink(store, tmp_path / "journal.jsonl")
    sink_task = asyncio.create_task(sink.run())
    rt = Runtime(tmp_path, tmp_path, sink.put)
    d = dispatcher(rt)
    task = asyncio.create_task(d.run())
    try:
        for name in ("blog", "api"):
            rt.states[name] = ServerState(name, Phase.EXITED, failures=2, spec_hash="h")
            rt.set_phase(name, Phase.BACKOFF, Reason.CRASH, failures=3, ended=CODE3)
        got = await asyncio.to_thread(receiver.wait, 1)
        assert len(got) == 1 and got[0][1]["title"] == "omen-gateway: blog, api down", got
        assert got[0][1]["type"] == "failure"
        back = time.monotonic()
        rt.set_phase("blog", Phase.STARTING, Reason.RETRY)
        rt.set_phase("blog", Phase.RUNNING, Reason.HEALTHY, healthy_since=time.monotonic(), failures=0)
        got = await asyncio.to_thread(receiver.wait, 2)
        assert len(got) == 2 and got[1][1]["title"] == "omen-gateway: blog back up", got
        assert "back up after" in got[1][1]["message"] and got[1][1]["type"] == "success"
        assert 0.3 <= time.monotonic() - back < 3.0  # up_for, the group window, a delivery
        while "blog" in d.tracker.open:  # closed once delivered and recorded
            await asyncio.sleep(0.01)
        await sink.flush(5.0)
    finally:
        task.cancel()
    # the gateway restarts: api's incident is read back, not told again; api comes back: told
    rt2 = Runtime(tmp_path, tmp_path, sink.put)
    rt2.states["api"] = crash_looping().update(name="api")
    d2 = dispatcher(rt2)
    task = asyncio.create_task(d2.run())
    try:
        await asyncio.sleep(1.0)
        assert len(receiver.got) == 2  # still down: nothing new to say
        rt2.set_phase("api", Phase.STARTING, Reason.BOOT)
        rt2.set_phase("api", Phase.RUNNING, Reason.HEALTHY, healthy_since=time.monotonic(), failures=0)
        got = await asyncio.to_thread(receiver.wait, 3)
        assert len(got) == 3 and got[2][1]["title"] == "omen-gateway: api back up", got
        while d2.tracker.open:
            await asyncio.sleep(0.01)
        await sink.flush(5.0)
    finally:
        task.cancel()
        await sink.close()
        sink_task.cancel()
    recorded = await rows(store, "SELECT server, cause, told_at IS NOT NULL, resolved_told FROM incidents ORDER BY server")
    assert recorded == [("api", "down", True, True), ("blog", "down", True, True)]
    sent = await rows(store, "SELECT kinds, servers, ok FROM alerts ORDER BY id")
    assert sent == [(["down"], ["api", "blog"], True), (["back_up"], ["blog"], True), (["back_up"], ["api"], True)]


async def test_a_failed_delivery_is_recorded_with_its_reason(store: Store) -> None:
    settings = NotifySettings(urls=("json://127.0.0.1:9/nothing-listens",), group="0ms", min_interval="0ms")
    d = Dispatcher(lambda: settings, recorder(store.pool, lambda: 1))
    sent = await d.send([Alert("disk", None, "95% full")], settings)
    assert not sent.ok and sent.error
    assert await rows(store, "SELECT ok, error IS NOT NULL FROM alerts") == [(False, True)]
    bad = await d.send([Alert("disk", None, "x")], NotifySettings(urls=("nonsense",)))
    assert bad.error == "not an apprise URL: nonsense"


def test_cli_notify_test_delivers(receiver: Receiver, tmp_path: Path, pg_dsn: str) -> None:
    config = tmp_path / "gateway.d"
    config.mkdir()
    (config / "gateway.toml").write_text(f'[notify]\nurls = ["{receiver.url}"]\n')
    done = subprocess.run([sys.executable, "-m", "reconciler", "notify", "test", "--config", str(config),
                           "--data-dir", str(tmp_path / "data"), "--no-record"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    got = receiver.wait(1)
    assert got[0][1]["title"] == "omen-gateway: test alert"
    assert "sent to 1 target" in done.stdout


def test_the_daemon_alerts_when_a_server_stays_down_and_when_the_fix_brings_it_back(gateway: Any,
                                                                                    receiver: Receiver) -> None:
    crash = Path(__file__).resolve().parent.parent / "children" / "crash_after.py"
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text(toml.read_text() + f'[notify]\nurls = ["{receiver.url}"]\ngroup = "100ms"\nup_for = "1s"\n')
    restart = '[health]\ntype = "none"\n[restart]\nbackoff_start = "30s"\nbackoff_max = "5m"\nalert_after = 2\n'
    gateway.write("flaky", f'command = [{toml_str(sys.executable)}, {toml_str(crash)}, "3"]\n{restart}')
    gateway.start()
    got = receiver.wait(1, timeout=20)
    assert got and got[0][1]["title"] == "omen-gateway: flaky down", got
    assert "keeps crashing (2 times in a row): exit code 3" in got[0][1]["message"]
    # the fix is saved while it waits 30 s for its next try: it starts at once, and "back up" follows
    saved = time.monotonic()
    gateway.write("flaky", f'command = [{toml_str(sys.executable)}, {toml_str(crash)}, "0", "600"]\n{restart}')
    got = receiver.wait(2, timeout=20)
    assert len(got) == 2 and got[1][1]["title"] == "omen-gateway: flaky back up", got
    assert time.monotonic() - saved < 10  # not after the 30 s backoff
    with psycopg.connect(gateway.read_dsn(), options=f"-c search_path={gateway.schema}") as conn:
        deadline = time.monotonic() + 10  # delivered first, then recorded (from the sending thread's result)
        while len(recorded := conn.execute("SELECT kinds, servers, ok FROM alerts ORDER BY id").fetchall()) < 2:
            assert time.monotonic() < deadline, "the alerts were never recorded"
            time.sleep(0.05)
        assert recorded == [(["down"], ["flaky"], True), (["back_up"], ["flaky"], True)]
        while (incident := conn.execute("SELECT server, cause, resolved_told FROM incidents").fetchall()) != [
                ("flaky", "down", True)]:  # written through the sink after the delivery
            assert time.monotonic() < deadline, incident
            time.sleep(0.05)
    gateway.stop()


async def test_polled_conditions_read_a_real_sink_and_the_host_figures(store: Store, tmp_path: Path) -> None:
    """The disk and database watch runs against the daemon's real Sink (its outage fields are
    properties) and the sampler's host figures."""
    from types import SimpleNamespace

    from reconciler.ops.alerting import watcher
    from reconciler.store.sink import Sink

    sink = Sink(store, tmp_path / "journal.jsonl")
    rt = SimpleNamespace(host={"disk_percent": 50.0})
    check = watcher(rt, sink, lambda: NotifySettings(disk_percent=90))
    assert check() == []  # database up, disk fine
    rt.host["disk_percent"] = 95.0
    alerts = check()
    assert [(a.kind, a.text) for a in alerts] == [("disk", "the data folder's disk is 95% full")]
    assert check() == []  # once per episode
