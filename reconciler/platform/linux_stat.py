"""Linux's process table read the cheap way: one read of /proc/PID/stat per process gives its
parent, its start, its CPU seconds and its RSS (proc(5)). psutil reads two files per process and
makes an object for each; at rest this was most of the sampler's cost (issue 27). Reached only
through `Platform.process_stats()`, which hands it out on Linux alone."""

from __future__ import annotations

import os
import time

from reconciler.platform import ProcessStat as Stat

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def stat(pid: int) -> Stat | None:
    """One process's figures; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    when = time.monotonic()
    try:
        fields = data[data.rindex(b")") + 2:].split()  # the name in brackets may hold spaces and brackets
        return (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / TICKS,
                int(fields[21]) * PAGE, when)
    except (ValueError, IndexError):
        return None


def table() -> dict[int, Stat]:
    """Every process's figures (the whole process table, one read each)."""
    out: dict[int, Stat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := stat(int(entry))) is not None:
            out[int(entry)] = found
    return out
