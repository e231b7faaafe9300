"""A real gateway daemon (`python -m reconciler run`) as a child of the test, on a fresh
config folder, data folder and database schema. Stopped at teardown; its servers are
checked to be gone (by pid, never by name)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import psycopg
import pytest

from reconciler.client import Client

REPO = Path(__file__).resolve().parent.parent


class Gateway:
    def __init__(self, config_dir: Path, data_dir: Path, dsn: str, schema: str) -> None:
        self.config_dir, self.data_dir, self.dsn, self.schema = config_dir, data_dir, dsn, schema
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen_pids: set[int] = set()
        self.output = data_dir.parent / f"{data_dir.name}-stdout.log"
        self.allow_problems = False  # a test that provokes a bad exit on purpose sets this

    # --- life ---------------------------------------------------------------------------
    def start(self, *extra: str, wait: float = 30.0, own_console: bool = False) -> None:
        """`own_console`: on Windows, a (hidden) console of its own, so that a Ctrl-C can reach the
        gateway alone (a console control event reaches every process on the console)."""
        (self.data_dir / "gateway.url").unlink(missing_ok=True)
        env = dict(os.environ, GATEWAY_DB_SCHEMA=self.schema)
        env.setdefault("GATEWAY_INTERNET_CHECK", "off")  # nothing beyond this machine
        env.setdefault("GATEWAY_NO_BROWSER", "1")  # a test gateway never opens a browser on first run
        # health minutes of a second: a test reads them at once (reconciler/engine/checklog.py; one test keeps 60 s)
        env.setdefault("GATEWAY_HEALTH_BUCKET", "1")
        env.pop("GATEWAY_DSN", None)
        if self.dsn:  # else: the gateway's own embedded PostgreSQL in its data folder
            env["GATEWAY_DSN"] = self.dsn
        console: dict[str, Any] = {}
        if own_console and sys.platform == "win32":
            hidden = subprocess.STARTUPINFO(dwFlags=subprocess.STARTF_USESHOWWINDOW, wShowWindow=0)
            console = {"creationflags": subprocess.CREATE_NEW_CONSOLE, "startupinfo": hidden}
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "run", "--config", str(self.config_dir),
                 "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0", *extra],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, **console,
            )
        deadline = time.monotonic() + wait
        while not (self.data_dir / "gateway.url").exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.output.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway did not start in {wait}s:\n{self.output.read_text()}")
            time.sleep(0.05)

    def stop(self, sig: int | None = None, timeout: float = 60.0) -> int:  # a hang guard, not a timing
        """A clean stop: SIGTERM (or `sig`) on POSIX; on Windows, which has no SIGTERM (send_signal
        would be TerminateProcess, a kill), what the owner does: `gateway shutdown`; SIGINT there is a
        Ctrl-C on the gateway's console (started with `own_console`)."""
        assert self.proc is not None
        self.remember_pids()
        if sig is None and sys.platform == "win32":
            self.client.shutdown()
        elif sig == signal.SIGINT and sys.platform == "win32":
            from reconciler.platform import current

            current().send_stop(self.proc.pid, "INT")  # its helper attaches to that console
        else:
            self.proc.send_signal(signal.SIGTERM if sig is None else sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.remember_pids()
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    # --- reading ------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        return Client(self.data_dir)

    def status(self) -> dict[str, dict[str, Any]]:
        servers = {s["name"]: s for s in self.client.status()["servers"]}
        self.seen_pids.update(s["pid"] for s in servers.values() if s["pid"])
        return servers

    def wait_for(self, check: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 15.0,
                 what: str = "") -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            servers = self.status()
            if check(servers):
                return servers
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}: {servers}")
            time.sleep(0.05)

    def wait_phase(self, name: str, phase: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_for(lambda s: name in s and s[name]["phase"] == phase, timeout, f"{name} {phase}")[name]

    def remember_pids(self) -> None:
        if self.proc is not None:
            try:
                self.seen_pids.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass

    def write(self, name: str, text: str) -> Path:
        path = self.config_dir / f"{name}.toml"
        tmp = self.config_dir / f".{name}.toml.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def events(self, server: str | None = None) -> list[dict[str, Any]]:
        if self.proc is not None and self.proc.poll() is None:
            self.client.events(limit=1)  # the API flushes the gateway's queue before it reads
        with psycopg.connect(self.read_dsn(), options=f"-c search_path={self.schema}") as conn:
            cur = conn.execute(
                "SELECT server, kind, from_phase, to_phase, reason, actor, detail, at, seq FROM events"
                " WHERE (%s::text IS NULL OR server = %s) ORDER BY seq", (server, server))
            cols = [c.name for c in cur.description or []]
            return [dict(zip(cols, row)) for row in cur.fetchall()]


    def read_dsn(self) -> str:
        """The DSN to read rows with: the test's, or the gateway's embedded server's."""
        if self.dsn:
            return self.dsn
        from reconciler.store.embedded import EmbeddedPostgres

        return EmbeddedPostgres(self.data_dir).start()  # adopts the running one


def _drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def problems(gw: Gateway, code: int | None) -> list[str]:
    """What a gateway must never do, whatever the test looked at: exit non-zero on a stop,
    print a traceback, record an internal error."""
    found = []
    if code not in (None, 0):
        found.append(f"the gateway exited with {code} when asked to stop")
    text = gw.output.read_text(errors="replace") if gw.output.exists() else ""
    if "Traceback (most recent call last)" in text:
        found.append("the gateway printed a traceback")
    try:
        internal = [e["reason"] for e in gw.events() if e["kind"] == "internal_error"]
    except psycopg.Error:  # the test left the database away: what waits in the journal
        journal = gw.data_dir / "journal.jsonl"
        lines = journal.read_text(errors="replace").splitlines() if journal.exists() else []
        internal = [line for line in lines if '"kind":"internal_error"' in line]
    if internal:
        found.append(f"the gateway recorded {len(internal)} internal errors: {internal[:3]}")
    return found


def kill_group(pid: int) -> None:
    """Kill `pid` and its process group (POSIX), or `pid` (Windows: the servers' job objects are the
    gateway's; what is left of a tree is found by pid)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(pid, signal.SIGKILL)
        else:
            psutil.Process(pid).kill()
    except (OSError, psutil.Error):
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def finish(gw: Gateway, pg_dsn: str) -> None:
    """Stop the gateway, kill (by pid) anything of its servers still running, drop its schema
    and its own embedded database; then fail if something had been left behind, or if the
    gateway exited badly, printed a traceback or recorded an internal error."""
    stopped = ""
    try:
        code = gw.stop() if gw.proc is not None else None
    except Exception as exc:  # noqa: BLE001 - it did not stop: end it (by pid) and say so below
        code, stopped = None, f"the gateway did not stop when asked ({exc!r}); it was killed"
        if gw.proc is not None:
            gw.remember_pids()
            gw.proc.kill()
            gw.proc.wait(30)
            gw.proc = None
    found = problems(gw, code) if not gw.allow_problems else []
    if stopped:
        found.append(stopped)
    leftovers = [pid for pid in gw.seen_pids if psutil.pid_exists(pid) and
                 psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    for pid in leftovers:
        kill_group(pid)
    _drop_schema(pg_dsn, gw.schema)
    if (gw.data_dir / "postgres").exists():  # a test ran the gateway with its own database
        from reconciler.store.embedded import EmbeddedPostgres

        EmbeddedPostgres(gw.data_dir).stop()
    assert not leftovers, f"processes left behind: {leftovers}"
    assert not found, "; ".join(found) + f"\n--- gateway output ---\n{gw.output.read_text(errors='replace')[-4000:]}"


PORT_BLOCKS = range(10000, 32000, 400)  # 55 blocks of 400 ports, below Linux's ephemeral ports (32768+)


def port_blocks(k: int = 1) -> list[int]:
    """The first ports of `k` distinct blocks of 400 of this test's own: random among the blocks of
    this pytest-xdist worker (block i belongs to worker i mod the number of workers), so two workers
    never share one. Other programs (other test sessions, benchmarks) may still hold a port in it:
    the gateway passes over a port another program holds."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return random.sample(PORT_BLOCKS[int(worker.removeprefix("gw")) % count::count], k)


def own_port_range(config: Path, size: int = 400) -> None:
    """gateway.toml with a port range of its own (`size` ports at the start of one of port_blocks)."""
    (low,) = port_blocks()
    (config / "gateway.toml").write_text(f'[ports]\nrange = "{low}-{low + size - 1}"\n')


@pytest.fixture
def gateway(tmp_path: Path, pg_dsn: str) -> Iterator[Gateway]:
    config = tmp_path / "gateway.d"
    config.mkdir()
    own_port_range(config)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    gw = Gateway(config, tmp_path / "data", pg_dsn, schema)
    try:
        yield gw
    finally:
        finish(gw, pg_dsn)
