"""The Store: the loop's writes (as JSON-shaped ops) and the reads the loop and the page need.

An op is a plain dict with an "op" key, e.g. {"op": "state_delete", "name": "blog"}; see `KINDS`.
Every write is idempotent (events by id, samples by (server, at), the rest are upserts), so a
batch replayed from the journal after a lost commit acknowledgement lands exactly once.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg import sql
from psycopg.types.json import Jsonb

from reconciler.store import availability, incidents, rollouts
from reconciler.store.db import CONNECT_TIMEOUT, Pool, migrate, open_pool, rows

Op = dict[str, Any]
Statement = tuple[LiteralString, dict[str, Any]]


class OpError(ValueError):
    """An op that can never be written (unknown kind, missing or malformed field)."""


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_EVENT = (
    "INSERT INTO events (id, seq, at, server, kind, from_phase, to_phase, reason, actor, detail)"
    " VALUES (%(id)s, %(seq)s, %(at)s, %(server)s, %(kind)s, %(from_phase)s, %(to_phase)s,"
    " %(reason)s, %(actor)s, %(detail)s) ON CONFLICT (id) DO NOTHING"
)


def _event(op: Op) -> list[Statement]:
    params = {k: op.get(k) for k in ("server", "kind", "from_phase", "to_phase")}
    params.update(id=uuid.UUID(str(op["id"])), seq=int(op["seq"]), at=_ts(op["at"]),
                  detail=Jsonb(op.get("detail") or {}), reason=op.get("reason") or "",
                  actor=op.get("actor") or "gateway")
    return [(_EVENT, params)]


_STATE = (
    "INSERT INTO state (name, pid, create_time, start_mark, port, phase, spec_hash, started_at, restarts,"
    " updated_at) VALUES (%(name)s, %(pid)s, %(create_time)s, %(start_mark)s, %(port)s, %(phase)s,"
    " %(spec_hash)s, %(started_at)s, %(restarts)s, %(at)s) ON CONFLICT (name) DO UPDATE SET pid = EXCLUDED.pid,"
    " create_time = EXCLUDED.create_time, start_mark = EXCLUDED.start_mark, port = EXCLUDED.port, phase = EXCLUDED.phase,"
    " spec_hash = EXCLUDED.spec_hash, started_at = EXCLUDED.started_at,"
    " restarts = EXCLUDED.restarts, updated_at = EXCLUDED.updated_at"
)


def _state(op: Op) -> list[Statement]:
    row = op["row"]
    params = {k: row.get(k) for k in ("pid", "create_time", "start_mark", "port", "spec_hash")}
    params.update(name=row["name"], phase=row["phase"], started_at=_ts(row.get("started_at")),
                  restarts=int(row.get("restarts") or 0), at=_ts(op.get("at")) or datetime.now(UTC))
    return [(_STATE, params)]


def _state_delete(op: Op) -> list[Statement]:
    return [("DELETE FROM state WHERE name = %(name)s", {"name": op["name"]})]


_INTENT = (
    "INSERT INTO intents (name, intent, actor, at) VALUES (%(name)s, %(intent)s, %(actor)s, %(at)s)"
    " ON CONFLICT (name) DO UPDATE SET intent = EXCLUDED.intent, actor = EXCLUDED.actor, at = EXCLUDED.at"
)


def _intent(op: Op) -> list[Statement]:
    if op.get("intent") is None:  # cleared: back to what the files say
        return [("DELETE FROM intents WHERE name = %(name)s", {"name": op["name"]})]
    actor = op.get("actor") or "gateway"
    return [(_INTENT, {"name": op["name"], "intent": op["intent"], "actor": actor, "at": _ts(op["at"])})]


_SERVER = (
    "INSERT INTO servers (name, spec, runtime_hash, applied_at, deleted_at)"
    " VALUES (%(name)s, %(spec)s, %(hash)s, %(at)s, NULL) ON CONFLICT (name) DO UPDATE SET"
    " spec = EXCLUDED.spec, runtime_hash = EXCLUDED.runtime_hash, applied_at = EXCLUDED.applied_at,"
    " deleted_at = NULL"
)


def _server(op: Op) -> list[Statement]:
    spec = Jsonb(dict(op["spec"]))
    params = {"name": op["name"], "spec": spec, "hash": op.get("runtime_hash"), "at": _ts(op["at"])}
    return [(_SERVER, params)]


def _server_delete(op: Op) -> list[Statement]:
    return [("UPDATE servers SET deleted_at = %(at)s WHERE name = %(name)s AND deleted_at IS NULL",
             {"name": op["name"], "at": _ts(op["at"])})]


_PORT = (
    "INSERT INTO ports (name, port, assigned_at) VALUES (%(name)s, %(port)s, %(at)s)"
    " ON CONFLICT (name) DO UPDATE SET port = EXCLUDED.port, assigned_at = EXCLUDED.assigned_at"
)


def _port(op: Op) -> list[Statement]:
    name, port = op["name"], op.get("port")
    if port is None:
        return [("DELETE FROM ports WHERE name = %(name)s", {"name": name})]
    params = {"name": name, "port": int(port), "at": _ts(op["at"])}
    # a port belongs to one server: whoever held it before lets go
    return [("DELETE FROM ports WHERE port = %(port)s AND name <> %(name)s", params), (_PORT, params)]


_HEALTH = (  # a result that differs from the server's last one (reconciler/engine/checklog.py)
    "INSERT INTO health_changes (at, server, ok, latency_ms, error)"
    " VALUES (%(at)s, %(server)s, %(ok)s, %(latency_ms)s, %(error)s) ON CONFLICT DO NOTHING"
)


def _health(op: Op) -> list[Statement]:
    return [(_HEALTH, {"at": _ts(op["at"]), "server": op["server"], "ok": bool(op["ok"]),
                       "latency_ms": op.get("latency_ms"), "error": op.get("error")})]


_MINUTE_COLUMNS: tuple[tuple[LiteralString, LiteralString], ...] = (
    ("server", "text"), ("minute", "timestamptz"), ("checks", "integer"), ("failures", "integer"),
    ("timed", "integer"), ("latency_min", "real"), ("latency_avg", "real"), ("latency_max", "real"),
    ("last_at", "timestamptz"), ("run", "text"))
# A minute two runs of the gateway both counted (a restart within it) adds up; the same run's
# minute written again (a replay from the journal) changes nothing.
_MINUTE_MERGE: LiteralString = (
    " ON CONFLICT (server, minute) DO UPDATE SET checks = m.checks + EXCLUDED.checks,"
    " failures = m.failures + EXCLUDED.failures, timed = m.timed + EXCLUDED.timed,"
    " latency_min = least(m.latency_min, EXCLUDED.latency_min),"
    " latency_avg = (coalesce(m.latency_avg * m.timed, 0) + coalesce(EXCLUDED.latency_avg * EXCLUDED.timed, 0))"
    "   / nullif(m.timed + EXCLUDED.timed, 0),"
    " latency_max = greatest(m.latency_max, EXCLUDED.latency_max),"
    " last_at = greatest(m.last_at, EXCLUDED.last_at), run = EXCLUDED.run WHERE m.run <> EXCLUDED.run"
)
_HEALTH_MINUTE: LiteralString = (
    "INSERT INTO health_minutes AS m (server, minute, checks, failures, timed, latency_min, latency_avg,"
    " latency_max, last_at, run) VALUES (%(server)s, %(minute)s, %(checks)s, %(failures)s, %(timed)s,"
    " %(latency_min)s, %(latency_avg)s, %(latency_max)s, %(last_at)s, %(run)s)" + _MINUTE_MERGE
)


def _health_minute(op: Op) -> list[Statement]:
    return [(_HEALTH_MINUTE, {
        "server": op["server"], "minute": _ts(op["minute"]), "checks": int(op["checks"]),
        "failures": int(op["failures"]), "timed": int(op.get("timed") or 0), "latency_min": op.get("latency_min"),
        "latency_avg": op.get("latency_avg"), "latency_max": op.get("latency_max"),
        "last_at": _ts(op.get("last_at") or op["minute"]), "run": str(op.get("run") or "")})]


_RESOURCE = (
    "INSERT INTO resource_samples (at, server, cpu_percent, rss_bytes)"
    " VALUES (%(at)s, %(server)s, %(cpu_percent)s, %(rss_bytes)s) ON CONFLICT DO NOTHING"
)


def _resource(op: Op) -> list[Statement]:
    return [(_RESOURCE, {"at": _ts(op["at"]), "server": op["server"], "cpu_percent": op.get("cpu_percent"),
                         "rss_bytes": op.get("rss_bytes")})]


_REVISION = (
    "INSERT INTO config_revisions (at, path, sha256, ok, error)"
    " VALUES (%(at)s, %(path)s, %(sha256)s, %(ok)s, %(error)s) ON CONFLICT DO NOTHING"
)


def _config_revision(op: Op) -> list[Statement]:
    return [(_REVISION, {"at": _ts(op["at"]), "path": op["path"], "sha256": op.get("sha256"),
                         "ok": bool(op["ok"]), "error": op.get("error")})]


_HOST_COLUMNS = ("cpu_percent", "mem_percent", "disk_percent", "disk_free_bytes", "battery_percent", "on_ac",
                 "internet_ok")
_HOST = (
    "INSERT INTO host_samples (at, " + ", ".join(_HOST_COLUMNS) + ") VALUES (%(at)s, "
    + ", ".join(f"%({c})s" for c in _HOST_COLUMNS) + ") ON CONFLICT DO NOTHING"
)


def _host(op: Op) -> list[Statement]:
    return [(_HOST, {"at": _ts(op["at"]), **{c: op.get(c) for c in _HOST_COLUMNS}})]  # type: ignore[arg-type]


def _bulk(table: LiteralString, columns: tuple[tuple[LiteralString, LiteralString], ...]) -> tuple[
        LiteralString, tuple[str, ...]]:
    """The one-statement form of a run of sample inserts: each column's values as an array
    (100 health rows every 10 s: psycopg's per-row work in an executemany was most of the
    gateway's CPU at rest). Same conflict rule, so a replayed batch still lands once."""
    arrays = ", ".join(f"%({name})s::{kind}[]" for name, kind in columns)
    names = ", ".join(name for name, _ in columns)
    query: LiteralString = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING"  # type: ignore[assignment]
    return query, tuple(name for name, _ in columns)


def _bulk_minutes() -> tuple[LiteralString, tuple[str, ...]]:
    """A minute's rows for every server: one statement (the same merge as one row)."""
    arrays = ", ".join(f"%({name})s::{kind}[]" for name, kind in _MINUTE_COLUMNS)
    names = ", ".join(name for name, _ in _MINUTE_COLUMNS)
    query: LiteralString = (f"INSERT INTO health_minutes AS m ({names}) SELECT * FROM unnest({arrays})"  # type: ignore[assignment]
                            + _MINUTE_MERGE)
    return query, tuple(name for name, _ in _MINUTE_COLUMNS)


BULK: dict[str, tuple[LiteralString, tuple[str, ...]]] = {
    _HEALTH: _bulk("health_changes", (("at", "timestamptz"), ("server", "text"), ("ok", "boolean"),
                                      ("latency_ms", "real"), ("error", "text"))),
    _HEALTH_MINUTE: _bulk_minutes(),
    _RESOURCE: _bulk("resource_samples", (("at", "timestamptz"), ("server", "text"), ("cpu_percent", "real"),
                                          ("rss_bytes", "bigint"))),
}


WRITERS: dict[str, Callable[[Op], list[Statement]]] = {
    "event": _event, "state": _state, "state_delete": _state_delete, "intent": _intent, "server": _server,
    "server_delete": _server_delete, "port": _port, "health": _health, "health_minute": _health_minute,
    "resource": _resource,
    "config_revision": _config_revision, "host": _host,
}
WRITERS.update(rollouts.WRITERS)
WRITERS.update(incidents.WRITERS)
KINDS = frozenset(WRITERS)


def statements(op: Op) -> list[Statement]:
    """The SQL for one op; raises OpError when the op is malformed (before any I/O)."""
    try:
        return WRITERS[op["op"]](op)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OpError(f"cannot write {op!r}: {type(exc).__name__}: {exc}") from None


RAW_KEEP_HOURS = 26  # the 24 h chart, and a margin (raw resource and host samples, health minutes)
HOURLY_KEEP_DAYS = 400  # hourly rollups, and the health changes
_ROLLUP: tuple[LiteralString, ...] = (
    "INSERT INTO health_hourly (server, hour, checks, ok, latency_avg, latency_max)"
    " SELECT server, date_trunc('hour', minute), sum(checks), sum(checks - failures),"
    " sum(latency_avg * timed) / nullif(sum(timed), 0), max(latency_max)"
    " FROM health_minutes WHERE minute >= date_trunc('hour', now() - interval '1 hour')"
    " GROUP BY 1, 2 ON CONFLICT (server, hour) DO UPDATE SET checks = EXCLUDED.checks, ok = EXCLUDED.ok,"
    " latency_avg = EXCLUDED.latency_avg, latency_max = EXCLUDED.latency_max",
    "INSERT INTO resource_hourly (server, hour, samples, cpu_avg, cpu_max, rss_avg, rss_max)"
    " SELECT server, date_trunc('hour', at), count(*), avg(cpu_percent), max(cpu_percent), avg(rss_bytes),"
    " max(rss_bytes) FROM resource_samples WHERE at >= date_trunc('hour', now() - interval '1 hour')"
    " GROUP BY 1, 2 ON CONFLICT (server, hour) DO UPDATE SET samples = EXCLUDED.samples,"
    " cpu_avg = EXCLUDED.cpu_avg, cpu_max = EXCLUDED.cpu_max, rss_avg = EXCLUDED.rss_avg,"
    " rss_max = EXCLUDED.rss_max",
    "DELETE FROM health_minutes WHERE minute < now() - %(raw)s::interval",
    "DELETE FROM health_changes WHERE at < now() - %(hourly)s::interval",
    "DELETE FROM resource_samples WHERE at < now() - %(raw)s::interval",
    "DELETE FROM host_samples WHERE at < now() - %(raw)s::interval",
    "DELETE FROM health_hourly WHERE hour < now() - %(hourly)s::interval",
    "DELETE FROM resource_hourly WHERE hour < now() - %(hourly)s::interval",
)
_SERIES: dict[tuple[str, bool], LiteralString] = {
    # each minute's average response time, and a gap where the server went down (a failed
    # check broke the line when every check was a row)
    ("health", False): "SELECT minute AS at, checks, failures, latency_min, latency_avg AS latency_ms, latency_max"
                       " FROM health_minutes WHERE server = %(server)s AND minute >= %(since)s AND (timed > 0 OR failures > 0)"
                       " UNION ALL SELECT at, NULL, NULL, NULL, NULL, NULL FROM health_changes"
                       " WHERE server = %(server)s AND at >= %(since)s AND NOT ok ORDER BY at",
    ("resource", False): "SELECT at, cpu_percent, rss_bytes FROM resource_samples WHERE server = %(server)s"
                         " AND at >= %(since)s ORDER BY at",
    ("health", True): "SELECT hour AS at, checks, ok, latency_avg AS latency_ms, latency_max FROM health_hourly"
                      " WHERE server = %(server)s AND hour >= %(since)s ORDER BY hour",
    ("resource", True): "SELECT hour AS at, cpu_avg AS cpu_percent, cpu_max, rss_avg AS rss_bytes, rss_max"
                        " FROM resource_hourly WHERE server = %(server)s AND hour >= %(since)s ORDER BY hour",
}

_FILTERS = {"server": sql.SQL("server = %(server)s"), "since": sql.SQL("at >= %(since)s"),
            "kind": sql.SQL("kind = %(kind)s")}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if isinstance(value, uuid.UUID) else value


class Store:
    """Reads and writes over a pool whose connections work in the gateway's schema."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, schema: str = "gateway", *, timeout: float = 10.0) -> Store:
        """Open the pool and migrate the schema."""
        pool = await open_pool(dsn, schema, timeout=timeout)
        try:
            async with pool.connection() as conn:
                await migrate(conn, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def apply(self, ops: list[Op]) -> None:
        """Write the ops in order, in one transaction (pipelined: one round trip)."""
        stmts = [stmt for op in ops for stmt in statements(op)]
        if not stmts:
            return
        async with (
            self.pool.connection(timeout=CONNECT_TIMEOUT) as conn,
            conn.transaction(),
            conn.pipeline(),
        ):
            cur = conn.cursor()
            for query, group in itertools.groupby(stmts, key=lambda stmt: stmt[0]):
                rows = [params for _, params in group]
                bulk = BULK.get(query)
                if bulk is not None and len(rows) > 1:  # a beat's samples: one statement, one array per column
                    await cur.execute(bulk[0], {column: [row[column] for row in rows] for column in bulk[1]})
                else:  # a run of the same statement: one executemany, prepared on the server after a few runs
                    await cur.executemany(query, rows)

    async def _rows(
        self, query: LiteralString | sql.Composed, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return await rows(self.pool, query, params)

    async def load_states(self) -> dict[str, dict[str, Any]]:
        rows = await self._rows("SELECT name, pid, create_time, start_mark, port, phase, spec_hash, started_at, restarts,"
                                " updated_at FROM state ORDER BY name")
        return {row["name"]: row for row in rows}

    async def load_intents(self) -> dict[str, str]:
        rows = await self._rows("SELECT name, intent FROM intents ORDER BY name")
        return {r["name"]: r["intent"] for r in rows}

    async def load_rollouts(self) -> list[dict[str, Any]]:
        """Each server's last good version and failed change (reconciler/core/rollout.py)."""
        return await self._rows(rollouts.LOAD)

    async def load_applied_specs(self) -> dict[str, dict[str, Any]]:
        """The spec each server last had in force, as JSON (for a file that does not load at start)."""
        return {r["name"]: r["spec"] for r in await self._rows(rollouts.LAST_APPLIED)}

    async def load_open_incidents(self) -> list[dict[str, Any]]:
        """The incidents not resolved yet (reconciler/ops/incidents.py)."""
        return await self._rows(incidents.LOAD_OPEN)

    async def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The alerts sent (or not) lately, newest first: what the page lists."""
        return await self._rows("SELECT at, title, body, ok, error FROM alerts ORDER BY at DESC LIMIT %(limit)s",
                                {"limit": limit})

    async def last_commit(self) -> dict[str, Any] | None:
        """The git commit the folder was last synced to (`[sync]`), or None."""
        rows = await self._rows("SELECT at, commit, ok, error FROM sync_commits ORDER BY at DESC LIMIT 1")
        return rows[0] if rows else None

    async def load_ports(self) -> dict[str, int]:
        return {r["name"]: r["port"] for r in await self._rows("SELECT name, port FROM ports ORDER BY name")}

    async def list_events(
        self,
        server: str | None = None,
        since: datetime | None = None,
        kind: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """The newest `limit` matching events, oldest first, with JSON-friendly values."""
        params: dict[str, Any] = {"server": server, "since": _ts(since), "kind": kind, "limit": max(0, limit)}
        where = [sql.SQL("TRUE")] + [_FILTERS[k] for k in _FILTERS if params[k] is not None]
        query = sql.SQL(
            "SELECT id, seq, at, server, kind, from_phase, to_phase, reason, actor, detail FROM events"
            " WHERE {} ORDER BY at DESC, seq DESC LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        rows = await self._rows(query, params)
        return [{k: _json(v) for k, v in row.items()} for row in reversed(rows)]

    async def rollup(self, raw_hours: int = RAW_KEEP_HOURS, hourly_days: int = HOURLY_KEEP_DAYS) -> None:
        """Fold the last two hours of raw samples into the hourly tables (idempotent: the
        current hour is recomputed each time), then drop what is past its retention."""
        async with self.pool.connection(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
            for query in _ROLLUP:
                await conn.execute(query, {"raw": f"{raw_hours} hours", "hourly": f"{hourly_days} days"})

    async def uptime(self) -> dict[str, dict[str, float | None]]:
        """Per server: the share of passed health checks over 24 h, 7 d and 30 d (0-100)."""
        return await availability.check_shares(self.pool)

    async def availability(self, beats: Mapping[str, float], now: datetime | None = None) -> dict[str, dict[str, Any]]:
        """Per server: availability over 24 h, 7 d, 30 d and the month, dark hours counted
        (reconciler/store/availability.py)."""
        return await availability.compute(self.pool, beats, now)

    async def last_seen(self, before: datetime) -> datetime | None:
        """When a gateway last wrote anything before `before`."""
        return await availability.last_seen(self.pool, before)

    async def series(self, server: str, since: datetime, hourly: bool) -> dict[str, list[dict[str, Any]]]:
        """Chart points for one server: health minutes and raw resource samples (26 h), or hourly
        rollups for long ranges."""
        out: dict[str, list[dict[str, Any]]] = {}
        for kind in ("health", "resource"):
            rows = await self._rows(_SERIES[(kind, hourly)], {"server": server, "since": since})
            out[kind] = [{k: _json(v) for k, v in row.items()} for row in rows]
        return out

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - "is the database there?" has a yes/no answer
            return False
