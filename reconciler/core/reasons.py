"""Why a server is in its phase: one typed `Reason` per cause.

The planner decides on the `Reason` kept in `ServerState.cause`, never on display text;
the text (the enum's value, plus a detail) is what events and the CLI show. Pure data.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    CREATE = "new server"
    CHANGE = "settings changed"
    DELETE = "file removed"
    DISABLE = "disabled in its file"
    OPERATOR_STOP = "stopped by operator"
    OPERATOR_START = "started by operator"
    OPERATOR_RESTART = "restarted by operator"
    OPERATOR_KILL = "force-killed by operator"
    WOKE_UP = "restarted after the laptop woke up"  # the gateway's own restart (the tunnel after a resume)
    CRASH = "the process exited"
    RETRY = "retrying after backoff"
    START_FAILED = "could not start"  # the OS refused the spawn, or the port was held
    NO_FREE_PORT = "no free port left"
    HEALTHY = "health check passed"
    UP = "started (no health check)"
    KEPT_RUNNING = "kept running its min_uptime"  # a program with no web page: that is its check
    UNHEALTHY = "health check failing"
    START_TIMEOUT = "never became healthy"
    NO_RESTART = "restart policy says no"
    DEPENDENCY = "waiting for a dependency"
    SHUTDOWN = "gateway stopping"
    ADOPTED = "adopted after a gateway restart"
    BOOT = "started with the gateway"
    WAITING_FOR_INTERNET = "waiting for the internet"
    ROLLBACK = "the change failed; running the last good version"
    PROMOTED = "the change ran well through its probation"
