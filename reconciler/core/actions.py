"""What the planner asks for. Each action is frozen and carries its `Reason`, which
becomes the `why` of the event row the action produces. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from reconciler.core.reasons import Reason
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Phase


@dataclass(frozen=True)
class Start:
    name: str
    spec: ServerSpec
    port: int | None
    reason: Reason
    detail: str = ""
    failures: int | None = None  # new consecutive-failure count, when the start follows an exit
    escalate: bool = False


@dataclass(frozen=True)
class Stop:
    name: str
    reason: Reason
    signal: str
    timeout: float
    then: Phase = Phase.STOPPED  # EXITED when the stop is a failure (unhealthy) so backoff applies
    detail: str = ""
    failures: int | None = None  # the failure count once it has stopped (a stable run clears it)


@dataclass(frozen=True)
class Kill:
    """A graceful stop is under way and the owner asked to force it: kill the whole process
    tree now. The stop in progress then ends as it does when the tree is gone."""

    name: str
    reason: Reason = Reason.OPERATOR_KILL


@dataclass(frozen=True)
class Mark:
    """A pure bookkeeping transition: no process is touched."""

    name: str
    to: Phase
    reason: Reason
    detail: str = ""
    next_try_at: float | None = None
    failures: int | None = None
    escalate: bool = False  # this failure reached `restart.alert_after`: record "escalated"


@dataclass(frozen=True)
class Forget:
    """The server's file is gone and its process is stopped: drop what is kept about it."""

    name: str
    reason: Reason = Reason.DELETE


@dataclass(frozen=True)
class Promote:
    """The running version has passed its probation: it is the server's last good one now."""

    name: str
    spec: ServerSpec
    reason: Reason = Reason.PROMOTED
    changed: bool = False  # it replaced an earlier good version (a change that is now in force)


@dataclass(frozen=True)
class Answered:
    """The running version passed its first check: a rollback target from now on, also while
    it is still on its own probation (remembered in PostgreSQL)."""

    name: str
    spec: ServerSpec
    reason: Reason = Reason.HEALTHY


@dataclass(frozen=True)
class RollBack:
    """A changed version failed before its probation was over: remember its runtime hash
    (never tried again by itself) and why; a Start of the previous version follows.
    `facts`: why, typed (reconciler/core/facts.py: cause, exit, check, held, start_error)."""

    name: str
    failed_hash: str
    detail: str
    reason: Reason = Reason.ROLLBACK
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Replace:
    """A change without a gap: start `spec` on the free `port` next to the running version;
    once it answers, it takes over (port, route) and the old one stops gracefully. If it does
    not answer within its start period, it is stopped and the change counts as failed; the
    running version never stopped."""

    name: str
    spec: ServerSpec
    port: int
    reason: Reason = Reason.CHANGE


Action = Start | Stop | Kill | Mark | Forget | Promote | Answered | RollBack | Replace
__all__ = ["Action", "Answered", "Forget", "Kill", "Mark", "Promote", "Reason", "Replace", "RollBack", "Start", "Stop"]
