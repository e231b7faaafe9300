"""Small file helpers every part shares: an atomic write, a secret file only its owner can
read, and where a server's log lives. One place each, so a fix (fsync, a Windows ACL, a
rotation rule) lands everywhere at once."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
            os.replace(path, path.with_name(path.name + ".prev"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
