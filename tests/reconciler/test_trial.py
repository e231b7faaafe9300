"""try_spec with real processes: what the candidate prints reaches `on_line` while the try is
still waiting, and a try that is cancelled (a page closed mid-try), even twice, ends its whole
process tree, a grandchild that left the process group included."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.spec import ServerSpec
from reconciler.engine.launch import try_length
from reconciler.engine.trial import try_spec
from tests.fix_children import gone, program

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")

GATED = """\
import socket, sys, time
from pathlib import Path
print("warming up", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.02)
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
while True:
    sock.accept()[0].close()
"""


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def spec(command: list[str], **extra: object) -> ServerSpec:
    return ServerSpec.model_validate({"name": "cand", "command": command, "port": "auto", **extra})


async def test_lines_arrive_while_the_try_waits(tmp_path: Path, reap) -> None:
    script, gate = tmp_path / "gated.py", tmp_path / "go"
    script.write_text(GATED)
    lines: list[str] = []
    ports: list[int | None] = []
    task = asyncio.ensure_future(try_spec(spec([sys.executable, str(script), "{port}", str(gate)]), tmp_path,
                                          tmp_path / "try.log", lines.append, ports.append))
    await until(lambda: "warming up" in lines, "the first line")
    assert not task.done() and ports and ports[0] is not None  # it prints, then waits: the try goes on
    gate.touch()
    verdict = await task
    assert verdict.ok and verdict.text.startswith(f"answered on port {ports[0]} in ")
    assert lines == ["warming up", "listening"]


async def test_a_try_cancelled_twice_still_ends_its_whole_tree(tmp_path: Path, reap) -> None:
    pidfile = tmp_path / "pids.json"
    candidate = spec(program("spawn_grandchild", pidfile), stop={"timeout": "1s"})  # all ignore TERM
    task = asyncio.ensure_future(try_spec(candidate, tmp_path, tmp_path / "try.log"))
    await until(pidfile.exists, "the pid file")
    pids = list(json.loads(pidfile.read_text()).values())
    task.cancel()
    log = tmp_path / "try.log"
    await until(lambda: "--- gateway: stopping pid" in log.read_text(), "the stop to begin")
    assert not task.done()  # stopping: TERM is ignored, the kill comes after 1 s
    task.cancel()  # e.g. the gateway stops while the try stops: must not cut the stop short
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [pid for pid in pids if not gone(pid)] == []


def test_try_length_is_the_start_period_or_the_short_watch() -> None:
    assert try_length(spec(["x"], health={"type": "tcp", "start_period": "12s"})) == 12
    assert try_length(spec(["x"], health={"type": "none"})) == 3
