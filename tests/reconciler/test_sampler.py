"""TreeMeter on real processes: CPU % of a whole tree from CPU-time deltas, RSS summed
over the tree (a grandchild included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reconciler.sampler import TreeMeter

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
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
    proc.stdout.close()


def test_tree_cpu_and_memory(busy_tree):
    root, grandchild = busy_tree
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        meter = TreeMeter()
        time.sleep(0.5)  # the grandchild has touched its 64 MB
        first = meter.measure({"busy": root, "idle": idle.pid})
        assert first["busy"]["cpu_percent"] == 0.0  # no previous sample: no delta yet
        time.sleep(1.0)
        second = meter.measure({"busy": root, "idle": idle.pid})
        assert second["busy"]["cpu_percent"] > 30, second  # a spinning process: most of a core
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
