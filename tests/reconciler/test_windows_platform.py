"""Windows' own parts of the platform layer: the pure ones checked on any OS, the calls on the
Windows lane (a real Windows CPython under Wine: skipped elsewhere, with that reason)."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

import pytest

from reconciler.platform import current
from reconciler.platform.listening import Listener, accepts
from reconciler.platform.windows_tcp import AF_INET, AF_INET6, ROW4, ROW6, Row, parse, to_table

on_windows = pytest.mark.skipif(sys.platform != "win32", reason="calls Windows itself (the Windows lane runs it)")


def _row4(address: str, port: int, pid: int) -> bytes:
    return ROW4.pack(2, socket.inet_aton(address), socket.htons(port), b"\0" * 4, 0, pid)


def _row6(address: str, port: int, pid: int) -> bytes:
    return ROW6.pack(socket.inet_pton(socket.AF_INET6, address), 0, socket.htons(port), b"\0" * 16, 0, 0, 2, pid)


def test_the_tcp_table_rows_have_the_iphlpapi_layout() -> None:
    assert (ROW4.size, ROW6.size) == (24, 56)  # MIB_TCPROW_OWNER_PID, MIB_TCP6ROW_OWNER_PID
    v4 = struct.pack("<I", 2) + _row4("127.0.0.1", 8765, 4120) + _row4("0.0.0.0", 20000, 4188)
    assert parse(v4, AF_INET) == [Row("127.0.0.1", 8765, 4120), Row("0.0.0.0", 20000, 4188)]
    v6 = struct.pack("<I", 1) + _row6("::1", 8765, 4120)
    assert parse(v6, AF_INET6) == [Row("::1", 8765, 4120)]
    assert parse(struct.pack("<I", 0), AF_INET) == []


def test_the_tcp_table_answers_checks_as_the_linux_one_does() -> None:
    table = to_table([Row("127.0.0.1", 8765, 1), Row("::1", 8765, 1), Row("0.0.0.0", 20000, 2)])
    assert table[8765] == Listener(frozenset({"127.0.0.1", "::1"}), True)
    assert accepts(table, "127.0.0.1", 20000) is True  # a wildcard listener takes loopback too
    assert accepts(table, "127.0.0.1", 20001) is None  # not listed: the check connects


@on_windows
def test_a_real_listener_is_in_the_windows_table() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        table = current().listening()
        assert table is not None and accepts(table, "127.0.0.1", port) is True
    table = current().listening()
    assert table is not None and port not in table


def test_filetimes_count_from_1601() -> None:
    from reconciler.platform.windows_files import FileBasicInfo, filetime_ns

    assert filetime_ns(116444736000000000) == 0
    assert filetime_ns(116444736000000000 + 10_000_000) == 1_000_000_000  # one second later
    assert FileBasicInfo.ChangeTime.offset == 24 and FileBasicInfo.FileAttributes.offset == 32


def test_a_write_that_puts_the_mtime_back_still_moves_the_change_time(tmp_path) -> None:
    import os
    import time

    path = tmp_path / "web.toml"
    path.write_text("port = 1\n", encoding="utf-8")
    before = os.stat(path)
    changed = current().changed_ns(str(path), before)
    time.sleep(0.05)
    path.write_text("port = 2\n", encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the writer puts the mtime back
    after = os.stat(path)
    assert after.st_mtime_ns == before.st_mtime_ns
    assert current().changed_ns(str(path), after) > changed


async def _loop_kind() -> type:
    import asyncio

    return type(asyncio.get_running_loop())


def test_the_gateway_runs_on_a_loop_psycopg_accepts() -> None:
    import asyncio

    from reconciler.platform import aio

    kind = aio.run(_loop_kind())
    if sys.platform == "win32":  # asyncio.run would make a ProactorEventLoop, which psycopg refuses
        assert issubclass(kind, asyncio.SelectorEventLoop)
    else:
        assert issubclass(kind, asyncio.AbstractEventLoop)


async def test_the_tests_run_on_the_gateways_loop() -> None:
    assert await _loop_kind() is _gateway_kind()


def _gateway_kind() -> type:
    import concurrent.futures

    from reconciler.platform import aio

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop of its own, outside this test's
        return pool.submit(aio.run, _loop_kind()).result()


def test_a_servers_python_is_the_console_build_beside_pythonw(tmp_path) -> None:
    from reconciler.platform import console_python

    for name in ("python.exe", "pythonw.exe", "pythonw3.13.exe", "python3.13.exe"):
        (tmp_path / name).write_bytes(b"")
    assert console_python(str(tmp_path / "pythonw.exe")) == str(tmp_path / "python.exe")
    assert console_python(str(tmp_path / "pythonw3.13.exe")) == str(tmp_path / "python3.13.exe")
    assert console_python(str(tmp_path / "python.exe")) == str(tmp_path / "python.exe")
    (tmp_path / "python.exe").unlink()
    assert console_python(str(tmp_path / "pythonw.exe")) == str(tmp_path / "pythonw.exe")  # none beside it


def test_the_gateways_own_short_programs_open_no_window_on_windows() -> None:
    from reconciler.platform.windows import WindowsPlatform

    assert WindowsPlatform().quiet_kwargs() == {"creationflags": 0x08000000}


CTRL_C_AWARE = """import sys, time
try:
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    print("stopping cleanly", flush=True)
    sys.exit(0)
"""


async def stopped_its_own_way(argv: list[str], log: Path, ready: str) -> str:
    """Start `argv` as the gateway starts a server, wait for its line `ready`, stop it as the
    gateway does (timeout 30 s), check it ended by itself (exit code 0, no kill) and return its log."""
    import asyncio

    from reconciler.engine.children import Child

    child = await Child.spawn(argv, log_path=log)
    try:
        for _ in range(300):  # its own line (the gateway's note of the command may hold the words too)
            if ready in log.read_text(encoding="utf-8", errors="replace").splitlines():
                break
            await asyncio.sleep(0.05)
        result = await child.stop("TERM", timeout=30)
        assert not result.escalated and result.exit.code == 0, result
        return log.read_text(encoding="utf-8", errors="replace")
    finally:
        if child.is_alive():
            child.kill()


@on_windows
async def test_a_graceful_stop_reaches_the_server_on_its_own_console(tmp_path: Path) -> None:
    """The helper attaches to the server's console and sends CTRL_C: the server ends its own way
    (under Wine too, which delivers the event to a console it attached to), long before the kill."""
    said = await stopped_its_own_way([sys.executable, "-c", CTRL_C_AWARE], tmp_path / "server.log", "ready")
    assert "stopping cleanly" in said


@on_windows
async def test_a_program_that_ignores_ctrl_c_is_closed_by_its_window(tmp_path: Path) -> None:
    """NSSM's second step: still running after the console event, it is sent WM_CLOSE, and a
    program with a window ends its own way, long before the kill."""
    from tests.fix_children import program

    said = await stopped_its_own_way(program("window_app"), tmp_path / "window.log", "window ready")
    assert "closed by WM_CLOSE" in said


def test_a_server_ended_by_ctrl_c_is_said_so() -> None:
    from reconciler.engine.children import ExitStatus

    assert ExitStatus(0xC000013A, None).describe() == "stopped by Ctrl-C (exit code 0xC000013A)"


def test_a_file_someone_reads_is_replaced_once_they_close_it(tmp_path) -> None:
    """Windows refuses to rename over a file another program has open (Python's open() and Go's
    os.Open share no delete right): cloudflared reading config.yml, an editor. The write waits
    for the reader instead of failing the tunnel's reload; on POSIX it never has to."""
    import threading
    import time

    from reconciler.platform.fsutil import atomic_write

    target = tmp_path / "config.yml"
    target.write_text("old\n")
    reader = open(target, encoding="utf-8")  # noqa: SIM115 - held open on purpose
    closed_at: list[float] = []

    def close_soon() -> None:
        time.sleep(0.4)
        closed_at.append(time.monotonic())
        reader.close()

    closer = threading.Thread(target=close_soon)
    closer.start()
    try:
        atomic_write(target, "new\n")
        done = time.monotonic()
    finally:
        closer.join()
    assert target.read_text() == "new\n"
    if sys.platform == "win32":
        assert done >= closed_at[0]  # it waited for the reader, and did not give up
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind
