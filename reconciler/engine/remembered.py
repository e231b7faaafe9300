"""What PostgreSQL remembers about the servers, turned back into specs at start: each
server's last good version and failed change (for `rollout`), and the version to keep in
force when its file does not load (a half-saved edit or a merge conflict across a reboot).

Only data work: the rows are read by the caller (`Store.load_rollouts`, `load_applied_specs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from reconciler.core.spec import ServerSpec
from reconciler.engine.config import format_durations
from reconciler.engine.runtime import Runtime

log = logging.getLogger("gateway")


def _spec(name: str, data: Any) -> ServerSpec | None:
    try:
        return ServerSpec.model_validate(format_durations({**dict(data), "name": name}))
    except (ValidationError, TypeError, ValueError) as exc:  # a spec of an older schema: not usable
        log.warning("the remembered version of %s no longer loads (%s); not used", name, exc)
        return None


def restore(rt: Runtime, rollouts: Iterable[Mapping[str, Any]], applied: Mapping[str, Any]) -> dict[str, ServerSpec]:
    """Put the rollout memory into `rt`; return, per server, the version to fall back on when
    its file does not load: the one that last ran and answered, else the last good one, else
    the one last in force."""
    fallback: dict[str, ServerSpec] = {}
    for name, data in applied.items():
        if (spec := _spec(name, data)) is not None:
            fallback[name] = spec
    for row in rollouts:
        name = row["name"]
        if row.get("good_spec") is not None and (good := _spec(name, row["good_spec"])) is not None:
            rt.rollouts.last_good[name] = good
            fallback[name] = good
        # the version that ran and answered last (a good edit still on probation) is the one
        # a file that does not load keeps running, not the older good one
        if row.get("answered_spec") is not None and (answered := _spec(name, row["answered_spec"])) is not None:
            rt.rollouts.answered[name] = answered
            if answered.runtime_hash() != row.get("failed_hash"):
                fallback[name] = answered
        if row.get("failed_hash"):
            rt.rollouts.failed[name] = row["failed_hash"]
            rt.rollouts.failed_why[name] = row.get("failed_reason") or ""
            rt.rollouts.failed_facts[name] = dict(row.get("failed_facts") or {})
    return fallback
