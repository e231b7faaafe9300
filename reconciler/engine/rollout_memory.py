"""What the gateway remembers of each server's versions, live (table `rollouts`; the rules that
read it are in reconciler/core/rollout.py): the last good version, the version that last answered,
and a failed change with why. Owned by the runtime, written by the actuators (`act.py`,
`replace.py`) and the loop (a file saved again), read by the planner (`Desired`) and the page;
every change is also put to PostgreSQL, and `remembered.restore` fills it at start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.core.spec import ServerSpec


class RolloutMemory:
    def __init__(self, put: Callable[[dict[str, Any]], None]) -> None:
        self.put = put  # Sink.put: never blocks
        self.last_good: dict[str, ServerSpec] = {}  # passed its first check and its probation
        self.answered: dict[str, ServerSpec] = {}  # passed its first check (a rollback target)
        self.failed: dict[str, str] = {}  # a change rolled back: its runtime hash, not tried again by itself
        self.failed_why: dict[str, str] = {}
        self.failed_facts: dict[str, dict[str, Any]] = {}  # why it failed, typed (rollout.failure_facts)

    def remember_good(self, name: str, spec: ServerSpec) -> None:
        """The running version passed its probation: the last good one."""
        self.last_good[name] = spec
        self.put({"op": "good", "name": name, "spec": spec.model_dump(mode="json"), "hash": spec.runtime_hash()})

    def remember_answered(self, name: str, spec: ServerSpec) -> None:
        """This version ran and answered: what a failed change goes back to, even on probation."""
        self.answered[name] = spec
        self.put({"op": "answered", "name": name, "spec": spec.model_dump(mode="json"), "hash": spec.runtime_hash()})

    def remember_failed(self, name: str, failed_hash: str, why: str, facts: dict[str, Any]) -> None:
        """A change that failed before its probation was over: not tried again by itself."""
        self.failed[name] = failed_hash
        self.failed_why[name] = why
        self.failed_facts[name] = facts
        self.put({"op": "rollout_failed", "name": name, "hash": failed_hash, "why": why, "facts": facts})

    def clear_failed(self, name: str) -> bool:
        """Forget the change that was rolled back (the owner retries it, or saved another version)."""
        if self.failed.pop(name, None) is None:
            return False
        self.failed_why.pop(name, None)
        self.failed_facts.pop(name, None)
        self.put({"op": "rollout_clear", "name": name})
        return True

    def forget(self, name: str) -> None:
        """The server's file is gone: nothing is remembered of it any more."""
        remembered = [memory.pop(name, None) for memory in (self.last_good, self.failed, self.answered)]
        if any(m is not None for m in remembered):
            self.failed_why.pop(name, None)
            self.failed_facts.pop(name, None)
            self.put({"op": "rollout_forget", "name": name})
