"""Health-gated changes, as pure decisions for `plan`: which version of a server is in force,
when a running version becomes the last good one, and when a failed change is rolled back.

A changed version (a new runtime hash) must pass its first check within `start_period`
and then stay up for `restart.probation` without exiting or failing `failures` checks in a
row. Until then the previous good version is remembered (PostgreSQL keeps it, so this
survives a gateway restart). If the change fails before, its hash is remembered as failed
and the last good version runs again; the file stays as the owner wrote it, and that exact
version is not tried again by itself: a new edit of the file, or the owner's Retry, is.

No I/O here: the two memories arrive in `Desired` (`last_good`, `failed`).
"""

from __future__ import annotations

import math
from typing import Any

from reconciler.core.facts import as_dict
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Desired, ServerState

# the fields whose change needs a restart (`ServerSpec.runtime_hash`)
RUNTIME_FIELDS = ("command", "shell", "port", "cwd", "env")
PROMOTE_BEAT = 5.0  # seconds: probations end on this beat (one pass promotes every server due by then),
# or on a sixth of a shorter probation


def in_force(name: str, desired: Desired) -> ServerSpec | None:
    """The version to run: the file's, unless that exact version failed and was rolled
    back; then the previous version's command, port, folder and environment, with the
    file's other settings (health, restart, stop, domain: they need no restart)."""
    spec = desired.specs.get(name)
    if spec is None or desired.failed.get(name) != spec.runtime_hash():
        return spec
    back = previous_version(name, spec.runtime_hash(), desired)
    return spec if back is None else keep_runtime_of(back, spec)


def previous_version(name: str, failing_hash: str, desired: Desired) -> ServerSpec | None:
    """The version to go back to when `failing_hash` fails before its probation is over: the
    one that last ran and answered (also while still on its own probation), else the last good
    one; never the failing version itself (None: there is none)."""
    for version in (desired.answered.get(name), desired.last_good.get(name)):
        if version is not None and version.runtime_hash() != failing_hash:
            return version
    return None


def keep_runtime_of(good: ServerSpec, spec: ServerSpec) -> ServerSpec:
    return spec.model_copy(update={field: getattr(good, field) for field in RUNTIME_FIELDS})


def is_trial(name: str, state: ServerState, desired: Desired) -> bool:
    """The running (or last run) version is a change on probation: a last good version
    exists and is another one."""
    good = desired.last_good.get(name)
    return good is not None and state.spec_hash is not None and state.spec_hash != good.runtime_hash()


def replaceable(name: str, state: ServerState, spec: ServerSpec, desired: Desired) -> bool:
    """Can this change start next to the running version (no gap)? When the new version
    takes an automatic port (so a second one is free), and what runs now is the last good
    version (a failed try then simply leaves it running)."""
    good = desired.last_good.get(name)
    return (spec.port == "auto" and state.port is not None and not state.replacing
            and good is not None and state.spec_hash == good.runtime_hash() and spec.enabled)


def promotion_due(state: ServerState, spec: ServerSpec) -> float | None:
    """When the running version becomes the last good one (None: not healthy yet): once its
    probation is over, on the next PROMOTE_BEAT, so that servers that became healthy within a
    few seconds of each other (a start of the gateway) are promoted in one pass, not one each."""
    if state.healthy_since is None:
        return None
    due = state.healthy_since + spec.restart.probation
    beat = min(PROMOTE_BEAT, spec.restart.probation / 6)  # a short probation is not made much longer
    return math.ceil(due / beat) * beat if beat > 0 else due


def rollback_target(name: str, spec: ServerSpec, state: ServerState, desired: Desired) -> ServerSpec | None:
    """The version to go back to when the version that just failed (`state.spec_hash`) is
    the file's version and still on probation: the previous one that ran and answered (even
    if it was on probation itself: a new server that answered for 5 s, or a good edit), else
    the last good one. None when there is none (a brand-new server that never answered, or the
    good version itself crashed: those are restarted with backoff as usual)."""
    good = desired.last_good.get(name)
    if state.spec_hash is None or state.spec_hash != spec.runtime_hash():
        return None
    if good is not None and state.spec_hash == good.runtime_hash():
        return None  # the last good version failed: not a change, nothing to go back to
    back = previous_version(name, state.spec_hash, desired)
    return None if back is None else keep_runtime_of(back, spec)


def failure_facts(state: ServerState) -> dict[str, Any]:
    """Why the version on probation failed, typed, for the owner's "your change was not applied"."""
    facts: dict[str, Any] = {"cause": str(state.cause) if state.cause else None}
    if state.ended is not None:
        facts["exit"] = as_dict(state.ended)
    if (check := state.not_answering or state.last_check) is not None:
        facts["check"] = as_dict(check)
    if state.held is not None:
        facts["held"] = as_dict(state.held)
    if state.start_error:
        facts["start_error"] = state.start_error
    return facts
