"""Incidents in PostgreSQL (reconciler/ops/incidents.py): opened, told, reminded, resolved.

One op, written through the sink like every other: ``{"op": "incident", "id", "server", "cause",
"text", "opened_at", "told_at", "reminded_at", "reminders", "resolved_at", "resolved_told"}``, an
upsert by id, so a replay from the journal lands once and a restarted gateway reads the open ones.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, LiteralString

Op = dict[str, Any]
Statement = tuple[LiteralString, dict[str, Any]]
_COLUMNS = ("server", "cause", "text", "opened_at", "told_at", "reminded_at", "reminders", "resolved_at",
            "resolved_told")


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _incident(op: Op) -> list[Statement]:
    params = {k: op.get(k) for k in _COLUMNS}
    params.update(id=uuid.UUID(str(op["id"])), cause=str(op["cause"]), text=str(op.get("text") or ""),
                  opened_at=_ts(op["opened_at"]), told_at=_ts(op.get("told_at")),
                  reminded_at=_ts(op.get("reminded_at")), resolved_at=_ts(op.get("resolved_at")),
                  reminders=int(op.get("reminders") or 0), resolved_told=bool(op.get("resolved_told")))
    return [("INSERT INTO incidents (id, server, cause, text, opened_at, told_at, reminded_at, reminders,"
             " resolved_at, resolved_told) VALUES (%(id)s, %(server)s, %(cause)s, %(text)s, %(opened_at)s,"
             " %(told_at)s, %(reminded_at)s, %(reminders)s, %(resolved_at)s, %(resolved_told)s)"
             " ON CONFLICT (id) DO UPDATE SET cause = EXCLUDED.cause, text = EXCLUDED.text,"
             " told_at = EXCLUDED.told_at, reminded_at = EXCLUDED.reminded_at, reminders = EXCLUDED.reminders,"
             " resolved_at = EXCLUDED.resolved_at, resolved_told = EXCLUDED.resolved_told", params)]


WRITERS = {"incident": _incident}
LOAD_OPEN = ("SELECT id, server, cause, text, opened_at, told_at, reminded_at, reminders FROM incidents"
             " WHERE resolved_at IS NULL ORDER BY opened_at")
