"""Health history as changes and minutes (issue 27): what a check result becomes in PostgreSQL.

Every check (and every sampling round of a server that is down, or of one with no check) is
counted in its server's open minute: checks, failures, and the min / sum / max of the response
times measured. A minute is written as one `health_minute` op once it is over (the first
result of the next minute, or the sampler's round, whichever comes first) or at a clean stop.
A result is also written as a `health` row (table health_changes) when it differs from the
server's last one: up -> down, down -> up, another error while down, and the first result of
this run. At rest with 100 servers that is 100 rows a minute in one statement instead of 100
rows every 10 s, and the page's figures keep their meaning: availability counts the same
checks (health_hourly is summed from the minutes), the response-time chart draws each minute's
average, broken where a server went down.

No I/O here: ops go to `put` (the sink's, which never blocks)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MINUTE = 60.0  # seconds in a bucket; a test may shorten it (GATEWAY_HEALTH_BUCKET)


@dataclass
class Minute:
    """One server's checks within one bucket (times in seconds since the epoch: a check at rest
    makes no datetime, issue 27)."""

    start: float
    checks: int = 0
    failures: int = 0
    timed: int = 0
    latency_sum: float = 0.0
    latency_min: float | None = None
    latency_max: float | None = None
    last_at: float | None = None

    def add(self, ok: bool, latency_ms: float | None, at: float) -> None:
        self.checks += 1
        self.failures += 0 if ok else 1
        if latency_ms is not None:
            self.timed += 1
            self.latency_sum += latency_ms
            self.latency_min = latency_ms if self.latency_min is None else min(self.latency_min, latency_ms)
            self.latency_max = latency_ms if self.latency_max is None else max(self.latency_max, latency_ms)
        self.last_at = at if self.last_at is None else max(self.last_at, at)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@dataclass
class CheckLog:
    put: Callable[[dict[str, Any]], None]
    bucket: float = MINUTE
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    open: dict[str, Minute] = field(default_factory=dict)  # server -> its minute not yet written
    last: dict[str, tuple[bool, str | None]] = field(default_factory=dict)  # server -> (ok, error) last written

    def start_of(self, seconds: float) -> float:
        return seconds - seconds % self.bucket

    def check(self, server: str, ok: bool, latency_ms: float | None, error: str | None,
              at: datetime | None = None) -> None:
        """Count one result; write the minutes that are over, and a change row when it is one."""
        now = time.time() if at is None else at.timestamp()
        start = self.start_of(now)
        minute = self.open.get(server)
        if minute is not None and minute.start != start:  # (also when the clock was set back)
            self.put(self.op(server, self.open.pop(server)))
            self._flush(start, False)  # the first result of a new minute: every minute that is over goes now, together
            minute = None
        if minute is None:
            minute = self.open[server] = Minute(start)
        minute.add(ok, latency_ms, now)
        key = (ok, None if ok else error)
        if self.last.get(server) != key:
            self.last[server] = key
            self.put({"op": "health", "server": server, "ok": ok, "latency_ms": latency_ms, "error": error,
                      "at": _iso(now) if at is None else at.isoformat()})

    def flush(self, now: datetime | None = None, everything: bool = False) -> int:
        """Write the minutes that are over by `now` (`everything`: the open ones too, at a stop).
        Returns how many were written."""
        return self._flush(self.start_of(time.time() if now is None else now.timestamp()), everything)

    def _flush(self, current: float, everything: bool) -> int:
        done = [name for name, minute in self.open.items() if everything or minute.start < current]
        for name in done:
            self.put(self.op(name, self.open.pop(name)))
        return len(done)

    def op(self, server: str, minute: Minute) -> dict[str, Any]:
        return {"op": "health_minute", "server": server, "minute": _iso(minute.start), "checks": minute.checks,
                "failures": minute.failures, "timed": minute.timed, "latency_min": minute.latency_min,
                "latency_avg": None if not minute.timed else round(minute.latency_sum / minute.timed, 3),
                "latency_max": minute.latency_max,
                "last_at": _iso(minute.start if minute.last_at is None else minute.last_at),
                "run": self.run, "at": _iso(minute.start + self.bucket)}
