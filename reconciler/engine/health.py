"""Health probes (http / tcp / command) that never raise: every outcome, including every
failure, is a `HealthResult` whose error says in words what went wrong. Also the small
port facts the loop needs: does a port answer, is it free, and who holds it."""

from __future__ import annotations

import asyncio
import errno
import os
import shlex
import socket
import subprocess
import tempfile
from pathlib import Path
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from reconciler.core.spec import HEALTH_KINDS, CommandHealth, HttpHealth, NoHealth, RunningHealth, TcpHealth
from reconciler.platform import current
from reconciler.platform.listening import ListenTable, accepts

Health = HttpHealth | TcpHealth | CommandHealth | NoHealth | RunningHealth


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    latency_ms: float | None
    error: str | None
    problem: str | None = None  # what went wrong, typed for the page (reconciler.core.facts.PROBLEMS)
    status: int | None = None  # the HTTP status a check got


_OK_NO_CHECK = HealthResult(True, None, None)


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def probe(
    health: Health, port: int | None, *, host: str = "127.0.0.1",
    env: dict[str, str] | None = None, cwd: str | None = None, shared: bool = False,
) -> HealthResult:
    """Run one check. `env` and `cwd` apply to command checks ({port} and PORT are filled in).
    `shared`: the periodic check of a running server; a tcp check may then be answered from
    the kernel's table of listening sockets, read once for all the checks on the same beat
    (`listen_table`). Only a "yes" is taken from it: anything else connects, for the reason."""
    try:
        return await PROBES[type(health)](health, _Target(host, port, env, cwd, shared))
    except Exception as exc:  # the contract is "never raise": report it as a failed check
        return HealthResult(False, None, f"health check failed unexpectedly: {exc!r}")


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return True
        if "connection refused" in str(seen).lower() or "actively refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _http(health: HttpHealth, host: str, port: int) -> HealthResult:
    """GET the path over a plain asyncio connection and read the status line (no HTTP client
    library: httpx alone would add ~8 MB to the gateway). Redirects are not followed: a 3xx
    counts as healthy. The latency is the time to the status line."""
    where = f"[{host}]" if ":" in host else host
    url = f"http://{where}:{port}{health.path}"
    request = (f"GET {health.path} HTTP/1.1\r\nHost: {where}:{port}\r\nUser-Agent: omen-gateway health check\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1", "replace")
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(health.timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
    except TimeoutError:
        return HealthResult(False, None, f"timed out after {_secs(health.timeout)}", "timeout")
    except OSError as exc:
        if _refused(exc):
            return HealthResult(False, None, f"connection refused on {host}:{port}", "refused")
        return HealthResult(False, None, f"cannot connect to {host}:{port}: {exc.strerror or exc}", "connect")
    finally:
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
    latency = _ms(started)
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        shown = status_line[:60].decode("latin-1").strip() or "the connection closed"
        return HealthResult(False, latency, f"no valid HTTP answer from {url}: {shown!r}", "invalid")
    code = int(parts[1])
    if code >= 400:
        return HealthResult(False, latency, f"HTTP {code} from {url}", "status", code)
    return HealthResult(True, latency, None, status=code)


async def _tcp(health: TcpHealth, host: str, port: int) -> HealthResult:
    """Connect and close, on a bare non-blocking socket. Over loopback the connect has
    nearly always finished when `connect_ex` returns, so the check is answered without a
    turn of the event loop (a stream pair cost 2.5x the CPU, and 100 servers are checked
    every 10 s); only a slow connect waits on the loop, with the timeout."""
    started = time.perf_counter()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        code = sock.connect_ex((host, port))
        if code in _IN_PROGRESS and current().connect_done(sock):
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        elif code in _IN_PROGRESS:
            sock.close()
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            async with asyncio.timeout(health.timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
            code = 0
        latency = _ms(started)
    except TimeoutError:
        return HealthResult(False, None, f"timed out after {_secs(health.timeout)}", "timeout")
    except OSError as exc:
        code = exc.errno or -1
        latency = None
    finally:
        sock.close()
    if code == 0:
        return HealthResult(True, latency, None)
    if code in _REFUSED:
        return HealthResult(False, None, f"connection refused on {host}:{port}", "refused")
    return HealthResult(False, None, f"cannot connect to {host}:{port}: {os.strerror(code) if code > 0 else 'error'}",
                        "connect")


def listen_table() -> ListenTable | None:
    """The kernel's listening sockets, read at most once per TABLE_AGE seconds of the loop's
    clock: the checks of 100 servers on one beat (reconciler/engine/observe.py) share one read."""
    global _table
    now = asyncio.get_running_loop().time()
    if _table is None or now - _table[0] > TABLE_AGE:
        _table = (now, current().listening())
    return _table[1]


TABLE_AGE = 0.25  # seconds
_table: tuple[float, ListenTable | None] | None = None

_IN_PROGRESS = frozenset(c for c in (errno.EINPROGRESS, errno.EWOULDBLOCK, getattr(errno, "WSAEWOULDBLOCK", None))
                         if c is not None)
_REFUSED = frozenset(c for c in (errno.ECONNREFUSED, getattr(errno, "WSAECONNREFUSED", None)) if c is not None)


async def _command(health: CommandHealth, port: int | None, env: dict[str, str] | None,
                   cwd: str | None) -> HealthResult:
    argv = [part.replace("{port}", str(port)) for part in health.command] if port else list(health.command)
    full_env = dict(os.environ if env is None else env)
    if port is not None:
        full_env.setdefault("PORT", str(port))
    platform = current()
    started = time.perf_counter()
    # Output goes to a file, not a pipe: a grandchild that keeps a pipe open cannot hang us.
    # A plain Popen awaited through the platform's exit wait (a pidfd; a thread on Windows), not
    # an asyncio subprocess: Windows' selector loop, the one psycopg accepts, has none.
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=full_env,
                                    cwd=cwd, **platform.spawn_kwargs(suspended=True))
        except FileNotFoundError:
            where = (f"working folder {cwd} does not exist" if cwd and not os.path.isdir(cwd)
                     else "no such file or directory")
            return HealthResult(False, None, f"cannot run health command {argv[0]!r}: {where}", "command")
        except OSError as exc:
            return HealthResult(False, None, f"cannot run health command {argv[0]!r}: {exc.strerror or exc}",
                                "command")
        try:  # in a job of its own before it runs (Windows): what it leaves behind is ended with it
            platform.contain(Path(tempfile.gettempdir()), "health-check", proc.pid)
        finally:
            platform.resume(proc.pid)
        code: int | None = None
        try:
            async with asyncio.timeout(health.timeout):
                await platform.wait_exit(proc.pid)
            code = proc.wait()  # it exited: reaped at once
            latency = _ms(started)
        except TimeoutError:
            pass
        finally:
            # The check's whole process group goes, also when it exited but left children
            # behind, or when this probe is cancelled.
            await asyncio.to_thread(_kill_tree, proc.pid)
            if code is None:
                await asyncio.to_thread(proc.wait)  # killed: gone at once (never a zombie left)
        if code is None:
            return HealthResult(False, None, f"timed out after {_secs(health.timeout)}", "timeout")
        if code == 0:
            return HealthResult(True, latency, None)
        out.seek(0)
        lines = out.read()[-2000:].decode(errors="replace").strip().splitlines()
        said = f": {lines[-1].strip()}" if lines else ""
        return HealthResult(False, latency, f"{shlex.join(argv)} exited with code {code}{said}", "command")


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        known = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        known = []  # exited already: the group may still have members
    current().kill_tree(pid, known)


async def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Something accepts TCP connections on host:port (within `timeout` seconds)."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
        return True
    except (OSError, TimeoutError):
        return False


def port_holder(port: int) -> tuple[int, str] | None:
    """(pid, process name) of the process listening on `port`, or None when nobody is, or
    the listener belongs to a process we may not inspect (another user's). Blocking: a
    psutil sweep, call it from a thread in the daemon."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                return conn.pid, psutil.Process(conn.pid).name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return conn.pid, "unknown"
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """A server could bind `port` now, on `host` and on all interfaces (a listener on either
    one blocks the other). Binds like a server would, with SO_REUSEADDR where that is normal."""
    for address in dict.fromkeys((host, "0.0.0.0")):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if current().reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


__all__ = ["HealthResult", "probe", "port_answers", "port_holder", "port_is_free"]


# --- one probe per kind of check (reconciler/core/spec.py HEALTH_KINDS) ---------------------------
@dataclass(frozen=True)
class _Target:
    host: str
    port: int | None
    env: dict[str, str] | None
    cwd: str | None
    shared: bool = False


def _needs_port(check: Callable[[Any, str, int], Awaitable[HealthResult]]) -> Probe:
    async def run(health: Any, target: _Target) -> HealthResult:
        if target.port is None:
            return HealthResult(False, None, f"no port to check ({health.type} health check)")
        return await check(health, target.host, target.port)
    return run


async def _tcp_probe(health: TcpHealth, target: _Target) -> HealthResult:
    if target.port is not None and target.shared:
        table = listen_table()
        if table is not None and accepts(table, target.host, target.port):
            return _OK_NO_CHECK  # no latency: the kernel would answer it, not the server
    return await _tcp_needs_port(health, target)


async def _none(health: NoHealth | RunningHealth, target: _Target) -> HealthResult:
    """No check, or "it keeps running" (the loop waits `min_uptime`, observe.py): nothing to ask."""
    return _OK_NO_CHECK


async def _command_probe(health: CommandHealth, target: _Target) -> HealthResult:
    return await _command(health, target.port, target.env, target.cwd)


Probe = Callable[[Any, _Target], Awaitable[HealthResult]]
_tcp_needs_port = _needs_port(_tcp)
PROBES: dict[type, Probe] = {
    HttpHealth: _needs_port(_http),
    TcpHealth: _tcp_probe,
    CommandHealth: _command_probe,
    NoHealth: _none,
    RunningHealth: _none,
}
_missing = [kind.__name__ for kind in HEALTH_KINDS if kind not in PROBES]
if _missing:  # a new kind of check without its probe fails here, not as a silent tcp check
    raise ImportError(f"reconciler.engine.health: no probe for {', '.join(_missing)} (add it to PROBES)")
