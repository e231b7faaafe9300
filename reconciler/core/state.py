"""Plain frozen data the planner reads: the phase state machine, one server's observed
state, and the two inputs of `plan` (`Desired`, `Observed`).

No I/O happens here. Times are `time.monotonic()` seconds, passed in by the caller.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping

from reconciler.core.facts import CheckFact, ExitFact, HeldPort
from reconciler.core.reasons import Reason
from reconciler.core.spec import ServerSpec


class Phase(StrEnum):
    STOPPED = "stopped"  # not running, and not meant to be right now
    STARTING = "starting"  # spawned; the first health check has not passed yet
    RUNNING = "running"  # spawned and healthy
    STOPPING = "stopping"  # a stop signal was sent; waiting for the whole tree to go
    EXITED = "exited"  # the process ended; the planner decides what comes next
    BACKOFF = "backoff"  # waiting until `next_try_at` to start again
    ERROR = "error"  # could not start (spawn failed, port held); retried with backoff


P = Phase
# Which transitions exist. Every one of them is recorded as an event row.
ALLOWED: Mapping[Phase, frozenset[Phase]] = {
    P.STOPPED: frozenset({P.STARTING, P.ERROR, P.RUNNING}),  # RUNNING: adopted after a gateway restart
    P.STARTING: frozenset({P.RUNNING, P.STOPPING, P.EXITED}),
    P.RUNNING: frozenset({P.STOPPING, P.EXITED}),
    P.STOPPING: frozenset({P.STOPPED, P.EXITED}),
    P.EXITED: frozenset({P.STARTING, P.BACKOFF, P.STOPPED, P.ERROR}),
    P.BACKOFF: frozenset({P.STARTING, P.STOPPED, P.ERROR}),
    P.ERROR: frozenset({P.STARTING, P.STOPPED, P.ERROR, P.BACKOFF}),
}
ALIVE = frozenset({P.STARTING, P.RUNNING, P.STOPPING})


class IllegalTransition(Exception):
    def __init__(self, name: str, source: Phase, target: Phase) -> None:
        super().__init__(f"{name}: {source} -> {target} is not a transition the state machine allows")


@dataclass(frozen=True)
class ServerState:
    """What the gateway knows about one server's process right now."""

    name: str
    phase: Phase = Phase.STOPPED
    reason: str = ""  # why it is in this phase, in words (for people: never decided on)
    cause: Reason | None = None  # why it is in this phase, typed (what the planner reads)
    pid: int | None = None
    create_time: float | None = None  # psutil create time, to tell a reused pid apart
    start_mark: str | None = None  # the same, unmoved by a setting of the clock (Platform.start_mark)
    port: int | None = None
    spec_hash: str | None = None  # ServerSpec.runtime_hash() of the running process
    started_at: float | None = None
    healthy_since: float | None = None
    health_failures: int = 0  # consecutive failed checks
    health_error: str | None = None
    last_latency_ms: float | None = None
    exited_at: float | None = None
    last_exit: str | None = None  # "exited with code 1" (for the log and the CLI; the page reads `ended`)
    exit_ok: bool = False  # the last exit was a clean one (code 0)
    ended: ExitFact | None = None  # how the last run ended and who ended it
    held: HeldPort | None = None  # the last start failed: another program holds the port
    start_error: str | None = None  # the last start failed: what the OS said (no port held)
    # running but not answering: the failing check, kept through the restarts it causes until a
    # check passes (the card, the alerts and the uptime read it)
    not_answering: CheckFact | None = None
    last_check: CheckFact | None = None  # the latest failed check of this run (cleared when one passes)
    failures: int = 0  # consecutive failed runs, reset after a stable one
    restarts: int = 0
    next_try_at: float | None = None
    after_stop: Phase = Phase.STOPPED  # what a completed stop leads to (EXITED when it was a failure)
    restart_requested: bool = False  # an operator asked for a restart
    restart_by_owner: bool = True  # ... the owner did (else the gateway itself: after a resume)
    replacing: bool = False  # a new version starts on another port next to this one (no gap)
    kill_requested: bool = False  # an operator asked for a force kill (no graceful signal, no wait)

    def advance(self, target: Phase, reason: str, **changes: object) -> ServerState:
        """The one transition function: checks `ALLOWED`, returns the new state."""
        if target not in ALLOWED[self.phase] and not (target == self.phase and target == P.ERROR):
            raise IllegalTransition(self.name, self.phase, target)
        return dataclasses.replace(self, phase=target, reason=reason, **changes)  # type: ignore[arg-type]

    def update(self, **changes: object) -> ServerState:
        """Change fields without changing the phase (no event)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Desired:
    specs: Mapping[str, ServerSpec]
    stopped_by_operator: frozenset[str] = frozenset()
    port_range: tuple[int, int] = (20000, 29999)
    # what PostgreSQL remembers: the version of each server that last ran well (through its
    # probation), and the runtime hash of a changed version that failed and was rolled back
    # (not tried again until the file changes or the owner asks)
    last_good: Mapping[str, ServerSpec] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)
    # the version of each server that last passed its first check (ran and answered), a
    # rollback target even while it is still on its own probation
    answered: Mapping[str, ServerSpec] = field(default_factory=dict)
    # the last loaded version of every server, also of one whose file is gone: its stop
    # settings are the ones it is stopped with
    last_known: Mapping[str, ServerSpec] = field(default_factory=dict)
    # the host's internet check fails: a server whose check `needs_internet` (the tunnel
    # connector) that exits now waits for the internet instead of counting a failure
    offline: bool = False


@dataclass(frozen=True)
class Observed:
    servers: Mapping[str, ServerState]
    ports: Mapping[str, int] = field(default_factory=dict)  # sticky auto ports
    busy_ports: frozenset[int] = frozenset()  # held by something that is not ours
