"""Typed facts the engine hands to the page: how a run ended and who ended it, which program
holds a port, and the check result that says a running server does not answer.

The engine records these as data (in `ServerState` and in the `detail` of event rows); the page
writes the words (webview/infra/words.py) and never parses the engine's English back. Pure data.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping


class EndedBy(StrEnum):
    ITSELF = "itself"  # it exited on its own (any exit code), or crashed inside (SIGSEGV, SIGABRT ...)
    OUTSIDE = "outside"  # a signal neither it nor the gateway sent: `kill -9` from a terminal, the OOM killer
    ASKED = "asked"  # the gateway asked it to stop (its stop signal) and it stopped in time
    FORCED = "forced"  # the gateway asked, it did not stop within its timeout: the tree was killed
    OWNER_KILL = "owner_kill"  # the owner's "Force it to stop"


# signals a program raises against itself when it crashes inside
CRASH_SIGNALS = frozenset({"SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE", "SIGSYS", "SIGTRAP"})


def signal_name(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class ExitFact:
    """How the last run ended. `code` and `signal` both None: not known (an adopted process)."""

    code: int | None
    signal: int | None
    by: EndedBy
    signal_name: str | None = None
    leftovers: int = 0  # processes it left running that the gateway ended

    @classmethod
    def of(cls, code: int | None, signal: int | None, by: EndedBy | None = None, leftovers: int = 0) -> ExitFact:
        """`by` None: it ended without the gateway asking; a signal then came from outside,
        unless it is one a program raises when it crashes."""
        name = signal_name(signal)
        if by is None:
            by = EndedBy.OUTSIDE if name is not None and name not in CRASH_SIGNALS else EndedBy.ITSELF
        return cls(code, signal, by, name, leftovers)

    @property
    def clean(self) -> bool:
        return self.code == 0 and self.signal is None


@dataclass(frozen=True)
class HeldPort:
    """Another program holds the port a server needs."""

    port: int
    pid: int | None = None
    program: str | None = None


@dataclass(frozen=True)
class CheckFact:
    """A failing check: what it got (`status` an HTTP status, `problem` one of `PROBLEMS`), the
    engine's text for the log, and since when (monotonic) it has not answered. Kept through the
    restarts it causes, until a check passes."""

    error: str
    since: float
    problem: str | None = None
    status: int | None = None
    failures: int = 1  # checks failed in a row (of this run)
    restarts: int = 0  # restarts it caused so far
    since_wall: float | None = None  # `since` on the wall clock (epoch seconds), for the page


PROBLEMS = ("status", "timeout", "refused", "connect", "invalid", "command")


def as_dict(fact: Any) -> dict[str, Any] | None:
    """A fact as the plain dict an event's detail and the page's view carry."""
    if fact is None:
        return None
    return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in vars(fact).items()}


def exit_from(data: Mapping[str, Any] | None) -> ExitFact | None:
    """An `ExitFact` back from its dict (an event's detail); None when there is none."""
    if not data:
        return None
    try:
        by = EndedBy(str(data.get("by")))
    except ValueError:
        by = EndedBy.ITSELF
    code, sig = data.get("code"), data.get("signal")
    return ExitFact(int(code) if code is not None else None, int(sig) if sig is not None else None, by,
                    data.get("signal_name") or signal_name(int(sig) if sig is not None else None),
                    int(data.get("leftovers") or 0))
