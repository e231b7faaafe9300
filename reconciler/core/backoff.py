"""Restart backoff: a small pure object that takes numbers, never sleeps.

The first failure after a stable run restarts at once (like PM2); each further failure in
a row waits `start`, then twice that, up to `cap`. A run that stayed healthy for `reset`
seconds clears the count (supervisor's `startsecs`, stretched)."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.spec import RestartSpec


@dataclass(frozen=True)
class Backoff:
    start: float = 1.0
    cap: float = 300.0
    reset: float = 60.0
    factor: float = 2.0

    @classmethod
    def of(cls, restart: RestartSpec) -> Backoff:
        return cls(start=restart.backoff_start, cap=restart.backoff_max, reset=restart.backoff_reset)

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next start after `failures` failed runs in a row."""
        if failures <= 1:
            return 0.0
        return min(self.cap, self.start * self.factor ** (failures - 2))

    def is_stable(self, healthy_since: float | None, ended_at: float) -> bool:
        """The run was healthy for at least `reset` seconds before it ended."""
        return healthy_since is not None and ended_at - healthy_since >= self.reset

    def failures_after_exit(self, previous: int, healthy_since: float | None, ended_at: float) -> int:
        return 1 if self.is_stable(healthy_since, ended_at) else previous + 1
