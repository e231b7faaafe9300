"""Small file helpers every part shares: an atomic write, a secret file only its owner can
read, and where a server's log lives. One place each, so a fix (fsync, a Windows ACL, a
rotation rule) lands everywhere at once."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from reconciler.platform import current

LOGS = "logs"


def atomic_write(path: Path, text: str, *, mode: int | None = None, keep_previous: bool = False) -> None:
    """Write `text` so that a reader sees the old file or the new one, never half of it: a
    temp file beside it (a dot file: the folder watcher ignores it), fsync, rename. `mode`:
    the new file's permissions from the start (0o600 for a secret); `keep_previous`: the
    old file is kept as NAME.prev."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)  # the umask may have taken bits away
        if keep_previous and path.exists():
            replace(path, path.with_name(path.name + ".prev"))
        replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


HELD_OPEN_FOR = 2.0  # seconds a rename waits for another program to close the file (Windows)


def replace(src: Path, dst: Path) -> None:
    """`os.replace`, which on Windows is refused while another program reads `dst` (cloudflared
    reading its config.yml, an editor, a virus scan): tried again for up to HELD_OPEN_FOR
    seconds (node's graceful-fs does the same on Windows), then the error is raised."""
    give_up = time.monotonic() + HELD_OPEN_FOR
    while True:
        try:
            os.replace(src, dst)
            return
        except OSError as exc:
            if not current().held_open(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.02)


def write_secret(path: Path, text: str) -> None:
    """A file only its owner can read (0600 on POSIX), written atomically."""
    atomic_write(path, text, mode=0o600)


def read_or_create_secret(path: Path, make: int = 32) -> str:
    """The secret kept in `path` (made, `make` random bytes as text, on first use)."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(make)
    write_secret(path, value + "\n")
    return value


def server_log(data_dir: Path, name: str) -> Path:
    """The log file of server `name` (its stdout and stderr, and the gateway's markers)."""
    return Path(data_dir) / LOGS / f"{name}.log"


class NotRegularFile(OSError):
    """A path that is a named pipe, a socket, a device or a folder: never opened for reading
    (a pipe with no writer would block the reader for good)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path}: not a regular file ({kind})")
        self.path, self.kind = path, kind


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is, in words."""
    import stat

    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file (a link is followed); raises NotRegularFile for anything
    else without opening it, and OSError as reading does. Portable: stat's S_ISREG, then an
    open that cannot block (O_NONBLOCK where the system has it) checked again with fstat, so a
    file swapped for a pipe between the two looks is refused too."""
    kind = file_kind(os.stat(path).st_mode)
    if kind is not None:
        raise NotRegularFile(path, kind)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotRegularFile(path, kind)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def read_regular_text(path: Path, encoding: str = "utf-8") -> str:
    return read_regular(path).decode(encoding)
