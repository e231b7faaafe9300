"""Figures over time: each server's process-tree CPU and memory, the host's CPU, memory,
disk, battery and internet reachability, every few seconds; and the hourly rollup that
keeps a year of history small. Samples go through the sink like events (never blocking
the loop); the latest figures stay in memory for `status` and the page (`Figures`, the
sampler's own, built by the daemon and handed to the page), read at full rate while someone
looks (`Attention`, which the page tells). Whether the internet answers is also the engine's
(`Runtime.internet_ok`: a plan holds a server that needs it, checks are not counted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from reconciler.core.state import Phase
from reconciler.platform import ProcessStat, current
from reconciler.platform.aio import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from reconciler.engine.runtime import Runtime
    from reconciler.store import Store

log = logging.getLogger("gateway")
ROLLUP_EVERY = 60.0  # seconds
UNWATCHED_EVERY = 60.0  # seconds between figures while nobody looks (else the host's sample_every)
RESCAN_NEVER = 1e9
DOWN = frozenset({Phase.BACKOFF, Phase.ERROR, Phase.EXITED})
LOOKING_FOR = 30.0  # seconds after a request (or a live page's last update) during which someone looks


class Attention:
    """Who looks: the page says so (`looked`: a signed-in request to the page or the API, or an
    open live page every few seconds, webview/stream.py); the sampler reads its figures at full
    rate for the next LOOKING_FOR seconds, and at once if nobody looked (`began`)."""

    def __init__(self) -> None:
        self.looked_at = -LOOKING_FOR  # monotonic: the last look
        self.began = asyncio.Event()  # set when someone looks after nobody did (the sampler waits on it)

    def looked(self) -> None:
        now = time.monotonic()
        if not self.looking(now):
            self.began.set()
        self.looked_at = now

    def looking(self, now: float) -> bool:
        return now - self.looked_at < LOOKING_FOR


@dataclass
class Figures:
    """The sampler's latest figures, as the page, `status` and the disk alert read them."""

    resources: dict[str, dict[str, float | int]] = field(default_factory=dict)  # CPU/RSS per server tree
    host: dict[str, Any] = field(default_factory=dict)  # the host's, with `internet_ok`
    # availability (reconciler/store/availability.py, by `rollup_forever`): % over 24h, 7d, 30d
    # and the month, dark hours counted
    uptime: dict[str, dict[str, Any]] = field(default_factory=dict)


class TreeMeter:
    """CPU % (of one core) and RSS of whole process trees. CPU % is the delta of each
    process's CPU time since the previous sample (like psutil's cpu_percent, without its
    look at the number of CPUs on every call), so each process is kept with its last figure.
    On Linux each process is one read of /proc/PID/stat (parent, start, CPU times and RSS),
    and the scan of the process table is that same read: psutil read two files per process
    of a tree and made an object per process of the machine, most of the sampler's CPU at rest."""

    RESCAN_EVERY = 60.0  # seconds between full scans of the process table when no root changed

    def __init__(self) -> None:
        # pid -> (who it is: its Process, or its start on Linux; its CPU seconds and when, at the last sample)
        self.procs: dict[int, tuple[Any, float, float]] = {}
        self.kids: dict[int, list[int]] = {}
        self.scanned_at = -RESCAN_NEVER
        self.stats = current().process_stats()  # Linux: /proc/PID/stat; elsewhere psutil

    def measure(self, roots: dict[str, int]) -> dict[str, dict[str, float | int]]:
        if not roots:
            self.procs = {}
            return {}
        # One pass over the process table for every tree (psutil's children() would scan it
        # once per server), and only now and then: reading /proc/*/stat for every process on
        # the machine is most of a sample's cost. A new or restarted server triggers a scan.
        now = time.monotonic()
        scan = now - self.scanned_at > self.RESCAN_EVERY or any(pid not in self.procs for pid in roots.values())
        table: dict[int, ProcessStat] | None = None
        if scan:
            if self.stats is not None:  # Linux: the whole table at one read per process
                table = self.stats.table()
                parents = [(pid, row[0]) for pid, row in table.items()]
            else:
                parents = [(proc.pid, proc.info["ppid"]) for proc in psutil.process_iter(["ppid"])]
            self.kids = {}
            for pid, ppid in parents:
                self.kids.setdefault(ppid, []).append(pid)
            self.scanned_at = now
        kids = self.kids
        seen: dict[int, tuple[Any, float, float]] = {}
        out: dict[str, dict[str, float | int]] = {}
        for name, root in roots.items():
            cpu, rss, todo = 0.0, 0, [root]
            while todo:
                pid = todo.pop()
                todo.extend(kids.get(pid, ()))
                before = self.procs.get(pid)
                got = self._read(pid, before, table)
                if got is None:
                    continue
                who, seconds, resident, when = got
                rss += resident
                seen[pid] = (who, seconds, when)
                if before is not None and before[0] == who and when > before[2]:  # the same process
                    cpu += max(0.0, seconds - before[1]) / (when - before[2]) * 100
            out[name] = {"cpu_percent": round(cpu, 2), "rss_bytes": rss}
        self.procs = seen
        return out

    def _read(self, pid: int, before: tuple[Any, float, float] | None,
              table: dict[int, ProcessStat] | None) -> tuple[Any, float, int, float] | None:
        """(who it is, CPU seconds, RSS bytes, when read) of one process, None when it is gone.
        Who it is: its start on Linux (a reused pid has another), else its psutil Process
        (equal only to the same process)."""
        if self.stats is not None:
            stat = table.get(pid) if table is not None else self.stats.stat(pid)
            return None if stat is None else (stat[1], stat[2], stat[3], stat[4])
        try:
            proc = before[0] if before else psutil.Process(pid)
            times = proc.cpu_times()
            return proc, times.user + times.system, proc.memory_info().rss, time.monotonic()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None


def host_figures(data_dir: Path) -> dict[str, Any]:
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(str(data_dir))
    figures: dict[str, Any] = {
        "cpu_percent": psutil.cpu_percent(None),
        "mem_percent": mem.percent,
        "disk_percent": disk.percent,
        "disk_free_bytes": disk.free,
        "battery_percent": None,
        "on_ac": None,
    }
    try:
        battery = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError):  # no battery API here
        battery = None
    if battery is not None:
        figures["battery_percent"] = round(battery.percent, 1)
        figures["on_ac"] = bool(battery.power_plugged) if battery.power_plugged is not None else None
    return figures


async def internet_reachable(target: str, timeout: float = 2.0) -> bool | None:
    """A TCP connect to `target` (host:port); None when the check is off."""
    if target == "off":
        return None
    host, _, port = target.rpartition(":")
    try:
        _, writer = await wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def sample_forever(rt: Runtime, data_dir: Path, settings: Any, figures: Figures, attention: Attention) -> None:
    """`settings()` -> (every seconds, internet target), read each round so edits apply; the
    latest figures go to `figures`, whether the internet answers also to `rt.internet_ok`.

    Every round: the internet check, and a failed-check row for each server that is down.
    The figures (each process tree's CPU and memory, the host's) are read every round while
    someone looks at the page or the API (`attention`), else once every UNWATCHED_EVERY:
    reading /proc for 100 trees every 10 s was a third of the gateway's idle CPU, for charts
    that nobody sees at that grain. A look after a quiet spell samples at once."""
    meter = TreeMeter()
    measured_at = -UNWATCHED_EVERY
    while True:
        every, target = settings()
        now = time.monotonic()
        measure = attention.looking(now) or now - measured_at >= max(every, UNWATCHED_EVERY) - every / 2
        try:
            internet_ok = await internet_reachable(target)
            if measure:
                roots = {name: child.pid for name, child in rt.children.items()}
                measured = await asyncio.to_thread(meter.measure, roots)
                host = await asyncio.to_thread(host_figures, data_dir)
        except (OSError, psutil.Error) as exc:  # a figure we cannot read is skipped, not fatal
            log.warning("sampling failed: %s", exc)
        else:
            changed = internet_ok != rt.internet_ok
            if measure:
                measured_at = now
                figures.resources = measured
                for name, fig in measured.items():
                    rt.put({"op": "resource", "server": name, **fig})
            figures.host = {**(host if measure else figures.host), "internet_ok": internet_ok}
            rt.internet_ok = internet_ok
            if changed:
                rt.notify()  # a server waiting for the internet starts now (or a plan may hold one)
            for name, state in rt.states.items():
                # down when it should be up: counts against availability (checks only run
                # while a process is up, so without this a crash loop would look 100% up)
                # (and one restarted because it did not answer, until a check passes)
                if state.phase in DOWN or (state.phase is Phase.STARTING and state.not_answering is not None):
                    rt.checks.check(name, False, None, f"{state.phase}: {state.reason}")
                elif state.phase is Phase.RUNNING and unchecked(rt.specs.get(name)):
                    # no check runs (a bot): running is its passed check, or its availability
                    # would be made of its failures alone (0.0 % for a bot that runs fine)
                    rt.checks.check(name, True, None, None)
            if measure or changed:
                rt.put({"op": "host", **figures.host})
        rt.checks.flush()  # the minutes that are over, of servers whose checks stopped (the rest go with their next check)
        attention.began.clear()
        with contextlib.suppress(TimeoutError):  # a look after a quiet spell: figures now
            await wait_for(attention.began.wait(), every)


def unchecked(spec: Any) -> bool:
    """A server whose check never runs while it is up (no check, or "it keeps running")."""
    return spec is not None and spec.effective_health().type in ("none", "running")


async def rollup_forever(figures: Figures, store: Store, every: float = ROLLUP_EVERY,
                         beats: Callable[[], Mapping[str, float]] = dict) -> None:
    """Hourly rollups and retention, and the availability figures `status` and the page show
    (reconciler/store/availability.py; `beats()`: each server's beat in seconds)."""
    await asyncio.sleep(min(every, 5.0))  # a first figure soon after start
    while True:
        try:
            await store.rollup()
            figures.uptime = await store.availability(beats())
        except Exception as exc:  # noqa: BLE001 - the database may be away; the next round retries
            log.debug("rollup skipped: %s", exc)
        await asyncio.sleep(every)
