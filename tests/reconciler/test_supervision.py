"""Supervision end to end: backoff timing, health-driven restarts, a port held by another
program, samples, the database going away, the embedded database dying. A real daemon,
real children, real PostgreSQL; every test leaves no process behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import psycopg
import pytest

from reconciler.client import ApiError
from reconciler.store.embedded import EmbeddedPostgres
from tests.fix_gateway import Gateway
from tests.reconciler.test_loop import HTTP, answers, free_port, gone, wait_until
from tests.fix_children import toml_str
from tests.wine import NO_OWNER_PID

CHILDREN = Path(__file__).resolve().parent.parent / "children"

# Answers 200 on /health until the flag file exists, then 503.
FLAKY = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
flag = sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if os.path.exists(flag) else 200)
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def transitions(gw: Gateway, name: str) -> list[dict]:
    return [e for e in gw.events(name) if e["kind"] == "transition"]


def gaps_exit_to_start(events: list[dict]) -> list[float]:
    """Seconds from each 'exited' to the next 'starting'."""
    out, exited_at = [], None
    for e in events:
        if e["to_phase"] == "exited":
            exited_at = e["at"]
        elif e["to_phase"] == "starting" and exited_at is not None:
            out.append((e["at"] - exited_at).total_seconds())
            exited_at = None
    return out


@pytest.mark.alone  # how long each wait took
def test_crash_loop_follows_the_backoff_and_escalates(gateway: Gateway):
    gateway.write("crashy", f'command = ["python", {toml_str(CHILDREN / "crash_after.py")}, "3"]\n'
                            '[restart]\nbackoff_start = "200ms"\nbackoff_max = "800ms"\nalert_after = 3\n')
    gateway.start()
    gateway.wait_for(lambda s: s.get("crashy", {}).get("failures", 0) >= 6, timeout=20, what="six failures")
    status = gateway.status()["crashy"]
    assert status["phase"] in ("backoff", "starting", "exited", "running")
    assert status["last_exit"] == "exited with code 3"
    gaps = gaps_exit_to_start(transitions(gateway, "crashy"))[:5]
    # first failure: at once; then 0.2, 0.4, 0.8 and the 0.8 s cap
    expected = [0.0, 0.2, 0.4, 0.8, 0.8]
    for gap, want in zip(gaps, expected):
        assert want - 0.01 <= gap <= want + 0.25, (gaps, expected)
    escalated = [e for e in gateway.events("crashy") if e["kind"] == "escalated"]
    assert len(escalated) == 1 and escalated[0]["detail"]["failures"] == 3
    backoff = [e for e in transitions(gateway, "crashy") if e["to_phase"] == "backoff"]
    # the next try is a typed fact of the row (a wall-clock time), not words baked into its reason
    assert "next try in" not in backoff[0]["detail"]["detail"] and backoff[0]["detail"]["failures"] == 2
    assert datetime.fromisoformat(backoff[0]["detail"]["next_try_at"]) > backoff[0]["at"]


def test_backoff_resets_after_a_healthy_run(gateway: Gateway):
    # runs 1.2 s (no health check: up at once), longer than backoff_reset: every restart is immediate,
    # not the 5 s backoff_start (a loaded machine has taken 0.33 s to start one)
    gateway.write("steady", f'command = ["python", {toml_str(CHILDREN / "crash_after.py")}, "1", "1.2"]\n'
                            '[restart]\nbackoff_start = "5s"\nbackoff_reset = "1s"\n')
    gateway.start()
    gateway.wait_for(lambda s: s.get("steady", {}).get("restarts", 0) >= 3, timeout=20, what="three restarts")
    gaps = gaps_exit_to_start(transitions(gateway, "steady"))
    assert len(gaps) >= 3 and max(gaps) < 1.5, gaps
    assert gateway.status()["steady"]["failures"] == 1


def test_failing_health_check_restarts_after_the_threshold(gateway: Gateway, tmp_path: Path):
    program, flag = tmp_path / "flaky.py", tmp_path / "fail-now"
    program.write_text(FLAKY)
    gateway.write("flaky", f'command = ["python", {toml_str(program)}, "{{port}}", {toml_str(flag)}]\nport = "auto"\n'
                           '[health]\ntype = "http"\npath = "/health"\ninterval = "200ms"\nfailures = 3\n')
    gateway.start()
    first = gateway.wait_phase("flaky", "running")
    flag.touch()
    again = gateway.wait_for(lambda s: s["flaky"]["pid"] not in (None, first["pid"]), timeout=15,
                             what="restart after failing checks")
    flag.unlink()
    gateway.wait_phase("flaky", "running")
    assert gone(first["pid"]) and again["flaky"]["restarts"] == 1, [(e["kind"], e["to_phase"], e["reason"], e["detail"]) for e in gateway.events("flaky")]
    events = gateway.events("flaky")
    stop = next(e for e in events if e["kind"] == "transition" and e["reason"] == "health check failing")
    failed = [e for e in events if e["kind"] == "health_failed" and e["seq"] < stop["seq"]]
    assert [e["detail"]["failures"] for e in failed] == [1, 2, 3]
    assert "HTTP 503" in failed[0]["reason"]
    assert "3 checks failed in a row" in stop["detail"]["detail"]


@NO_OWNER_PID
def test_port_held_by_another_program(gateway: Gateway):
    port = free_port()
    holder = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(port), what="the foreign server listens")
        gateway.write("web", HTTP + f"port = {port}\n" + '[restart]\nbackoff_start = "300ms"\n')
        gateway.start()
        web = gateway.wait_phase("web", "error")
        assert f"port {port} is held by pid {holder.pid} (python" in web["reason"]
        assert holder.poll() is None  # untouched
        errors = [e for e in gateway.events("web") if e["kind"] == "error"]
        assert errors and errors[0]["reason"].startswith(f"port {port} is held by pid {holder.pid}")
    finally:
        holder.terminate()
        holder.wait(10)
    # once the port is free, the retry starts it
    web = gateway.wait_phase("web", "running", timeout=15)
    assert answers(port) and web["pid"] != holder.pid


def test_status_shows_samples_health_and_uptime(gateway: Gateway, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GATEWAY_HEALTH_BUCKET", "60")  # the product's minute: counted in memory, written at the stop
    gateway.write("gateway", (gateway.config_dir / "gateway.toml").read_text()
                  + '[host]\nsample_every = "200ms"\ninternet_check = "off"\n')
    gateway.write("web", HTTP + 'port = "auto"\n[health]\ntype = "tcp"\ninterval = "200ms"\n')
    gateway.start()
    gateway.wait_phase("web", "running")
    s = gateway.wait_for(lambda s: s["web"]["rss_bytes"] is not None and s["web"]["latency_ms"] is not None)
    assert s["web"]["rss_bytes"] > 5_000_000 and s["web"]["health"] == "ok"
    host = gateway.client.status()["gateway"]["host"]
    assert 0 <= host["mem_percent"] <= 100 and host["internet_ok"] is None
    wait_until(lambda: _count(gateway, "resource_samples") >= 3 and _count(gateway, "host_samples") >= 3,
               what="samples in PostgreSQL")
    # a change row at once: the first result of this run (up), with its response time
    assert _count(gateway, "health_changes WHERE ok AND latency_ms IS NOT NULL") == 1
    assert gateway.stop() == 0  # a clean stop writes the minute under way
    checks, timed = _sum(gateway, "checks"), _sum(gateway, "timed")
    assert checks >= 2 and _sum(gateway, "failures") == 0
    # the first recorded check connects (a response time at once); the next ones are answered by
    # the kernel's listening table (Linux), with no latency, until the next real connect
    assert timed >= 1
    if sys.platform.startswith("linux"):
        assert timed < checks
    assert _count(gateway, "health_changes") == 1  # nothing changed after the first result


def _sum(gw: Gateway, column: str) -> int:
    """A column of health_minutes summed over every server and minute."""
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
        return int(conn.execute(f"SELECT coalesce(sum({column}), 0) FROM health_minutes").fetchone()[0])  # type: ignore[index]


def _count(gw: Gateway, table: str) -> int:
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]


def test_database_outage_loses_no_event(gateway: Gateway, private_pg: EmbeddedPostgres):
    """The gateway's database stops for a while under churn (a server crash-looping every
    ~0.2 s): supervision goes on, events queue and spill, and once the database is back
    every event is in the table exactly once, in order."""
    gateway.dsn = private_pg.start()
    gateway.write("churn", f'command = ["python", {toml_str(CHILDREN / "crash_after.py")}, "1", "0.1"]\n'
                           '[restart]\nbackoff_start = "100ms"\nbackoff_max = "100ms"\n')
    gateway.start()
    gateway.wait_for(lambda s: s.get("churn", {}).get("restarts", 0) >= 2, what="churn")
    private_pg.stop()
    wait_until(lambda: not gateway.client.status()["gateway"]["database_ok"], timeout=15, what="outage seen")
    before = gateway.status()["churn"]["restarts"]
    gateway.wait_for(lambda s: s["churn"]["restarts"] >= before + 3, what="3 restarts in the outage")  # supervision goes on
    down = gateway.client.status()["gateway"]
    assert not down["database_ok"]  # still in the outage
    assert down["pending_writes"] > 0 and down["database_unreachable_since"]
    assert (gateway.data_dir / "journal.jsonl").exists()
    private_pg.start()
    wait_until(lambda: gateway.client.status()["gateway"]["pending_writes"] == 0, timeout=30, what="replayed")
    gateway.stop()
    events = gateway.events()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap: an event was lost"
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)
    assert [e["kind"] for e in events][-1] == "gateway_stopped"
    assert (gateway.data_dir / "journal.jsonl").stat().st_size == 0 or not (gateway.data_dir / "journal.jsonl").exists()


def test_embedded_database_is_restarted_when_it_dies(gateway: Gateway):
    gateway.dsn = ""  # the gateway's own embedded PostgreSQL
    gateway.write("web", HTTP + 'port = "auto"\n')
    gateway.start(wait=90)
    gateway.wait_phase("web", "running")
    pg = EmbeddedPostgres(gateway.data_dir)
    first = pg.pid
    assert first is not None
    psutil.Process(first).kill()  # SIGKILL; TerminateProcess on Windows
    wait_until(lambda: pg.pid not in (None, first), timeout=30, what="a new postmaster")

    def restart_recorded() -> bool:
        try:
            return any(e["kind"] == "database_restarted" for e in gateway.events())
        except ApiError as exc:  # the new postmaster still recovers (a loaded machine): the API says so, in words
            assert "the database is unreachable" in str(exc)
            return False

    wait_until(restart_recorded, timeout=30, what="restart recorded")
    kinds = [e["kind"] for e in gateway.events()]
    assert kinds.index("database_exited") < kinds.index("database_restarted")
    assert gateway.status()["web"]["phase"] == "running"
    assert psutil.pid_exists(pg.pid or 0)



def test_dependencies_order_starts_and_stops(gateway: Gateway):
    gateway.write("db", HTTP + 'port = "auto"\n')
    gateway.write("app", HTTP + 'port = "auto"\ndepends_on = ["db"]\n')
    gateway.start()
    gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("db", "app")))
    gateway.stop()
    events = [e for e in gateway.events() if e["kind"] == "transition"]

    def seq(server: str, to: str) -> int:
        return next(e["seq"] for e in events if e["server"] == server and e["to_phase"] == to)

    assert seq("db", "running") < seq("app", "starting")  # app waited for db to be healthy
    assert seq("app", "stopped") < seq("db", "stopping")  # and is stopped before it


def test_needs_internet_checks_do_not_count_while_offline(gateway: Gateway, tmp_path: Path, monkeypatch):
    """The 'internet' is a local port (only 127.0.0.1 is reachable here): closed = offline."""
    program, flag = tmp_path / "flaky.py", tmp_path / "fail-now"
    program.write_text(FLAKY)
    internet = free_port()
    monkeypatch.setenv("GATEWAY_INTERNET_CHECK", f"127.0.0.1:{internet}")
    gateway.write("gateway", (gateway.config_dir / "gateway.toml").read_text() + '[host]\nsample_every = "200ms"\n')
    gateway.write("bot", f'command = ["python", {toml_str(program)}, "{{port}}", {toml_str(flag)}]\nport = "auto"\n'
                         '[health]\ntype = "http"\npath = "/health"\ninterval = "200ms"\nfailures = 2\n'
                         'needs_internet = true\n')
    gateway.start()
    first = gateway.wait_phase("bot", "running")
    wait_until(lambda: gateway.client.status()["gateway"]["host"].get("internet_ok") is False, what="offline")
    flag.touch()
    wait_until(lambda: "not counted" in (gateway.status()["bot"]["health_error"] or ""), what="failing, offline")
    time.sleep(1.0)  # five failed checks: none counted
    assert gateway.status()["bot"]["pid"] == first["pid"]
    with socket.socket() as up:  # the internet is back: the failures count again
        up.bind(("127.0.0.1", internet))
        up.listen(8)
        again = gateway.wait_for(lambda s: s["bot"]["pid"] not in (None, first["pid"]), timeout=15,
                                 what="restart once online")
        flag.unlink()
    assert again["bot"]["restarts"] >= 1


def test_an_automatic_port_held_by_another_program_is_skipped_not_counted(gateway: Gateway):
    """`port = "auto"` means any free port: one that another program holds is passed over at
    once, with no error, no failure counted and no wait (it was a failed start with backoff)."""
    low = int((gateway.config_dir / "gateway.toml").read_text().split('"')[1].split("-")[0])
    holders = [subprocess.Popen([sys.executable, "-m", "http.server", str(p), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in (low, low + 1)]
    try:
        for p in (low, low + 1):
            wait_until(lambda p=p: answers(p), what="the foreign servers listen")
        gateway.write("web", HTTP + 'port = "auto"\n')
        gateway.start()
        web = gateway.wait_phase("web", "running")
        assert web["port"] not in (low, low + 1) and answers(web["port"])
        assert web["failures"] == 0 and web["restarts"] == 0
        assert [e["reason"] for e in gateway.events("web") if e["kind"] == "error"] == []
        assert all(h.poll() is None for h in holders)  # untouched
    finally:
        for h in holders:
            h.terminate()
            h.wait(10)
