"""Per-server log files: rotate by size without stopping the server and without losing a
line, and read across the rotated files (`gateway logs NAME [-f] [--grep X] [-n N]`).

A child writes to DATA/logs/NAME.log through a descriptor it inherited (append mode), so
the file cannot be renamed under it (Windows refuses; on POSIX the child would keep
writing to the renamed file). Rotation is copy-truncate, made lossless:

1. copy NAME.log to a new file (.NAME.log.rotating) while the server keeps writing;
2. shift NAME.log.1..K-1 to .2..K, dropping the oldest (closed files: renames work on every OS);
3. suspend the server's process tree for the few milliseconds it takes to copy the bytes
   written meanwhile, rename the copy to NAME.log.1 and truncate NAME.log to zero under the
   same inode, then resume it. With O_APPEND the child's next write lands at the new end.

NAME.log.1 is then a byte-exact copy of NAME.log up to the truncation, which is also what
lets `follow` continue across a rotation: it finishes reading .1 from its old offset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from reconciler.core.digits import plain_digits
from reconciler.platform.fsutil import server_log

log = logging.getLogger("gateway")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
FREEZE_WAIT = 0.5  # seconds to wait for a suspended process to actually stop
CHUNK = 1 << 20


class LogSettingsError(ValueError):
    pass


def parse_size(value: str) -> int:
    """``"10MB"``, ``"512k"``, ``"1048576"`` -> bytes."""
    match = _SIZE_RE.match(value)
    if not match:
        raise LogSettingsError(f"{value!r} is not a size: write it like 10MB, 512KB or 1048576")
    return int(match.group(1)) * _UNITS[match.group(2)[:1].lower()]


@dataclass(frozen=True)
class LogSettings:
    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5
    check_every: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LogSettings:
        """GATEWAY_LOG_MAX_SIZE (10MB), GATEWAY_LOG_KEEP (5), GATEWAY_LOG_CHECK_EVERY (seconds, 30)."""
        env = dict(os.environ if env is None else env)
        base = cls()
        try:
            keep = int(env.get("GATEWAY_LOG_KEEP", base.keep))
            every = float(env.get("GATEWAY_LOG_CHECK_EVERY", base.check_every))
        except ValueError as exc:
            raise LogSettingsError(f"GATEWAY_LOG_KEEP / GATEWAY_LOG_CHECK_EVERY: {exc}") from None
        size = parse_size(env["GATEWAY_LOG_MAX_SIZE"]) if "GATEWAY_LOG_MAX_SIZE" in env else base.max_bytes
        if keep < 1 or size < 1 or every <= 0:
            raise LogSettingsError("GATEWAY_LOG_KEEP and GATEWAY_LOG_MAX_SIZE must be at least 1")
        return cls(size, keep, every)


# --- rotation ---------------------------------------------------------------------------
def rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def rotate(path: Path, keep: int, writers: Sequence[psutil.Process] = ()) -> bool:
    """Copy-truncate `path` into `path.1` (older ones shifted, beyond `keep` dropped).
    `writers` are suspended only around the final copy and the truncation."""
    if not path.exists():
        return False
    part = path.with_name(f".{path.name}.rotating")  # made while the old .1 exists: a new inode
    with open(path, "rb") as src, open(path, "r+b") as trunc, open(part, "wb") as dst:
        _copy(src, dst)
        for index in sorted(_rotated_indices(path), reverse=True):
            if index >= keep:
                rotated(path, index).unlink()
            else:
                os.replace(rotated(path, index), rotated(path, index + 1))
        frozen = _freeze(writers)
        try:
            _copy(src, dst)
            dst.close()
            os.replace(part, rotated(path, 1))
            trunc.truncate(0)
        finally:
            _thaw(frozen)
    return True


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    while chunk := src.read(CHUNK):
        dst.write(chunk)
    dst.flush()


def _freeze(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    frozen = []
    for proc in procs:
        try:
            proc.suspend()
            frozen.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    deadline = time.monotonic() + FREEZE_WAIT
    for proc in frozen:  # SIGSTOP is asynchronous: wait until no thread can still be writing
        while not _stopped(proc) and time.monotonic() < deadline:
            time.sleep(0.0005)
    return frozen


def _stopped(proc: psutil.Process) -> bool:
    tasks = Path(f"/proc/{proc.pid}/task")
    if tasks.is_dir():  # Linux: every thread, not only the main one
        try:
            for stat in tasks.glob("*/stat"):
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("T", "t", "Z", "X"):
                    return False
            return True
        except (OSError, IndexError):
            return True  # it exited
    try:
        return proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:  # pragma: no cover - Windows: SuspendThread is synchronous
        return True


def _thaw(procs: Sequence[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.resume()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def rotate_folder(folder: Path, settings: LogSettings,
                  writers_of: Callable[[str], Sequence[psutil.Process]] = lambda name: ()) -> list[str]:
    """Rotate every NAME.log in `folder` over the size limit; the names rotated."""
    done = []
    for path in sorted(folder.glob("*.log")):
        try:
            if path.stat().st_size < settings.max_bytes:
                continue
            if rotate(path, settings.keep, writers_of(path.stem)):
                done.append(path.stem)
        except OSError as exc:
            log.warning("cannot rotate %s: %s", path, exc)
    return done


async def rotate_forever(rt: Any, settings: LogSettings | None = None) -> None:
    """The daemon's task: every `check_every` seconds, rotate the logs over the limit."""
    settings = settings or LogSettings.from_env()
    folder = Path(rt.data_dir) / "logs"

    def writers_of(name: str) -> Sequence[psutil.Process]:
        child = rt.children.get(name)
        return child.tree() if child is not None else ()

    while True:
        await asyncio.sleep(settings.check_every)
        if folder.is_dir():
            for name in await asyncio.to_thread(rotate_folder, folder, settings, writers_of):
                log.info("%s: log rotated (over %d bytes)", name, settings.max_bytes)


# --- reading ----------------------------------------------------------------------------
def _rotated_indices(path: Path) -> list[int]:
    found = []
    for candidate in path.parent.glob(glob_escape(path.name) + ".*"):
        suffix = candidate.name[len(path.name) + 1:]
        if plain_digits(suffix):
            found.append(int(suffix))
    return found


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def log_files(path: Path) -> list[Path]:
    """The rotated files oldest first, then the live one."""
    older = [rotated(path, index) for index in sorted(_rotated_indices(path), reverse=True)]
    return older + ([path] if path.exists() else [])


def _lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # rotated away while reading
        return []
    return data.lstrip(b"\0").splitlines()  # NULs: a non-append writer after a truncation


def tail(path: Path, lines: int, grep: str | None = None) -> list[str]:
    """The last `lines` lines across the rotated files (only those matching `grep`)."""
    pattern = re.compile(grep) if grep else None
    found: deque[bytes] = deque(maxlen=max(lines, 0))
    if lines <= 0:
        return []
    collected: list[list[bytes]] = []
    count = 0
    for file in reversed(log_files(path)):  # newest first; stop once there are enough
        chunk = _lines(file)
        if pattern is not None:
            chunk = [ln for ln in chunk if pattern.search(ln.decode("utf-8", "replace"))]
        collected.append(chunk)
        count += len(chunk)
        if count >= lines:
            break
    for chunk in reversed(collected):
        found.extend(chunk)
    return [ln.decode("utf-8", "replace") for ln in found]


def follow(path: Path, out: Callable[[str], None], grep: str | None = None,
           stop: Callable[[], bool] = lambda: False, poll: float = 0.2) -> None:
    """Print what is appended to `path` from now on, across rotations, until `stop()`."""
    pattern = re.compile(grep) if grep else None
    pos = path.stat().st_size if path.exists() else 0
    pending, last = b"", _identity(rotated(path, 1))
    while not stop():
        size = path.stat().st_size if path.exists() else 0
        data, now = b"", _identity(rotated(path, 1))
        if size < pos or now != last:  # rotated: the rest of what we read is in .1, at the same offset
            last = now
            with open(rotated(path, 1), "rb") as old:
                old.seek(pos)
                data = old.read()
                end = old.tell()
            deadline = time.monotonic() + 1.0  # the truncation follows the rename within milliseconds
            while path.exists() and path.stat().st_size >= end > 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            pos = 0 if not path.exists() or path.stat().st_size < end else end
            size = path.stat().st_size if path.exists() else 0
        if size > pos or data:
            with open(path, "rb") as live:
                live.seek(pos)
                fresh = live.read()
            pos += len(fresh)
            data += fresh.lstrip(b"\0")
        if not data:
            time.sleep(poll)
            continue
        *complete, pending = (pending + data).split(b"\n")
        for line in complete:
            text = line.decode("utf-8", "replace").rstrip("\r")
            if pattern is None or pattern.search(text):
                out(text + "\n")


def _identity(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def cmd_logs(args: Any, data_dir: Path) -> int:
    """`gateway logs NAME [-n N] [-f] [--grep X]`."""
    path = server_log(data_dir, args.name)
    if not log_files(path):
        print(f"gateway logs: no log for {args.name!r} at {path}", file=sys.stderr)
        return 1
    grep = getattr(args, "grep", None)
    try:
        if grep:
            re.compile(grep)
    except re.error as exc:
        print(f"gateway logs: --grep {grep!r}: {exc}", file=sys.stderr)
        return 2
    for line in tail(path, args.lines, grep):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if args.follow:
        def out(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        follow(path, out, grep)
    return 0
