"""TreeMeter on real processes: CPU % of a whole tree from CPU-time deltas, RSS summed
over the tree (a grandchild included)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from reconciler.core.reasons import Reason
from reconciler.core.state import Phase
from reconciler.engine.runtime import Runtime
from reconciler.host import sampler
from reconciler.host.sampler import TreeMeter
from reconciler.platform import current
from tests.wine import wine_gap

# a parent that starts a grandchild holding 64 MB, then spins on the CPU
BUSY_TREE = (
    "import subprocess, sys, time\n"
    "kid = subprocess.Popen([sys.executable, '-c', 'import time; b = bytearray(64 << 20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(60)'])\n"
    "print(kid.pid, flush=True)\n"
    "end = time.monotonic() + 60\n"
    "while time.monotonic() < end: pass\n"
)


@pytest.fixture
def busy_tree():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_TREE], stdout=subprocess.PIPE, text=True)
    grandchild = int(proc.stdout.readline())
    yield proc.pid, grandchild
    for pid in (grandchild, proc.pid):
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(10)
    proc.stdout.close()


@pytest.mark.alone  # a spinning process's share of a core
@wine_gap("GetProcessTimes of another process does not advance: a process spinning a core reads ~0 s of CPU")
def test_tree_cpu_and_memory(busy_tree):
    root, grandchild = busy_tree
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        meter = TreeMeter()
        time.sleep(0.5)  # the grandchild has touched its 64 MB
        spinner = psutil.Process(root)  # the parent spins; the grandchild holds the memory
        first = meter.measure({"busy": root, "idle": idle.pid})
        spun, t0 = sum(spinner.cpu_times()[:2]), time.monotonic()
        assert first["busy"]["cpu_percent"] == 0.0  # no previous sample: no delta yet
        time.sleep(1.0)
        second = meter.measure({"busy": root, "idle": idle.pid})
        # the spinning process's own share of a core over the same second (on a loaded
        # machine it gets less than a whole core): the tree's figure is that, within 25 %
        share = (sum(spinner.cpu_times()[:2]) - spun) / (time.monotonic() - t0) * 100
        assert share > 1, share
        assert 0.75 * share < second["busy"]["cpu_percent"] < 1.25 * share + 5, (second, share)
        assert second["idle"]["cpu_percent"] < 5, second
        assert second["busy"]["rss_bytes"] > 64 << 20, second  # the grandchild's memory counts
        assert second["idle"]["rss_bytes"] < 64 << 20, second
        assert set(meter.procs) == {root, grandchild, idle.pid}
    finally:
        idle.kill()
        idle.wait(10)


def test_a_gone_root_is_left_out():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    meter = TreeMeter()
    assert meter.measure({"gone": proc.pid}) == {"gone": {"cpu_percent": 0.0, "rss_bytes": 0}}
    assert meter.procs == {}


async def test_figures_come_once_while_nobody_looks_and_every_round_while_someone_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A down server puts a failed-check row every round (availability keeps its weight);
    the host's and the trees' figures come once while nobody looks (the quiet rate is an
    hour here), every round while someone does, and at once when a look begins."""
    monkeypatch.setattr(sampler, "UNWATCHED_EVERY", 3600.0)
    ops: list[dict[str, Any]] = []
    rt = Runtime(tmp_path, tmp_path, ops.append)
    rt.set_phase("web", Phase.STARTING, Reason.CREATE)
    rt.set_phase("web", Phase.EXITED, Reason.CRASH)  # down: it should be up
    every = [0.05]
    attention = sampler.Attention()
    task = asyncio.create_task(sampler.sample_forever(rt, tmp_path, lambda: (every[0], "off"), sampler.Figures(),
                                                      attention))

    def count(kind: str) -> int:
        if kind == "health":  # checks counted: in the minutes written and the one under way (reconciler/engine/checklog.py)
            return sum(op["checks"] for op in ops if op["op"] == "health_minute") + sum(
                m.checks for m in rt.checks.open.values())
        return sum(op["op"] == kind for op in ops)

    try:
        await until(lambda: count("health") >= 8)
        assert count("host") == 1  # the first round only
        assert [op["ok"] for op in ops if op["op"] == "health"] == [False]  # one row: the change
        assert sum(m.failures for m in rt.checks.open.values()) + sum(
            op["failures"] for op in ops if op["op"] == "health_minute") == count("health")
        attention.looked()
        rounds = count("health")
        await until(lambda: count("health") >= rounds + 5)
        assert count("host") >= 5  # every round while someone looks
        every[0] = 3600.0
        attention.looked_at = -sampler.LOOKING_FOR  # nobody looked for a while
        rounds = count("health")
        await until(lambda: count("health") > rounds)  # a round read the hour: then it waits
        await asyncio.sleep(0.3)
        rounds, hosts = count("health"), count("host")
        await asyncio.sleep(0.3)
        assert count("health") == rounds  # waiting for its hour
        attention.looked()  # wakes the sampler, an hour before its next round
        await until(lambda: count("host") > hosts and count("health") > rounds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task



async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.skipif(current().process_stats() is None, reason="Linux's /proc/PID/stat")
def test_one_read_of_proc_stat_says_what_psutil_says(busy_tree):
    """The Linux path (one read of /proc/PID/stat per process, issue 27) gives psutil's parent,
    CPU seconds and RSS; a pid with another start is not the process measured before."""
    root, grandchild = busy_tree
    time.sleep(0.3)
    for pid in (root, grandchild):
        proc = psutil.Process(pid)
        with proc.oneshot():
            ppid, cpu, rss = proc.ppid(), sum(proc.cpu_times()[:2]), proc.memory_info().rss
        stats = current().process_stats()
        assert stats is not None
        stat = stats.stat(pid)
        assert stat is not None
        assert stat[0] == ppid
        assert cpu - 0.05 <= stat[2] <= cpu + 0.5  # it spins on between the two reads
        assert abs(stat[3] - rss) < 4 << 20, (stat, rss)
    meter = TreeMeter()
    meter.measure({"busy": root})
    start, seconds, when = meter.procs[root]
    meter.procs[root] = (start + 1, 0.0, when - 1.0)  # as if the pid were now another process's
    assert meter.measure({"busy": root})["busy"]["cpu_percent"] == 0.0


def test_the_psutil_path_measures_trees_too(busy_tree, monkeypatch: pytest.MonkeyPatch):
    """Where there is no /proc (macOS, Windows) psutil measures: the same trees."""
    root, grandchild = busy_tree
    time.sleep(0.3)
    meter = TreeMeter()
    meter.stats = None  # as on macOS and Windows
    first = meter.measure({"busy": root})
    time.sleep(0.3)
    second = meter.measure({"busy": root})
    assert first["busy"]["cpu_percent"] == 0.0 and second["busy"]["cpu_percent"] > 0, second
    assert second["busy"]["rss_bytes"] > 64 << 20, second
    assert set(meter.procs) == {root, grandchild}
