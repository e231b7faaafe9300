"""What the benchmark scripts share (they run as `python bench/NAME.py`, so this folder is
on sys.path): where things are, free ports on 127.0.0.1, whether a port answers, and how a
process the benchmark started is ended."""

from __future__ import annotations

import signal
import socket
import subprocess
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


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM (a gateway then stops its servers, then itself); SIGKILL if it is not gone in time."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
