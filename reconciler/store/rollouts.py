"""The rollout memory in PostgreSQL: each server's last good version and its failed change.

Ops (written through the sink like every other): ``{"op": "good", "name", "spec", "hash"}``,
``{"op": "answered", "name", "spec", "hash"}`` (the version that last ran and answered),
``{"op": "rollout_failed", "name", "hash", "why", "facts"}``, ``{"op": "rollout_clear", "name"}``.
All are upserts, so a replay from the journal lands once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

Op = dict[str, Any]
Statement = tuple[LiteralString, dict[str, Any]]


def _at(op: Op) -> datetime:
    value = op.get("at")
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value)) if value else datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _good(op: Op) -> list[Statement]:
    return [("INSERT INTO rollouts (name, good_spec, good_hash, good_at) VALUES (%(name)s, %(spec)s, %(hash)s,"
             " %(at)s) ON CONFLICT (name) DO UPDATE SET good_spec = EXCLUDED.good_spec,"
             " good_hash = EXCLUDED.good_hash, good_at = EXCLUDED.good_at",
             {"name": op["name"], "spec": Jsonb(dict(op["spec"])), "hash": str(op["hash"]), "at": _at(op)})]


def _answered(op: Op) -> list[Statement]:
    return [("INSERT INTO rollouts (name, answered_spec, answered_hash, answered_at) VALUES (%(name)s, %(spec)s,"
             " %(hash)s, %(at)s) ON CONFLICT (name) DO UPDATE SET answered_spec = EXCLUDED.answered_spec,"
             " answered_hash = EXCLUDED.answered_hash, answered_at = EXCLUDED.answered_at",
             {"name": op["name"], "spec": Jsonb(dict(op["spec"])), "hash": str(op["hash"]), "at": _at(op)})]


def _failed(op: Op) -> list[Statement]:
    return [("INSERT INTO rollouts (name, failed_hash, failed_reason, failed_facts, failed_at) VALUES (%(name)s,"
             " %(hash)s, %(why)s, %(facts)s, %(at)s) ON CONFLICT (name) DO UPDATE SET"
             " failed_hash = EXCLUDED.failed_hash, failed_reason = EXCLUDED.failed_reason,"
             " failed_facts = EXCLUDED.failed_facts, failed_at = EXCLUDED.failed_at",
             {"name": op["name"], "hash": str(op["hash"]), "why": str(op.get("why") or ""),
              "facts": Jsonb(dict(op.get("facts") or {})), "at": _at(op)})]


def _clear(op: Op) -> list[Statement]:
    return [("UPDATE rollouts SET failed_hash = NULL, failed_reason = NULL, failed_facts = NULL, failed_at = NULL"
             " WHERE name = %(name)s", {"name": op["name"]})]


def _forget(op: Op) -> list[Statement]:
    return [("DELETE FROM rollouts WHERE name = %(name)s", {"name": op["name"]})]


WRITERS = {"good": _good, "answered": _answered, "rollout_failed": _failed, "rollout_clear": _clear, "rollout_forget": _forget}

LOAD = ("SELECT name, good_spec, good_hash, answered_spec, answered_hash, failed_hash, failed_reason, failed_facts,"
        " failed_at FROM rollouts ORDER BY name")
LAST_APPLIED = "SELECT name, spec FROM servers WHERE deleted_at IS NULL ORDER BY name"
