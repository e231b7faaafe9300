"""Connections and schema migrations.

`open_pool` gives an autocommit psycopg pool whose connections work in one schema; `rows`
reads a query's rows from it (the store and each module of its SQL read through it).
`migrate` applies `migrations/NNNN_*.sql` in order, each once and in its own transaction,
recorded in `schema_version`; an advisory lock makes concurrent gateways take turns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")

Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]
CONNECT_TIMEOUT = 3.0  # seconds to wait for a pooled connection (an outage is noticed this fast)


class MigrationError(RuntimeError):
    """The migration files are inconsistent (e.g. two files with one number)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def migrations(folder: Path = MIGRATIONS) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is also {found[version].path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


async def migrate(
    conn: AsyncConnection[Any], schema: str = "gateway", folder: Path = MIGRATIONS
) -> list[int]:
    """Bring `schema` up to date; return the versions applied now (empty when current)."""
    applied: list[int] = []
    for migration in [None, *migrations(folder)]:
        async with conn.transaction():
            await _enter(conn, schema)
            if migration is None:
                continue
            cur = await conn.execute("SELECT 1 FROM schema_version WHERE version = %s", (migration.version,))
            if await cur.fetchone() is not None:
                continue
            await conn.execute(migration.path.read_text(encoding="utf-8"))
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, now())",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied


async def _enter(conn: AsyncConnection[Any], schema: str) -> None:
    """Inside a transaction: take the schema's migration lock and make sure the schema exists."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"omen-gateway migrate {schema}",))
    ident = sql.Identifier(schema)
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
    await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )


async def open_pool(
    dsn: str, schema: str = "gateway", *, timeout: float = 10.0, reconnect_timeout: float = 10.0
) -> Pool:
    """An open pool (1..4 autocommit connections, search_path = schema); raises if the server
    cannot be reached within `timeout` seconds. A short `reconnect_timeout` keeps the pool's own
    reconnection backoff (1 s doubling) from delaying recovery after a long outage: once it gives
    up, the next request starts a fresh attempt."""
    search_path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))

    async def configure(conn: AsyncConnection[Any]) -> None:
        await conn.execute(search_path)

    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in conninfo_to_dict(dsn):
        kwargs["connect_timeout"] = max(1, int(timeout))
    pool: Pool = AsyncConnectionPool(
        dsn, min_size=1, max_size=4, open=False, kwargs=kwargs, configure=configure,
        check=AsyncConnectionPool.check_connection, name=f"gateway-{schema}",
        reconnect_timeout=reconnect_timeout,
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except BaseException:
        await pool.close()
        raise
    return pool


async def rows(pool: Pool, query: LiteralString | sql.Composed, params: dict[str, Any] | None = None
               ) -> list[dict[str, Any]]:
    """The rows of `query`, each a dict, on a connection of `pool`."""
    async with pool.connection(timeout=CONNECT_TIMEOUT) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return await cur.fetchall()
