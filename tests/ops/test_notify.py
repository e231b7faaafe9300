"""Alerts delivered for real (apprise's json:// to an HTTP receiver on 127.0.0.1), grouped,
rate-limited, recorded in PostgreSQL with their outcome."""

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

from reconciler.ops.notify import (
    Alert,
    Classifier,
    Dispatcher,
    NotifySettings,
    NotifySettingsError,
    compose,
    parse_settings,
    recorder,
)
from reconciler.store import Store
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


def test_classifier_alerts_once_per_incident() -> None:
    c = Classifier(health_after=2)
    assert c(ev("escalated", reason="5 failures in a row")) == Alert("down", "blog", "5 failures in a row")
    assert c(ev("escalated")) is None  # still the same incident
    assert c(ev("transition", to_phase="running"), now=100.0) is None  # up, but is it stable?
    assert c(ev("transition", to_phase="exited"), now=101.0) is None  # no: still the same incident
    assert c.due(200.0) == []
    assert c(ev("transition", to_phase="running"), now=300.0) is None
    assert c.due(305.0) == [] and c.due(310.0) == [Alert("back_up", "blog", "running again (up for 10s)")]
    assert c(ev("transition", to_phase="running"), now=400.0) is None and c.due(500.0) == []  # was not down
    assert c(ev("health_failed", detail={"failures": 1})) is None
    assert c(ev("health_failed", reason="timeout", detail={"failures": 2})).kind == "health"
    assert c(ev("error", reason="port 8080 is held by nginx (pid 4)")) is None  # words decide nothing
    assert c(ev("error", reason="port 8080 is held by nginx (pid 4)", detail={"port": 8080})).kind == "port_held"
    assert c(ev("database_exited", None)).kind == "database"
    assert c({"op": "state", "row": {}}) is None


def test_compose_one_message_for_a_flurry() -> None:
    title, body = compose([Alert("down", "blog", "3 failures"), Alert("down", "api", "3 failures"),
                           Alert("disk", None, "95% full")])
    assert title == "omen-gateway: blog, api down; gateway disk almost full"
    assert body.splitlines() == ["[down] blog: 3 failures", "[down] api: 3 failures",
                                 "[disk almost full] gateway: 95% full"]


def test_settings_are_validated_with_words() -> None:
    assert parse_settings({"urls": ["json://x"], "group": "2s"}).group == 2.0
    with pytest.raises(NotifySettingsError, match=r"notify.events.0: Input should be 'down'"):
        parse_settings({"events": ["everything"]})
    with pytest.raises(NotifySettingsError, match=r"notify.colour: Extra inputs are not permitted"):
        parse_settings({"colour": "red"})


async def test_a_flurry_is_one_message_then_rate_limited_and_recorded(receiver: Receiver, store: Store) -> None:
    settings = NotifySettings(urls=(receiver.url,), group="200ms", min_interval="1s", up_for="300ms")
    d = Dispatcher(lambda: settings, recorder(store.pool, lambda: 1))
    task = asyncio.create_task(d.run())
    try:
        started = time.monotonic()
        d.observe(ev("escalated", "blog", "3 failures in a row"))
        d.observe(ev("escalated", "api", "3 failures in a row"))
        d.observe(ev("intent", "blog"))  # not an alert
        got = await asyncio.to_thread(receiver.wait, 1)
        assert len(got) == 1
        path, payload = got[0]
        assert path == "/hook" and payload["title"] == "omen-gateway: blog, api down"
        assert "[down] api: 3 failures in a row" in payload["message"]
        assert payload["type"] == "failure"  # was "info" for every alert
        d.observe(ev("transition", "blog", to_phase="running"))
        got = await asyncio.to_thread(receiver.wait, 2)
        assert len(got) == 2 and got[1][1]["title"] == "omen-gateway: blog back up"
        assert got[1][1]["type"] == "success"
        assert time.monotonic() - started >= 1.0  # the second waited for min_interval
        while len(d.sent) < 2:  # recorded after delivery
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    recorded = await rows(store, "SELECT kinds, servers, ok, error, targets FROM alerts ORDER BY id")
    assert recorded == [(["down"], ["api", "blog"], True, None, 1), (["back_up"], ["blog"], True, None, 1)]


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


def test_the_daemon_alerts_when_a_server_stays_down(gateway: Any, receiver: Receiver) -> None:
    crash = Path(__file__).resolve().parent.parent / "children" / "crash_after.py"
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text(toml.read_text() + f'[notify]\nurls = ["{receiver.url}"]\ngroup = "100ms"\nmin_interval = "0s"\n')
    gateway.write("flaky", f'command = ["{sys.executable}", "{crash}", "3"]\n[health]\ntype = "none"\n'
                  '[restart]\nbackoff_start = "100ms"\nbackoff_max = "200ms"\nalert_after = 2\n')
    gateway.start()
    got = receiver.wait(1, timeout=20)
    assert got and got[0][1]["title"] == "omen-gateway: flaky down", got
    with psycopg.connect(gateway.read_dsn(), options=f"-c search_path={gateway.schema}") as conn:
        deadline = time.monotonic() + 10  # delivered first, then recorded (from the sending thread's result)
        while not (recorded := conn.execute("SELECT kinds, servers, ok FROM alerts").fetchall()):
            assert time.monotonic() < deadline, "the alert was never recorded"
            time.sleep(0.05)
        assert recorded[0] == (["down"], ["flaky"], True)
    gateway.stop()


async def test_polled_conditions_read_a_real_sink_and_the_host_figures(store: Store, tmp_path: Path) -> None:
    """The disk and database watch runs against the daemon's real Sink (its outage fields are
    properties) and the sampler's host figures."""
    from types import SimpleNamespace

    from reconciler.ops.notify import watcher
    from reconciler.store.sink import Sink

    sink = Sink(store, tmp_path / "journal.jsonl")
    rt = SimpleNamespace(host={"disk_percent": 50.0})
    check = watcher(rt, sink, lambda: NotifySettings(disk_percent=90))
    assert check() == []  # database up, disk fine
    rt.host["disk_percent"] = 95.0
    alerts = check()
    assert [(a.kind, a.text) for a in alerts] == [("disk", "the data folder's disk is 95% full")]
    assert check() == []  # once per episode
