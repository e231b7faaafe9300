"""One gateway per data folder: an OS lock on `DATA/gateway.lock`, taken before anything else
and held for the daemon's whole life.

The lock is the OS's (flock on POSIX, a locked byte on Windows, through `platform.try_lock`),
so it goes with the process: a gateway that is killed, or a laptop that loses power, leaves no
lock behind, only the file. The file holds a note of who holds it (pid, when) that a second
`gateway run` reads to say who is running, and whether the last holder stopped cleanly: a
note still saying "running" when the lock is free means the last gateway did not stop (it was
killed, or the power went), and the next start says it recovered from that.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.events import EventKind
from reconciler.platform import current
from reconciler.settings import URL_FILE

LOCK_FILE = "gateway.lock"


class AlreadyRunning(Exception):
    """Another gateway holds the data folder; the message names it."""

    def __init__(self, data_dir: Path, note: dict[str, Any]) -> None:
        self.data_dir, self.note = data_dir, note
        pid = note.get("pid")
        who = f"pid {pid}" if pid else "its pid is not known yet: it is starting"
        url = page_url(data_dir)
        page = f", page at {url}/" if url else ""
        since = f", running since {note['started_at'][:19].replace('T', ' ')} UTC" if note.get("started_at") else ""
        super().__init__(
            f"a gateway is already running with data folder {data_dir} ({who}{page}{since}).\n"
            "Nothing was changed: it keeps running. To restart it, stop it first (`gateway shutdown`, or "
            "Ctrl-C in its window); to run a second gateway, give it another --data-dir.")


def page_url(data_dir: Path) -> str | None:
    try:
        return (data_dir / URL_FILE).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Unclean:
    """The last gateway on this folder did not stop: what its note said."""

    pid: int | None
    started_at: str | None

    def describe(self) -> str:
        since = f", started {self.started_at[:19].replace('T', ' ')} UTC" if self.started_at else ""
        return f"recovered after an unclean stop: the last gateway (pid {self.pid}{since}) was killed or lost power"


class InstanceLock:
    """`acquire()` or AlreadyRunning; `release(clean)` when the daemon is done."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None
        self.unclean: Unclean | None = None
        self.previous: dict[str, Any] = {}

    def acquire(self) -> InstanceLock:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children (PEP 446)
        if not current().try_lock(fd):
            theirs = _read(fd)
            os.close(fd)
            raise AlreadyRunning(self.data_dir, theirs)
        self.fd = fd
        (self.data_dir / URL_FILE).unlink(missing_ok=True)  # a dead gateway's address: nobody answers there
        previous = self.previous = _read(fd)
        if previous.get("state") == "running":
            self.unclean = Unclean(previous.get("pid"), previous.get("started_at"))
        note: dict[str, Any] = {"pid": os.getpid(), "started_at": datetime.now(UTC).isoformat(),
                                "state": "running"}
        if self.unclean is not None:
            note["recovered_from"] = {"pid": self.unclean.pid, "started_at": self.unclean.started_at}
        self._write(note)
        return self

    def release(self, ran: bool) -> None:
        """Drop the lock, the note saying "stopped". When the daemon never `ran` (a taken port,
        say) after an unclean stop, the old note is put back: the next start still reports it."""
        if self.fd is None:
            return
        if ran or self.unclean is None:
            note = _read(self.fd)
            note["state"] = "stopped"
            note["stopped_at"] = datetime.now(UTC).isoformat()
            self._write(note)
        else:
            self._write(self.previous)
        os.close(self.fd)  # closing the last descriptor drops the OS lock
        self.fd = None

    def _write(self, note: dict[str, Any]) -> None:
        assert self.fd is not None
        data = (json.dumps(note) + "\n").encode()
        os.ftruncate(self.fd, 0)
        if hasattr(os, "pwrite"):
            os.pwrite(self.fd, data, 0)
        else:
            _write_at_start(self.fd, data)
        os.fsync(self.fd)  # a power cut right after must still find "running" (or "stopped")


def _write_at_start(fd: int, data: bytes) -> None:  # Windows has no pwrite
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def _read(fd: int) -> dict[str, Any]:
    """The holder's note; {} when empty or unreadable (a note cut short by a power cut)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        note = json.loads(raw.decode()) if raw.strip() else {}
        return note if isinstance(note, dict) else {}
    except (OSError, ValueError):
        return {}


def recovered_from(data_dir: Path) -> Unclean | None:
    """For the running daemon: did this start follow an unclean stop? (from the held note)"""
    try:
        note = json.loads((data_dir / LOCK_FILE).read_text())
        was = note.get("recovered_from") if isinstance(note, dict) and note.get("pid") == os.getpid() else None
    except (OSError, ValueError):
        return None
    return Unclean(was.get("pid"), was.get("started_at")) if isinstance(was, dict) else None


def record_recovery(rt: Any, data_dir: Path) -> None:
    """In the daemon, once the runtime records events: say that this start recovered."""
    was = recovered_from(data_dir)
    if was is not None:
        rt.event(EventKind.GATEWAY_RECOVERED, None, was.describe(), detail={"pid": was.pid, "started_at": was.started_at})


# Why a bind was refused, in words: POSIX errno and Winsock's numbers (Windows' strerror for
# these is a sentence about "socket addresses", and Wine's is "windows error 0x2740").
_IN_USE = {errno.EADDRINUSE, 10048}  # WSAEADDRINUSE
_NOT_ALLOWED = {errno.EACCES, 10013}  # WSAEACCES
_NOT_HERE = {errno.EADDRNOTAVAIL, 10049}  # WSAEADDRNOTAVAIL


def bind_refusal(exc: OSError) -> str:
    code = getattr(exc, "winerror", None) or exc.errno
    if code in _IN_USE:
        return "another program is listening there"
    if code in _NOT_ALLOWED:
        return ("the system does not allow it (on Windows, a port Hyper-V or WSL keeps for itself; "
                "elsewhere, a port below 1024)")
    if code in _NOT_HERE:
        return "that address is not one of this computer's"
    return (exc.strerror or str(exc)).lower()


def listen_problem(host: str, port: int) -> str | None:
    """Why the page cannot listen on host:port, in words (None: it can). Binds like the daemon."""
    import socket

    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if current().reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError as exc:
            reason = bind_refusal(exc)
    from reconciler.engine.health import port_holder

    holder = port_holder(port)
    who = f"another program (pid {holder[0]}, {holder[1]}) is listening there" if holder else reason
    return (f"cannot serve the page on {host}:{port}: {who}. Stop that program, or choose another address "
            "with --listen HOST:PORT (or [web] listen in gateway.toml).")


def holder(data_dir: Path) -> dict[str, Any] | None:
    """The note of the gateway holding `data_dir` (pid, started_at), or None when none does.
    Only looks: a free lock is let go at once and the note is left as it was."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        return None if current().try_lock(fd) else _read(fd)
    finally:
        os.close(fd)


def wait_stopped(data_dir: Path, timeout: float) -> bool:
    """Wait until the gateway holding `data_dir` has exited (its process, not only its lock, which
    goes a moment before the process ends); False after `timeout` seconds."""
    import time

    import psutil

    note = holder(data_dir)
    deadline = time.monotonic() + timeout
    if note is not None and isinstance(note.get("pid"), int):
        try:
            psutil.Process(note["pid"]).wait(timeout)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            return False
    while holder(data_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
