"""`gateway run`: the database, the sink, the reconciler, the watcher and the web server,
all on one event loop; and a clean shutdown in the reverse order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.events import EventKind
from reconciler.core.spec import HostSettings
from reconciler.engine.checklog import MINUTE
from reconciler.engine.config import LoadResult
from reconciler.engine.loop import Reconciler
from reconciler.engine.remembered import restore
from reconciler.engine.resume import ResumeWatch
from reconciler.engine.runner import Runner
from reconciler.engine.runtime import Runtime
from reconciler.host.hostevents import listen as listen_host_events
from reconciler.host.instance import record_recovery, recovered_from
from reconciler.host.power import PowerWatch, battery_alert
from reconciler.host.sampler import Attention, Figures, rollup_forever, sample_forever
from reconciler.host.watch import watch_folder
from reconciler.ops.notify import Dispatcher
from reconciler.ops.tasks import add_ops_tasks
from reconciler.platform import Platform, current, desktop
from reconciler.platform.fsutil import atomic_write, read_or_create_secret
from reconciler.settings import TOKEN_FILE, URL_FILE, Settings, ensure_private_dir
from reconciler.store import secretbox
from reconciler.store import Store
from reconciler.store.embedded import EmbeddedPostgres
from reconciler.store.sink import Sink
from reconciler.tunnel.dark import DarkHours, beat_of
from reconciler.tunnel.dns_task import dns_forever
from reconciler.tunnel.getter import cloudflared_forever
from reconciler.tunnel.hook import Tunnel

log = logging.getLogger("gateway")
CANCEL_WITHIN = 5.0  # seconds a cancelled task has to end when the gateway stops
STOP_DEADLINE = 90.0  # seconds the rest of a stop may take once the servers are stopped
JOURNAL_REPLAY_TIMEOUT = 30.0  # seconds to write the previous run's journal before reading the states
RELEASE_MEMORY_EVERY = 60.0  # seconds between two returns of the C heap's free pages to the OS


def read_or_create_token(data_dir: Path) -> str:
    """The local API token: a file only this user can read."""
    return read_or_create_secret(data_dir / TOKEN_FILE)


@dataclass
class Daemon:
    settings: Settings
    keep_servers: bool = False
    rt: Runtime = field(init=False)
    reconciler: Reconciler = field(init=False)
    tunnel: Tunnel = field(init=False)
    sink: Sink = field(init=False)
    store: Store | None = None
    pg: EmbeddedPostgres | None = None
    pg_starting: concurrent.futures.Future[str] | None = None  # `pg.start()` begun by the caller
    db_label: str = ""
    token: str = ""
    url: str = ""
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    crashed: str | None = None
    watchdog: threading.Timer | None = None  # from the servers' stop to the end of the process
    notifier: Dispatcher | None = None  # the alerts' dispatcher, once the background tasks run
    figures: Figures = field(default_factory=Figures)  # the sampler's latest figures (the page, `status`, alerts)
    attention: Attention = field(default_factory=Attention)  # the page says who looks; the sampler's rate follows

    async def open_database(self) -> str:
        dsn = self.settings.dsn
        if dsn is None:
            if self.pg is None or self.pg_starting is None:
                self.pg = EmbeddedPostgres(self.settings.data_dir)
                dsn = await asyncio.to_thread(self.pg.start)
            else:
                dsn = await asyncio.wrap_future(self.pg_starting)
            self.db_label = f"embedded PostgreSQL at {self.pg.pgdata}"
        else:
            self.db_label = f"PostgreSQL from DSN ({_dsn_host(dsn)})"
        self.store = await Store.connect(dsn, schema=self.settings.schema)
        return dsn

    async def serve(self) -> None:
        started = datetime.now(UTC)  # what came before is the previous run's (reconciler/tunnel/dark.py)
        current().prepare_event_loop()
        ensure_private_dir(self.settings.data_dir)
        self.token = read_or_create_token(self.settings.data_dir)
        sink_task = await self._open_database()
        adopted = await self._start_servers()
        sock = _listen(*self.settings.host_port)  # a taken address fails here, before any server starts
        self.url = _url_of(sock)
        runner = Runner(self.rt)  # every background task, under one guard (reconciler/engine/runner.py)
        assert self.store is not None
        self.notifier = add_ops_tasks(runner, self.rt, self.store, self.sink, self.settings, self._loaded,
                                      self.reconciler.mark_config_dirty, self._dsn, self.figures)  # alerts see every event
        # The servers first: uvicorn and the page are imported and built while they boot.
        core = asyncio.create_task(self.reconciler.run(), name="reconciler")
        await self.rt.wait_until(lambda: self.reconciler.passes > 0 or core.done(), 30.0)
        from webview.server import build

        server = build(self)
        await self._say_ready(len(adopted))
        self._background(runner, started, adopted)
        tasks = [core, asyncio.create_task(server.serve(sockets=[sock]), name="web"),
                 asyncio.create_task(watch_folder(self.settings.config_dir, self.reconciler.mark_config_dirty,
                                                  self.stop_event), name="watcher")]
        # Each task takes its first step: the watcher is watching from here on. A file written
        # between the first load and now would be missed: read the folder once more.
        await asyncio.sleep(0)
        self.reconciler.mark_config_dirty()
        # now `gateway ...` may talk to us; atomically, as a reader may look the moment it appears
        atomic_write(self.settings.data_dir / URL_FILE, self.url + "\n")
        await self._until_stopped(tasks)
        server.stop()
        await self.reconciler.shutdown(self.keep_servers)
        self.watchdog = _watchdog(asyncio.get_running_loop())  # the rest never hangs: ended by `gateway run`
        await self._close(tasks + runner.cancel(), sink_task)

    async def _open_database(self) -> asyncio.Task[None]:
        """The database and the sink; what the previous run could not write (the database was
        away when it died) goes in first: the recorded states, intents and ports are read only
        after it. The sink's task."""
        await self.open_database()
        assert self.store is not None
        self.sink = Sink(self.store, self.settings.data_dir / "journal.jsonl")
        sink_task = asyncio.create_task(self.sink.run())
        if self.sink.pending and not await self.sink.flush(JOURNAL_REPLAY_TIMEOUT):
            log.warning("the previous run's journal is not written yet (%d ops): starting from what the "
                        "database holds", self.sink.pending)
        return sink_task

    async def _start_servers(self) -> list[str]:
        """The runtime from what PostgreSQL recorded, the tunnel, the reconciler; the first load,
        adopting what a previous gateway left running. The names adopted."""
        settings, store = self.settings, self.store
        assert store is not None
        rows, intents, ports = await store.load_states(), await store.load_intents(), await store.load_ports()
        self.rt = Runtime(settings.data_dir, settings.config_dir, self.sink.put)
        self.rt.checks.bucket = float(os.environ.get("GATEWAY_HEALTH_BUCKET") or MINUTE)  # tests: shorter
        await self._seal_second_steps()
        self.rt.intents.update({n: i for n, i in intents.items() if i == "stop"})
        self.rt.ports.update(ports)
        self.tunnel = Tunnel(self.rt, settings.config_dir, reload=lambda: self.reconciler.mark_config_dirty())
        self.reconciler = Reconciler(self.rt, settings.config_dir, load_hooks=[self.tunnel.load])
        fallback = restore(self.rt, await store.load_rollouts(), await store.load_applied_specs())
        adopted = await self.reconciler.start(rows, fallback)
        result = self.reconciler.result
        assert result is not None
        self.rt.event(EventKind.GATEWAY_STARTED, None, f"{len(result.specs)} servers, {len(adopted)} adopted")
        record_recovery(self.rt, settings.data_dir)  # after a kill or a power cut (reconciler/host/instance.py)
        self._install_signals()
        return adopted

    def _background(self, runner: Runner, started: datetime, adopted: list[str]) -> None:
        """The engine's background tasks, each built with what it uses, added to `runner`."""
        rt, store, settings, loaded = self.rt, self.store, self.settings, self._loaded
        assert store is not None
        if current().release_memory():  # start-up is over: what it freed goes back to the OS
            runner.add("memory", lambda: _release_memory_forever(current()))
        figures, attention = self.figures, self.attention
        runner.add("sampler", lambda: sample_forever(rt, settings.data_dir, self._sampling, figures, attention))
        runner.add("rollup", lambda: rollup_forever(figures, store, beats=self._beats))
        dark = DarkHours(rt, store, loaded, lambda: self._sampling()[0], lambda: self.tunnel.plan, started=started,
                         unclean=recovered_from(settings.data_dir) is not None, adopted=adopted)
        runner.add("dark", dark.run)  # the hours it was off or asleep (reconciler/tunnel/dark.py)
        runner.add("dns", lambda: dns_forever(self.tunnel, store, settings.data_dir))  # DNS routes follow the plan
        runner.add("cloudflared", lambda: cloudflared_forever(self.tunnel, settings.data_dir))  # fetched, kept up to date
        resume = ResumeWatch(rt, lambda name: self.reconciler.control("restart", [name], "resume"))
        runner.add("resume", resume.run)  # sleep / freeze (reconciler/engine/resume.py)
        power = PowerWatch(rt, lambda: battery_alert(loaded()))
        runner.add("power", power.run)  # battery, power plan (reconciler/host/power.py)
        if self.pg is not None:
            runner.add("database", self._supervise_database)

    async def _say_ready(self, adopted: int) -> None:
        result = self.reconciler.result
        assert result is not None
        print(f"omen-gateway: page at {self.url}/", flush=True)
        if await _nobody_yet(self.store):  # first run: the owner is made in the browser, not here
            print(f"omen-gateway: open {self.url}/ to finish setting up", flush=True)
            desktop.open_page(self.url + "/")
        print(f"omen-gateway: database: {self.db_label}", flush=True)
        print(f"omen-gateway: {len(result.specs)} servers in {self.settings.config_dir}"
              f" ({len(result.errors)} config errors, {adopted} adopted)", flush=True)
        for err in result.errors:
            print(f"  {err}", flush=True)

    async def _until_stopped(self, tasks: list[asyncio.Task[None]]) -> None:
        """Until the stop is asked for, or a core task ends: a bug. Then the servers are left
        running (the next start adopts them), the gateway says why loudly, and exits non-zero
        so autostart restarts it."""
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopper}:
            if self.stop_event.is_set() and not task.cancelled() and task.exception() is None:
                continue  # it ended because the stop was asked for (the watcher does): no crash
            self.crashed = repr(task.exception() if not task.cancelled() else "cancelled")
            log.critical("the %s task ended: %s; stopping, servers keep running", task.get_name(), self.crashed)
            self.keep_servers = True
        stopper.cancel()
        print("omen-gateway: stopping" + (" (servers keep running)" if self.keep_servers else ""), flush=True)

    async def _close(self, tasks: list[asyncio.Task[None]], sink_task: asyncio.Task[None]) -> None:
        """The servers are stopped (or left running): end every task, write what is queued,
        close the database, stop the embedded one."""
        assert self.store is not None
        for task in tasks:
            task.cancel()
        await _ended(tasks, "the gateway's tasks")
        for task in list(self.rt.tasks):  # health loops and exit waits: nothing to finish
            task.cancel()
        await _ended(list(self.rt.tasks), "health checks and exit waits")
        self.rt.checks.flush(everything=True)  # the minute under way is counted too
        self.rt.event(EventKind.GATEWAY_STOPPED, None, "clean stop")
        await self.sink.close()
        sink_task.cancel()
        await asyncio.gather(sink_task, return_exceptions=True)
        await self.store.close()
        (self.settings.data_dir / URL_FILE).unlink(missing_ok=True)
        if self.pg is not None:
            await asyncio.to_thread(self.pg.stop)
        print("omen-gateway: stopped; " + ("your servers were left running" if self.keep_servers
                                          else "your servers are stopped"), flush=True)

    def _loaded(self) -> LoadResult | None:
        return self.reconciler.result

    def _dsn(self) -> str | None:
        """The database's address now (the embedded one's changes when it restarts)."""
        return self.settings.dsn or (self.pg.dsn if self.pg is not None else None)

    async def _seal_second_steps(self) -> None:
        """Code app secrets sealed with the data folder's key (reconciler.store.secretbox); one this key
        cannot open is said once, in words."""
        try:
            sealed, unreadable = await secretbox.seal_users(self.store, secretbox.load_or_create(self.settings.data_dir))
        except Exception as exc:  # noqa: BLE001 - the page still works; said, tried again at the next start
            log.warning("the code app secrets could not be sealed now: %s", exc)
            return
        if sealed:
            log.info("code app secrets sealed with the data folder's key: %s", ", ".join(sealed))
        if unreadable:
            self.rt.event(EventKind.ACCOUNT_CHANGED, None, f"the code app of {', '.join(unreadable)} cannot be read "
                          f"with this data folder's key ({secretbox.KEY_FILE}): bring that file back, or turn the "
                          "code app off and set it up again (Security)", detail={"users": unreadable})

    async def _supervise_database(self) -> None:
        """The embedded PostgreSQL is a child like any other: when it exits, start it again
        (events wait in the sink's queue and journal meanwhile)."""
        assert self.pg is not None
        failures = 0
        while True:
            pid = await asyncio.to_thread(lambda: self.pg.pid if self.pg else None)
            if pid is not None:
                await current().wait_exit(pid)
                self.rt.event(EventKind.DATABASE_EXITED, None, f"the embedded PostgreSQL (pid {pid}) exited; starting it again")
            try:
                await asyncio.to_thread(self.pg.start)
            except Exception as exc:  # noqa: BLE001 - keep trying, with backoff, and say why
                failures += 1
                delay = min(60.0, 2.0 ** failures)
                log.error("the embedded PostgreSQL did not start (try %d, next in %.0fs): %s", failures, delay, exc)
                await asyncio.sleep(delay)
                continue
            if pid is not None or failures:
                self.rt.event(EventKind.DATABASE_RESTARTED, None, "the embedded PostgreSQL runs again")
            failures = 0

    def _sampling(self) -> tuple[float, str]:
        result = self.reconciler.result
        host = result.settings.host if result else HostSettings()
        return host.sample_every, os.environ.get("GATEWAY_INTERNET_CHECK") or host.internet_check

    def _beats(self) -> dict[str, float]:
        """Each server's beat (its check interval, or the sampling round): for availability."""
        result = self.reconciler.result
        every = self._sampling()[0]
        return {name: beat_of(spec, every) for name, spec in (result.specs if result else {}).items()}

    def request_stop(self, keep_servers: bool | None = None) -> None:
        if keep_servers is not None:
            self.keep_servers = keep_servers
        self.stop_event.set()

    def _install_signals(self) -> None:
        # Ctrl-C, SIGTERM, SIGHUP, console close, log-off, shutdown: decided and recorded there
        listen_host_events(self.rt, self.request_stop)


async def _release_memory_forever(platform: Platform, every: float = RELEASE_MEMORY_EVERY) -> None:
    """Give the C heap's free pages back to the OS every `every` s. glibc keeps what is freed
    for later: at rest with 100 servers the daemon grew 0.7 MB in 20 min without it (samples,
    the page's answers), and stayed within 0.1 MB of its start over 12 min with it; a call
    takes 0.15-0.45 ms (one wake-up a minute)."""
    while True:
        await asyncio.sleep(every)
        platform.release_memory()


def _watchdog(loop: asyncio.AbstractEventLoop, within: float = STOP_DEADLINE) -> threading.Timer:
    """Once the servers are stopped the rest of a stop takes seconds; if it has not ended
    `within` (a bug), say what it waits on and end the process (exit 3: a service manager or
    the autostart task starts it again; the next start reports the unclean stop)."""
    def hung() -> None:
        waiting = []
        for task in list(asyncio.all_tasks(loop)):  # a read from another thread: diagnostics only
            where = "".join(f" < {f.f_code.co_name}:{f.f_lineno}" for f in task.get_stack(limit=6))
            waiting.append(f"{task.get_name()}{where}")
        log.critical("stopping: not done %.0f s after the servers stopped; ending now. Waiting on: %s",
                     within, "; ".join(waiting) or "nothing")
        print(f"omen-gateway: the stop did not finish within {within:.0f} s; ending now (see gateway.log)",
              file=sys.stderr, flush=True)
        time.sleep(0.5)  # the log writer thread writes the line
        os._exit(3)

    timer = threading.Timer(within, hung)
    timer.daemon = True
    timer.start()
    return timer


async def _ended(tasks: list[asyncio.Task[Any]], what: str, within: float = CANCEL_WITHIN) -> None:
    """Wait for cancelled tasks to end; one that does not (a bug: it swallowed the cancel) is
    logged with its stack and left behind, so that a stop never hangs on it."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        frames = "".join(f"\n  {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}" for f in task.get_stack())
        log.error("stopping: %s did not end within %.0f s after it was cancelled: %s%s",
                  what, within, task.get_name(), frames)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _dsn_host(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts: dict[str, Any] = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - only for a label; the connection reports real errors
        return "?"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


async def _nobody_yet(store: Store | None) -> bool:
    """No user exists yet (first run). False when the database cannot say."""
    from reconciler.store import accounts

    try:
        return store is not None and await accounts.count_users(store) == 0
    except Exception:  # noqa: BLE001 - a hint only: never stop a start for it
        return False
