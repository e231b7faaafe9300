"""PostgreSQL for tests (psycopg's fix_db.py shape): one server per session, a fresh schema per test.

`pg_dsn` is GATEWAY_TEST_DSN when set, else a private embedded server started for the session
(a missing PostgreSQL means "start the embedded one", never "skip"). `store` is a migrated Store
in a random schema, dropped afterwards. `private_pg` is a test's own embedded server, for tests
that stop and start the database (an outage) without disturbing the shared one: more reliable
than a TCP proxy, as the embedded server has no TCP listener on POSIX. Also: small helpers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from reconciler.store import Op, Store
from reconciler.store.embedded import EmbeddedPostgres

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def event(seq: int, server: str | None = "blog", kind: str = "transition", **kw: Any) -> Op:
    """An event op as the loop puts it, `seq` seconds after T0."""
    at = (T0 + timedelta(seconds=seq)).isoformat()
    return {"op": "event", "id": str(uuid.uuid4()), "seq": seq, "at": at, "server": server, "kind": kind,
            "from_phase": "stopped", "to_phase": "starting", "reason": f"r{seq}", "actor": "test",
            "detail": {"n": seq}, **kw}


async def rows(store: Store, query: str) -> list[tuple[Any, ...]]:
    """All rows of a query in the store's schema."""
    async with store.pool.connection() as conn:
        return await (await conn.execute(query)).fetchall()


VERSIONS = "SELECT version, name, applied_at FROM schema_version ORDER BY version"


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = os.environ.get("GATEWAY_TEST_DSN")
    if dsn:
        yield dsn
        return
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    try:
        yield pg.start()
    finally:
        pg.stop()


@pytest.fixture
def schema_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


async def drop_schema(dsn: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def store(pg_dsn: str, schema_name: str) -> AsyncIterator[Store]:
    st = await Store.connect(pg_dsn, schema_name)
    try:
        yield st
    finally:
        await st.close()
        await drop_schema(pg_dsn, schema_name)


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A started embedded server of the test's own; stopped (whatever the test did) at teardown."""
    pg = EmbeddedPostgres(tmp_path / "pgdata-home")
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
