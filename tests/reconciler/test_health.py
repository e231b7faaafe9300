"""Health probes and port facts against real sockets and real processes."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from reconciler.core.spec import CommandHealth, HttpHealth, NoHealth, TcpHealth
from reconciler.engine.children import Child
from reconciler.engine.health import HealthResult, port_answers, port_holder, port_is_free, probe
from tests.fix_children import Reaper, program
from tests.wine import NO_OWNER_PID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(**fields: Any) -> HttpHealth:
    return HttpHealth.model_validate({"type": "http", **fields})


def tcp(**fields: Any) -> TcpHealth:
    return TcpHealth.model_validate({"type": "tcp", **fields})


def command(argv: list[str], **fields: Any) -> CommandHealth:
    return CommandHealth.model_validate({"type": "command", "command": argv, **fields})


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket listening on a free port that never accepts: connections complete (the
    kernel queues them) but no byte is ever answered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


async def _echo(tmp_path: Path, **env: str) -> AsyncIterator[tuple[Child, int]]:
    port = free_port()
    child = await Child.spawn(program("http_echo", port), env={**os.environ, **env},
                              log_path=tmp_path / "echo.log")
    deadline = time.monotonic() + 10
    while not await port_answers(port):
        assert time.monotonic() < deadline, (tmp_path / "echo.log").read_text()
        await asyncio.sleep(0.005)
    yield child, port
    await child.stop("TERM", 5)


@pytest.fixture
async def echo(tmp_path: Path, reap: Reaper) -> AsyncIterator[tuple[Child, int]]:
    async for pair in _echo(tmp_path):
        yield pair


@pytest.fixture
async def echo_503(tmp_path: Path, reap: Reaper) -> AsyncIterator[tuple[Child, int]]:
    async for pair in _echo(tmp_path, HTTP_ECHO_STATUS="503"):
        yield pair


# --- http ---------------------------------------------------------------------------------
async def test_http_ok(echo: tuple[Child, int]) -> None:
    result = await probe(http(path="/health"), echo[1])
    assert result.ok and result.error is None
    assert result.latency_ms is not None and 0 < result.latency_ms < 2000


async def test_http_redirect_is_ok_and_not_followed(echo: tuple[Child, int]) -> None:
    assert (await probe(http(path="/redirect"), echo[1])).ok


async def test_http_ignores_proxy_settings(echo: tuple[Child, int], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert (await probe(http(path="/health"), echo[1])).ok


async def test_http_503(echo_503: tuple[Child, int]) -> None:
    port = echo_503[1]
    result = await probe(http(path="/health"), port)
    assert not result.ok and result.latency_ms is not None
    assert result.error == f"HTTP 503 from http://127.0.0.1:{port}/health"
    assert (result.problem, result.status) == ("status", 503)  # typed, for the page's words


async def test_http_refused() -> None:
    port = free_port()
    assert await probe(http(), port) == HealthResult(False, None, f"connection refused on 127.0.0.1:{port}", "refused")


@pytest.mark.alone  # how long the check took
async def test_http_timeout(listener: socket.socket) -> None:
    started = time.monotonic()
    result = await probe(http(timeout="300ms"), listener.getsockname()[1])
    assert result == HealthResult(False, None, "timed out after 0.3s", "timeout")
    assert 0.25 < time.monotonic() - started < 1.5


async def test_http_without_a_port() -> None:
    result = await probe(http(), None)
    assert not result.ok and result.error == "no port to check (http health check)"


# --- tcp ----------------------------------------------------------------------------------
async def test_tcp_ok(listener: socket.socket) -> None:
    result = await probe(tcp(), listener.getsockname()[1])
    assert result.ok and result.latency_ms is not None


async def test_tcp_refused() -> None:
    port = free_port()
    assert await probe(tcp(), port) == HealthResult(False, None, f"connection refused on 127.0.0.1:{port}", "refused")


@pytest.fixture
def full_listener() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A listener whose accept queue is full: the kernel drops the next SYN, so a connect
    stays pending (and is retried by TCP after about a second)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    queued: list[socket.socket] = []
    for _ in range(4):  # more than the queue holds, whatever the kernel rounds 0 up to
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(sock.getsockname())
        queued.append(client)
    time.sleep(0.05)
    yield sock, queued
    for client in queued:
        client.close()
    sock.close()


@pytest.mark.alone  # how long the check took
async def test_tcp_pending_connect_times_out(full_listener: tuple[socket.socket, list[socket.socket]]) -> None:
    """The slow path: a connect that has not finished when connect returns waits on the
    event loop, up to the timeout."""
    started = time.monotonic()
    result = await probe(tcp(timeout="300ms"), full_listener[0].getsockname()[1])
    assert result == HealthResult(False, None, "timed out after 0.3s", "timeout")
    assert 0.25 < time.monotonic() - started < 1.5


async def test_tcp_pending_connect_that_finishes_is_ok(full_listener: tuple[socket.socket, list[socket.socket]]) -> None:
    sock, _ = full_listener
    sock.setblocking(False)

    async def drain() -> None:  # make room in the queue while the probe waits
        await asyncio.sleep(0.2)
        for _ in range(20):
            try:
                sock.accept()[0].close()
            except BlockingIOError:
                await asyncio.sleep(0.05)

    drainer = asyncio.create_task(drain())
    started = time.monotonic()
    result = await probe(tcp(timeout="5s"), sock.getsockname()[1])
    await drainer
    assert result.ok and result.latency_ms is not None, result
    assert time.monotonic() - started > 0.15  # it did wait: the SYN was dropped at first


async def test_port_answers(listener: socket.socket) -> None:
    assert await port_answers(listener.getsockname()[1])
    assert not await port_answers(free_port())


# --- command ------------------------------------------------------------------------------
async def test_command_ok_gets_port_in_argv_and_env(tmp_path: Path, reap: Reaper) -> None:
    check = ("import os, sys; "
             "ok = os.environ['PORT'] == sys.argv[1] == '1234' and os.getcwd() == sys.argv[2]; "
             "sys.exit(0 if ok else 7)")
    argv = [sys.executable, "-c", check, "{port}", str(tmp_path)]
    result = await probe(command(argv), 1234, cwd=str(tmp_path))
    assert result.ok and result.error is None and result.latency_ms is not None


async def test_command_failure_says_code_and_last_line(reap: Reaper) -> None:
    code = "import sys; print('checking'); print('database unreachable', file=sys.stderr); sys.exit(2)"
    result = await probe(command([sys.executable, "-c", code]), None)
    assert not result.ok
    assert result.error is not None and result.error.endswith("exited with code 2: database unreachable")
    assert result.problem == "command"  # typed for the page: "its check command says something is wrong"


@pytest.mark.alone  # how long the check took
async def test_command_timeout_kills_the_check(reap: Reaper) -> None:
    started = time.monotonic()
    result = await probe(command(program("ignore_sigterm"), timeout="300ms"), None)
    assert result == HealthResult(False, None, "timed out after 0.3s", "timeout")
    assert time.monotonic() - started < 2.0
    # `reap` fails the test at teardown if the check is still running


async def test_command_that_exits_leaves_nothing_behind(tmp_path: Path, reap: Reaper) -> None:
    # the grandchild holds the output pipe and ignores SIGTERM, silently: ignore_sigterm.py's own line
    # could come after 'started' (a loaded machine starts it late), and the last line is the one told
    quiet = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    code = (f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {quiet!r}]); "
            "print('started'); sys.exit(1)")
    result = await probe(command([sys.executable, "-c", code]), None)
    assert result.error is not None and result.error.endswith("exited with code 1: started")
    # `reap` fails the test at teardown if the orphaned grandchild is still running


async def test_command_timeout_with_a_grandchild(tmp_path: Path, reap: Reaper) -> None:
    pidfile = tmp_path / "pids.json"
    result = await probe(command(program("spawn_grandchild", pidfile), timeout="1s"), None)
    assert result.error == "timed out after 1s"
    assert pidfile.exists()  # the grandchildren had started; reap checks they are gone


async def test_command_missing() -> None:
    result = await probe(command(["no-such-check-x1"]), None)
    error = "cannot run health command 'no-such-check-x1': no such file or directory"
    assert result == HealthResult(False, None, error, "command")


async def test_none_is_ok() -> None:
    assert await probe(NoHealth(type="none"), None) == HealthResult(True, None, None)


# --- port facts ---------------------------------------------------------------------------
@NO_OWNER_PID
def test_port_holder_names_the_listener(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert port_holder(port) == (os.getpid(), psutil.Process().name())
    assert port_holder(free_port()) is None


def test_port_is_free() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_is_free(port)
    assert port_is_free(port)
    with socket.socket() as sock:  # a listener on all interfaces blocks 127.0.0.1 too
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen()
        assert not port_is_free(port)


async def test_http_answer_that_is_not_http() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await probe(http(path="/h"), port)
    assert not result.ok
    assert result.error == f"no valid HTTP answer from http://127.0.0.1:{port}/h: 'SSH-2.0-OpenSSH_9.2'"


def test_every_kind_of_check_has_its_probe_and_its_keys_known():
    import typing

    from reconciler.core.spec import HEALTH_KINDS, HealthSpec
    from reconciler.engine.config import _KNOWN_KEYS
    from reconciler.engine.health import PROBES

    union = typing.get_args(typing.get_args(HealthSpec)[0])
    assert set(union) == set(HEALTH_KINDS) == set(PROBES)  # one list: a new kind cannot be half-added
    for kind in HEALTH_KINDS:
        assert set(kind.model_fields) <= set(_KNOWN_KEYS["health"])


# --- the kernel's listening table (Linux: sock_diag), which periodic tcp checks share ---------
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the table is read on Linux only")


@linux_only
def test_the_listening_table_sees_listeners_and_their_queues() -> None:
    from reconciler.platform import current
    from reconciler.platform.listening import accepts

    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, socket.socket() as full:
        v4.bind(("127.0.0.1", 0))
        v4.listen(8)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", 0))
        v6.listen(8)
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # an accept queue of one, never accepted: like a server that hangs
        p4, p6, pfull = v4.getsockname()[1], v6.getsockname()[1], full.getsockname()[1]
        waiting = [socket.create_connection(("127.0.0.1", pfull), timeout=2)]  # the queue is now full
        try:
            table = current().listening()
            assert table is not None
            assert table[p4].addresses == {"127.0.0.1"} and table[p4].room
            assert table[p6].addresses == {"::1"}
            assert accepts(table, "127.0.0.1", p4) is True
            assert accepts(table, "::1", p6) is True
            assert accepts(table, "127.0.0.1", p6) is None  # v6 only: a connect must tell
            assert not table[pfull].room and accepts(table, "127.0.0.1", pfull) is None
        finally:
            for conn in waiting:
                conn.close()
    closed = free_port()
    assert accepts(current().listening() or {}, "127.0.0.1", closed) is None


@linux_only
async def test_a_shared_tcp_check_takes_yes_from_the_table_and_connects_for_no() -> None:
    tcp = TcpHealth(type="tcp")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        shared = await probe(tcp, port, shared=True)
        assert shared == HealthResult(True, None, None)  # from the table: no latency, nothing to accept
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()  # no connection was made
        own = await probe(tcp, port)
        assert own.ok and own.latency_ms is not None  # not shared: a real connect
    await asyncio.sleep(0.3)  # older than the table's age: read again
    gone = await probe(tcp, port, shared=True)
    assert not gone.ok and gone.error == f"connection refused on 127.0.0.1:{port}"
