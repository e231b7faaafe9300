"""The machine at a glance (CPU, memory, disk, battery) and each server's CPU and memory,
sampled with psutil at most every `every` seconds, in a thread (psutil blocks)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class HostProbe:
    disk_path: Path
    every: float = 2.0
    host: dict[str, Any] = field(default_factory=dict)
    usage: dict[int, tuple[float, int]] = field(default_factory=dict)  # pid -> (cpu %, rss bytes)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self, pids: list[int]) -> None:
        if time.monotonic() - self._at < self.every:
            return
        async with self._lock:
            if time.monotonic() - self._at < self.every:
                return
            self.host, self.usage = await asyncio.to_thread(self._sample, pids)
            self._at = time.monotonic()

    def _sample(self, pids: list[int]) -> tuple[dict[str, Any], dict[int, tuple[float, int]]]:
        usage: dict[int, tuple[float, int]] = {}
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    procs = [proc, *proc.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in procs)
                    usage[pid] = (proc.cpu_percent(None), rss)  # first call of a new pid says 0.0
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self._procs.pop(pid, None)
        for gone in set(self._procs) - set(pids):
            del self._procs[gone]
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.disk_path))
        battery = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
        host = {
            "cpu_percent": psutil.cpu_percent(None),
            "memory_percent": mem.percent,
            "memory_total_mb": mem.total // 2**20,
            "disk_percent": disk.percent,
            "disk_free_gb": round(disk.free / 2**30, 1),
            "battery_percent": round(battery.percent) if battery else None,
            "on_ac": battery.power_plugged if battery else None,
        }
        return host, usage
