"""Linux: a process's start as the kernel keeps it, which no change of the wall clock moves.

/proc/PID/stat's field 22 is the start in clock ticks since boot; with the boot's id it names
one run of one pid for good. psutil's create time is those ticks plus /proc/stat's btime, and
btime is the wall clock minus the uptime, worked out again on each read: set the clock (NTP, a
laptop's wake-up, a VM restored) and every create time moves with it."""

from __future__ import annotations

import functools
from pathlib import Path

PROC = Path("/proc")


@functools.cache
def boot_id() -> str:
    return (PROC / "sys/kernel/random/boot_id").read_text().strip()


def start_ticks(pid: int) -> int | None:
    """Clock ticks from boot to the start of `pid`; None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # the name in parentheses may hold spaces
    return int(fields[19])  # field 22 of the whole line: after pid, name and 19 others


def start_mark(pid: int) -> str | None:
    ticks = start_ticks(pid)
    return None if ticks is None else f"{boot_id()}:{ticks}"
