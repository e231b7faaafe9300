"""The Store against a real PostgreSQL: migrations, every op kind written and read back, event queries."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from reconciler.store import KINDS, Op, OpError, Store
from reconciler.store.db import MigrationError, migrate, migrations, open_pool
from tests.fix_db import T0, VERSIONS, drop_schema, event, rows


async def test_migrate_is_idempotent(pg_dsn: str, schema_name: str, store: Store) -> None:
    before = await rows(store, VERSIONS)
    assert [r[:2] for r in before] == [(m.version, m.name) for m in migrations()]
    assert before[0][:2] == (1, "init")
    async with store.pool.connection() as conn:
        assert await migrate(conn, schema_name) == []
    assert await rows(store, VERSIONS) == before
    again = await Store.connect(pg_dsn, schema_name)
    await again.close()
    assert await rows(store, VERSIONS) == before


async def test_concurrent_migrations_take_turns(pg_dsn: str, schema_name: str) -> None:
    try:
        stores = await asyncio.gather(*(Store.connect(pg_dsn, schema_name) for _ in range(4)))
        assert len(await rows(stores[0], "SELECT version FROM schema_version")) == len(migrations())
        for st in stores:
            await st.close()
    finally:
        await drop_schema(pg_dsn, schema_name)


def test_migration_files_must_be_numbered_once(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"version 1 is also 0001_a\.sql"):
        migrations(tmp_path)
    (tmp_path / "0001_b.sql").rename(tmp_path / "two.sql")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        migrations(tmp_path)


async def test_tables_live_in_the_schema(store: Store, schema_name: str) -> None:
    tables = {r[0] for r in await rows(store, f"SELECT table_name FROM information_schema.tables"
                                                f" WHERE table_schema = '{schema_name}'")}
    assert {"servers", "state", "events", "intents", "ports", "health_changes", "health_minutes",
            "resource_samples",
            "config_revisions", "users", "sessions", "schema_version"} <= tables


async def test_every_op_kind_round_trips(store: Store) -> None:
    spec = {"command": ["python", "-m", "http.server", "{port}"], "port": "auto"}
    state = {"name": "blog", "pid": 4242, "create_time": 1764000000.25, "start_mark": "b00t:123",
             "port": 8080, "phase": "running", "spec_hash": "abc", "started_at": T0.isoformat(), "restarts": 2}
    ev = event(1)
    at = T0.isoformat()
    ops: list[Op] = [
        ev,
        {"op": "server", "name": "blog", "spec": spec, "runtime_hash": "h1", "at": at},
        {"op": "server", "name": "gone", "spec": spec, "runtime_hash": "h2", "at": at},
        {"op": "server_delete", "name": "gone", "at": at},
        {"op": "state", "row": state, "at": at},
        {"op": "state", "row": {**state, "name": "old", "phase": "stopped", "pid": None}, "at": at},
        {"op": "state_delete", "name": "old"},
        {"op": "intent", "name": "blog", "intent": "stop", "actor": "alice", "at": at},
        {"op": "intent", "name": "api", "intent": "stop", "actor": "alice", "at": at},
        {"op": "intent", "name": "api", "intent": None, "actor": "alice", "at": at},
        {"op": "port", "name": "blog", "port": 9001, "at": at},
        {"op": "port", "name": "api", "port": 9002, "at": at},
        {"op": "port", "name": "api", "port": 9001, "at": at},  # blog's old port moved to api: blog loses it
        {"op": "health", "server": "blog", "ok": False, "latency_ms": 12.5, "error": "refused", "at": at},
        {"op": "health_minute", "server": "blog", "minute": at, "checks": 6, "failures": 1, "timed": 2,
         "latency_min": 2.0, "latency_avg": 3.5, "latency_max": 5.0, "last_at": at, "run": "r1", "at": at},
        {"op": "resource", "server": "blog", "cpu_percent": 1.5, "rss_bytes": 2**33, "at": at},
        {"op": "config_revision", "path": "gateway.d/blog.toml", "sha256": "00ff", "ok": True, "error": None,
         "at": at},
        {"op": "host", "cpu_percent": 12.5, "mem_percent": 40.0, "disk_percent": 70.0, "disk_free_bytes": 2**35,
         "battery_percent": 55.0, "on_ac": False, "internet_ok": True, "at": at},
        {"op": "good", "name": "blog", "spec": spec, "hash": "h1", "at": at},
        {"op": "answered", "name": "blog", "spec": {**spec, "port": 1}, "hash": "h5", "at": at},
        {"op": "rollout_failed", "name": "blog", "hash": "h9", "why": "exited with code 2", "at": at,
         "facts": {"exit": {"code": 2, "signal": None, "by": "itself"}}},
        {"op": "good", "name": "api", "spec": spec, "hash": "h3", "at": at},
        {"op": "rollout_failed", "name": "api", "hash": "h4", "why": "x", "at": at},
        {"op": "rollout_clear", "name": "api", "at": at},
        {"op": "good", "name": "gone", "spec": spec, "hash": "h2", "at": at},
        {"op": "rollout_forget", "name": "gone", "at": at},
        {"op": "incident", "id": "0b5d1f0e-4a4f-4b7e-9a57-3c1d7c8e2f10", "server": "blog", "cause": "down",
         "text": "keeps crashing", "opened_at": at, "told_at": at, "reminded_at": None, "reminders": 0,
         "resolved_at": None, "resolved_told": False},
    ]
    assert {op["op"] for op in ops} == KINDS
    ops = json.loads(json.dumps(ops))  # ops are plain JSON: what the journal stores
    await store.apply(ops)
    await store.apply(ops)  # every write is idempotent

    assert [(r["name"], r["good_hash"], r["failed_hash"], r["failed_reason"]) for r in await store.load_rollouts()] == [
        ("api", "h3", None, None), ("blog", "h1", "h9", "exited with code 2")]
    blog = (await store.load_rollouts())[1]
    assert (blog["answered_hash"], blog["answered_spec"]["port"]) == ("h5", 1)
    assert blog["failed_facts"] == {"exit": {"code": 2, "signal": None, "by": "itself"}}
    assert await store.load_applied_specs() == {"blog": spec}
    [incident] = await store.load_open_incidents()
    assert (incident["server"], incident["cause"], incident["told_at"]) == ("blog", "down", T0)
    states = await store.load_states()
    assert set(states) == {"blog"}
    row = states["blog"]
    got_state = (row["pid"], row["create_time"], row["start_mark"], row["port"], row["phase"], row["restarts"])
    assert got_state == (4242, 1764000000.25, "b00t:123", 8080, "running", 2)
    assert row["started_at"] == T0
    assert await store.load_intents() == {"blog": "stop"}
    assert await store.load_ports() == {"api": 9001}
    servers = await rows(store, "SELECT name, spec, runtime_hash, deleted_at IS NOT NULL FROM servers"
                                " ORDER BY name")
    assert servers == [("blog", spec, "h1", False), ("gone", spec, "h2", True)]
    events = await store.list_events()
    assert len(events) == 1
    got = events[0]
    assert datetime.fromisoformat(got.pop("at")) == datetime.fromisoformat(ev["at"])
    assert got == {k: v for k, v in ev.items() if k not in ("op", "at")}
    assert await rows(store, "SELECT ok, latency_ms, error FROM health_changes") == [(False, 12.5, "refused")]
    assert await rows(store, "SELECT checks, failures, timed, latency_min, latency_avg, latency_max, run"
                             " FROM health_minutes") == [(6, 1, 2, 2.0, 3.5, 5.0, "r1")]
    assert await rows(store, "SELECT cpu_percent, rss_bytes FROM resource_samples") == [(1.5, 2**33)]
    revisions = await rows(store, "SELECT path, sha256, ok FROM config_revisions")
    assert revisions == [("gateway.d/blog.toml", "00ff", True)]
    assert await rows(store, "SELECT cpu_percent, disk_free_bytes, battery_percent, on_ac, internet_ok"
                             " FROM host_samples") == [(12.5, 2**35, 55.0, False, True)]

    await store.apply([{"op": "server", "name": "gone", "spec": spec, "runtime_hash": "h3", "at": at}])
    assert await rows(store, "SELECT deleted_at FROM servers WHERE name = 'gone'") == [(None,)]  # back again


async def test_malformed_ops_fail_before_any_write(store: Store) -> None:
    for bad in ({"op": "nope"}, {"op": "event", "id": "not-a-uuid", "seq": 1, "at": T0.isoformat()},
                {"op": "state", "row": {"pid": 1}}, {"op": "port", "name": "x", "port": "eighty"}):
        with pytest.raises(OpError):
            await store.apply([event(1), bad])
    assert await store.list_events() == []


async def test_database_rejects_a_bad_intent(store: Store) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        await store.apply([event(1), {"op": "intent", "name": "x", "intent": "pause", "at": T0.isoformat()}])
    assert await store.list_events() == []  # one transaction: nothing landed


async def test_list_events_filters_and_order(store: Store) -> None:
    ops = [event(i, server="blog" if i % 2 else "api", kind="transition" if i % 3 else "config_error")
           for i in range(1, 13)]
    ops.append(event(13, server=None, kind="gateway_started"))
    await store.apply(list(reversed(ops)))  # insertion order does not matter

    everything = await store.list_events()
    assert [e["seq"] for e in everything] == list(range(1, 14))  # oldest first
    assert all(isinstance(e["id"], str) and isinstance(e["at"], str) for e in everything)
    json.dumps(everything)  # JSON-friendly
    assert [e["seq"] for e in await store.list_events(server="blog")] == [1, 3, 5, 7, 9, 11]
    assert [e["seq"] for e in await store.list_events(kind="config_error")] == [3, 6, 9, 12]
    assert [e["seq"] for e in await store.list_events(server="api", kind="config_error")] == [6, 12]
    assert [e["seq"] for e in await store.list_events(since=T0 + timedelta(seconds=10))] == [10, 11, 12, 13]
    naive = (T0 + timedelta(seconds=12)).replace(tzinfo=None)  # naive times are UTC
    assert [e["seq"] for e in await store.list_events(since=naive)] == [12, 13]
    assert [e["seq"] for e in await store.list_events(limit=3)] == [11, 12, 13]  # the newest, oldest first
    assert [e["seq"] for e in await store.list_events(server="blog", limit=2)] == [9, 11]
    assert await store.list_events(server="nobody") == []


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


async def test_connect_fails_clearly_when_nothing_listens(tmp_path: Path) -> None:
    from psycopg_pool import PoolTimeout

    with pytest.raises(PoolTimeout):
        await open_pool(f"host={tmp_path} port=1 dbname=x connect_timeout=1", "x", timeout=1.0)


async def test_search_path_is_the_schema(store: Store, schema_name: str) -> None:
    async with store.pool.connection() as conn:
        cur = await conn.execute(sql.SQL("SELECT current_schema()"))
        assert (await cur.fetchone()) == (schema_name,)


def minute_op(server: str, minute: datetime, checks: int, failures: int = 0, latencies: tuple[float, ...] = (),
              run: str = "r1") -> Op:
    """A health_minute op as reconciler/engine/checklog.py writes it."""
    return {"op": "health_minute", "server": server, "minute": minute.isoformat(), "checks": checks,
            "failures": failures, "timed": len(latencies), "latency_min": min(latencies, default=None),
            "latency_avg": sum(latencies) / len(latencies) if latencies else None,
            "latency_max": max(latencies, default=None), "last_at": minute.isoformat(), "run": run,
            "at": minute.isoformat()}


async def test_rollup_keeps_hourly_figures_and_drops_old_minutes(store: Store) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ops: list[Op] = []
    for minutes in range(0, 50, 10):  # five minutes in the last hour, 6 checks each, one failed in one
        at = now - timedelta(minutes=minutes)
        ops.append(minute_op("web", at, 6, int(minutes == 20), (10.0 + minutes,)))
        ops.append({"op": "resource", "server": "web", "cpu_percent": 2.0, "rss_bytes": 1000, "at": at.isoformat()})
    ops.append({"op": "health", "server": "web", "ok": False, "latency_ms": None, "error": "refused",
                "at": (now - timedelta(minutes=20, seconds=-5)).isoformat()})
    old = now - timedelta(hours=72)  # past the retention of minutes
    ops.append(minute_op("web", old, 6, 0, (1.0,)))
    await store.apply(ops)
    await store.rollup()
    await store.rollup()  # idempotent: the recent hours are recomputed, not added twice
    checks = await rows(store, "SELECT sum(checks), sum(ok) FROM health_hourly")
    assert checks == [(30, 29)]
    assert await rows(store, "SELECT count(*) FROM health_minutes") == [(5,)]
    assert await rows(store, "SELECT count(*) FROM health_changes") == [(1,)]  # changes are kept like the hourly
    assert await rows(store, "SELECT sum(samples), max(rss_max) FROM resource_hourly") == [(5, 1000)]
    up = await store.uptime()  # the share of passed checks: the same whether each check was a row or not
    assert up == {"web": {"24h": 96.667, "7d": 96.667, "30d": 96.667}}
    series = await store.series("web", now - timedelta(hours=1, minutes=1), hourly=False)
    # each minute's response time, oldest first, and a gap (None) where it went down
    assert [p["latency_ms"] for p in series["health"]] == [50.0, 40.0, 30.0, None, 20.0, 10.0]
    assert len(series["resource"]) == 5
    hourly = await store.series("web", now - timedelta(days=7), hourly=True)
    assert sum(p["checks"] for p in hourly["health"]) == 30


async def test_a_minute_two_runs_counted_adds_up_and_a_replay_lands_once(store: Store) -> None:
    minute = T0.replace(second=0)
    first = minute_op("web", minute, 3, 1, (2.0, 4.0), run="a")
    second = minute_op("web", minute, 2, 0, (9.0,), run="b")
    await store.apply([first])
    await store.apply([first])  # the same run's minute again (a replay from the journal)
    await store.apply([second])  # the gateway restarted within the minute
    await store.apply([second])
    assert await rows(store, "SELECT checks, failures, timed, latency_min, latency_avg, latency_max, run"
                             " FROM health_minutes") == [(5, 1, 3, 2.0, 5.0, 9.0, "b")]
    # a beat of minutes for many servers is one statement with the same rules
    batch = [minute_op(f"s{i}", minute, 6, i % 2, (float(i),)) for i in range(3)]
    await store.apply(batch)
    await store.apply(batch)
    assert await rows(store, "SELECT server, checks, failures, latency_avg FROM health_minutes WHERE server <> 'web'"
                             " ORDER BY server") == [("s0", 6, 0, 0.0), ("s1", 6, 1, 1.0), ("s2", 6, 0, 2.0)]


async def test_a_beat_of_samples_goes_as_one_statement_and_lands_once(store: Store) -> None:
    """A run of samples is one insert of arrays (queries.BULK); None stays NULL, errors keep their
    words, and the same batch written again (a replay after a cut) adds nothing."""
    at = [(T0 + timedelta(seconds=i)).isoformat() for i in range(3)]
    batch = [
        {"op": "health", "at": at[0], "server": "a", "ok": True, "latency_ms": None, "error": None},
        {"op": "health", "at": at[1], "server": "a", "ok": False, "latency_ms": None, "error": "refused, it said"},
        {"op": "health", "at": at[0], "server": "b", "ok": True, "latency_ms": 0.25, "error": None},
        {"op": "resource", "at": at[0], "server": "a", "cpu_percent": None, "rss_bytes": None},
        {"op": "resource", "at": at[2], "server": "a", "cpu_percent": 12.5, "rss_bytes": 2**40},
    ]
    await store.apply(batch)
    await store.apply(batch)
    assert await rows(store, "SELECT server, ok, latency_ms, error FROM health_changes ORDER BY server, at") == [
        ("a", True, None, None), ("a", False, None, "refused, it said"), ("b", True, 0.25, None)]
    assert await rows(store, "SELECT cpu_percent, rss_bytes FROM resource_samples ORDER BY at") == [
        (None, None), (12.5, 2**40)]


async def test_the_checks_kept_before_become_minutes_and_changes(pg_dsn: str, schema_name: str,
                                                                 tmp_path: Path) -> None:
    """Migration 0027 on a database written by the gateway before it: every raw check row is
    counted in its minute, and only the rows where the result changed stay, as health_changes."""
    import shutil

    from reconciler.store.db import MIGRATIONS

    for m in migrations():
        if m.version < 27:
            shutil.copy(m.path, tmp_path / m.path.name)
    checks = [(0, True, 3.0, None), (10, True, None, None), (20, False, None, "refused"),
              (30, False, None, "refused"), (40, False, None, "timed out"), (50, True, 5.0, None),
              (70, True, 4.0, None)]
    try:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await migrate(conn, schema_name, tmp_path)
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_name)))
            for seconds, ok, latency, error in checks:
                await conn.execute("INSERT INTO health_samples (at, server, ok, latency_ms, error)"
                                   " VALUES (%s, 'web', %s, %s, %s)", (T0 + timedelta(seconds=seconds), ok, latency,
                                                                      error))
            assert await migrate(conn, schema_name, MIGRATIONS) == [m.version for m in migrations() if m.version >= 27]
            cur = await conn.execute("SELECT extract(epoch FROM at - %s)::int, ok, error FROM health_changes"
                                     " ORDER BY at", (T0,))
            assert await cur.fetchall() == [(0, True, None), (20, False, "refused"), (40, False, "timed out"),
                                            (50, True, None)]
            cur = await conn.execute("SELECT extract(epoch FROM minute - %s)::int, checks, failures, timed,"
                                     " latency_min, latency_max, extract(epoch FROM last_at - %s)::int"
                                     " FROM health_minutes ORDER BY minute", (T0, T0))
            assert await cur.fetchall() == [(0, 6, 3, 2, 3.0, 5.0, 50), (60, 1, 0, 1, 4.0, 4.0, 70)]
    finally:
        await drop_schema(pg_dsn, schema_name)
