"""Log rotation under a real child writing fast: nothing lost, nothing doubled, the child
never restarted; reading across the rotated files."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.engine.children import Child
from reconciler.ops.logs import LogSettings, follow, log_files, parse_size, rotate, rotate_folder, tail
from tests.fix_children import toml_str
from tests.wine import wine_gap

WRITER = ("import os, sys\n"
          "n = int(sys.argv[1])\n"
          "for i in range(n):\n"
          "    os.write(1, b'line %d\\n' % i)\n")
NUMBERED = re.compile(rb"^line (\d+)$")


def numbered_lines(path: Path) -> list[int]:
    out = []
    for file in log_files(path):
        for line in file.read_bytes().splitlines():
            match = NUMBERED.match(line)
            if match:
                out.append(int(match.group(1)))
    return out


# Windows appends through a handle opened for FILE_APPEND_DATA only (Platform.open_log) at the end
# of the file, whatever its offset; Wine writes at the handle's own offset: after a truncate, a hole
APPEND_GAP = wine_gap("a FILE_APPEND_DATA handle writes at its own offset, not at the end: a truncate leaves NULs")


@APPEND_GAP
@pytest.mark.alone  # this loop keeps up with a fast writer
async def test_rotation_under_a_fast_writer_loses_and_doubles_nothing(tmp_path: Path, reap: object) -> None:
    path = tmp_path / "logs" / "fast.log"
    total = 500_000
    child = await Child.spawn([sys.executable, "-c", WRITER, str(total)], log_path=path)
    pid, rotations = child.pid, 0
    while child.is_alive():
        if path.exists() and path.stat().st_size > 16 * 1024:
            assert rotate(path, keep=10_000, writers=child.tree())
            rotations += 1
        await asyncio.sleep(0.002)
    status = await child.wait()
    assert status.code == 0 and child.pid == pid  # ran to its end, once
    assert rotations >= 10, rotations
    assert numbered_lines(path) == list(range(total))
    assert len(log_files(path)) == rotations + 1


def test_rotation_keeps_the_newest_files_only(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    for round_ in range(8):
        path.write_bytes(f"round {round_}\n".encode() * 100)
        assert rotate(path, keep=3)
        assert path.stat().st_size == 0
    assert [p.name for p in log_files(path)] == ["x.log.3", "x.log.2", "x.log.1", "x.log"]
    assert tail(path, 1) == ["round 7"]
    assert tail(path, 101)[0] == "round 6"


def test_rotate_folder_only_touches_files_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_bytes(b"x" * 2000)
    (tmp_path / "small.log").write_bytes(b"y" * 10)
    assert rotate_folder(tmp_path, LogSettings(max_bytes=1000, keep=2)) == ["big"]
    assert (tmp_path / "big.log.1").stat().st_size == 2000 and not (tmp_path / "small.log.1").exists()


def test_tail_and_grep_read_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    for i in range(30):
        with path.open("ab") as fh:
            fh.write(f"line {i} {'even' if i % 2 == 0 else 'odd'}\n".encode())
        if i % 10 == 9:
            rotate(path, keep=5)
    assert tail(path, 3) == ["line 27 odd", "line 28 even", "line 29 odd"]
    assert tail(path, 12)[0] == "line 18 even"
    assert tail(path, 4, grep=r"even$") == ["line 22 even", "line 24 even", "line 26 even", "line 28 even"]
    assert len(tail(path, 1000)) == 30


def test_follow_continues_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"before\n")
    got: list[str] = []
    done = threading.Event()
    thread = threading.Thread(target=follow, args=(path, got.append, None, done.is_set, 0.01))
    thread.start()
    try:
        time.sleep(0.1)
        with path.open("ab") as fh:
            fh.write(b"one\ntw")
            fh.flush()
            rotate(path, keep=2)  # "one" may not have been seen yet: it is read from .1
            fh.write(b"o\nthree\n")
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        thread.join()
    assert got[:1] == ["one\n"] and "three\n" in got


def test_sizes_and_settings_from_the_environment() -> None:
    assert parse_size("10MB") == 10 * 1024 * 1024 and parse_size("512k") == 512 * 1024 and parse_size("7") == 7
    settings = LogSettings.from_env({"GATEWAY_LOG_MAX_SIZE": "1MB", "GATEWAY_LOG_KEEP": "2"})
    assert (settings.max_bytes, settings.keep) == (1024 * 1024, 2)
    assert LogSettings.from_env({}) == LogSettings(10 * 1024 * 1024, 5, 30.0)
    with pytest.raises(ValueError, match="is not a size"):
        parse_size("ten")


@APPEND_GAP
def test_daemon_rotates_a_running_server_without_restarting_it(gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LOG_MAX_SIZE", "16KB")
    monkeypatch.setenv("GATEWAY_LOG_CHECK_EVERY", "0.2")
    ticker = Path(__file__).resolve().parent.parent / "children" / "ticker.py"
    gateway.write("chatty", f'command = [{toml_str(sys.executable)}, {toml_str(ticker)}, "0.0005"]\nport = "auto"\n'
                  '[health]\ntype = "none"\n')
    gateway.start()
    first = gateway.wait_phase("chatty", "running")
    logs = gateway.data_dir / "logs" / "chatty.log"
    deadline = time.monotonic() + 20
    while not Path(f"{logs}.2").exists():
        assert time.monotonic() < deadline, "no rotation happened"
        time.sleep(0.1)
    now = gateway.status()["chatty"]
    assert now["pid"] == first["pid"] and now["restarts"] == 0
    out = subprocess.run([sys.executable, "-m", "reconciler", "logs", "chatty", "-n", "5", "--grep", "^tick",
                          "--data-dir", str(gateway.data_dir)], capture_output=True, text=True, check=True)
    ticks = [int(line.split()[1]) for line in out.stdout.splitlines()]
    assert len(ticks) == 5 and ticks == list(range(ticks[0], ticks[0] + 5))
    gateway.stop()
    seen = [int(m.group(1)) for f in log_files(logs) for m in re.finditer(rb"^tick (\d+)\r?$", f.read_bytes(),
                                                                             re.MULTILINE)]
    assert seen == list(range(len(seen))) and len(seen) > 100  # no tick lost or doubled across the files
