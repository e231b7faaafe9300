"""What the benchmark scripts share (they run as `python bench/NAME.py`, so this folder is
on sys.path): where things are, free ports on 127.0.0.1, whether a port answers, how a
process the benchmark started is ended, and a gateway with N servers of the benchmark child."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = REPO / "bench" / "tiny_http.py"  # the child every benchmark runs, for every peer


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now (all bound at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def answers(port: int, timeout: float = 0.05) -> bool:
    """Something accepts a TCP connection on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout).close()
        return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60.0, data: Path | None = None) -> None:
    """SIGTERM (a gateway then stops its servers, then itself); SIGKILL if it is not gone in time.
    On Windows, which has no SIGTERM, a gateway (its `data` folder given) is asked to shut down."""
    if sys.platform == "win32" and data is not None:
        sys.path.insert(0, str(REPO))
        from reconciler.client import Client, NotRunning

        try:
            Client(data, timeout=10).shutdown()
        except NotRunning:
            proc.kill()
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def gateway_with(servers: int, work: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """A gateway (`python -m reconciler run`, its embedded PostgreSQL in work/data, output in
    work/gateway.out) running `servers` of the benchmark child on fixed ports, given once every
    one answers; stopped afterwards, and checked that none answers any more."""
    config, data, output = work / "gateway.d", work / "data", work / "gateway.out"
    config.mkdir(exist_ok=True)
    ports = free_ports(servers)
    for i, port in enumerate(ports):
        (config / f"s{i:03}.toml").write_text(
            f'command = ["{Path(sys.executable).as_posix()}", "{CHILD.as_posix()}", "{{port}}"]\nport = {port}\n')
    env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
    env.pop("GATEWAY_DSN", None)
    with open(output, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(config),
                                 "--data-dir", str(data), "--listen", "127.0.0.1:0"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        t0, left = time.monotonic(), set(ports)
        while left:
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() - t0 < 120, f"{len(left)} servers never answered"
            left = {p for p in left if not answers(p)}
            time.sleep(0.05)
        yield proc, ports
    finally:
        stop_process(proc, 120)
    still = [p for p in ports if answers(p)]
    assert not still, f"servers still answering after the stop: {still}"
