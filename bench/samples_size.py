"""What a year of samples costs on disk, at the default rates and retention, and what one
server's health history costs per month, before and after issue 27.

Fills a fresh schema with what N servers leave behind at steady state: the hourly rollups of
400 days (the retention), 26 hours of raw CPU/RSS and host figures every 10 s, 26 hours of health
minutes (one row per server per minute) and 30 days of health changes (`--changes-per-day` per
server). For the "before", the same schema gets the table every check was a row of until issue 27
(`health_samples`, as 0001_init.sql made it): 26 hours of a check every 10 s. Prints each table's
size with its indexes, and per server: its health history on disk, and what a month of checks
writes.

    python bench/samples_size.py [--servers 50] [--changes-per-day 10] [--dsn DSN]

Uses GATEWAY_DSN / --dsn, else an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.store import Store  # noqa: E402
from reconciler.store.embedded import EmbeddedPostgres  # noqa: E402

HOURS = "generate_series(date_trunc('hour', now()) - interval '400 days', now(), interval '1 hour') h"
FILL = [
    ("health_hourly", "INSERT INTO health_hourly SELECT 's' || s, h, 360, 359, 3.5, 40"
                      f" FROM generate_series(1, %(n)s) s, {HOURS}"),
    ("resource_hourly", "INSERT INTO resource_hourly SELECT 's' || s, h, 720, 1.5, 30, 40000000, 52000000"
                        f" FROM generate_series(1, %(n)s) s, {HOURS}"),
    ("health_minutes", "INSERT INTO health_minutes SELECT 's' || s, t, 6, 0, 1, 3.2, 3.2, 3.2, t + interval '53 s',"
                       " 'a1b2c3d4e5f6' FROM generate_series(1, %(n)s) s,"
                       " generate_series(date_trunc('minute', now()) - interval '26 hours', now(), interval '1 minute') t"),
    ("health_changes", "INSERT INTO health_changes SELECT t + s * interval '1 ms', 's' || s, (k %% 2) = 0,"
                       " CASE WHEN (k %% 2) = 0 THEN 3.2 END, CASE WHEN (k %% 2) = 1 THEN 'connection refused' END"
                       " FROM generate_series(1, %(n)s) s, generate_series(0, 30 * %(changes)s - 1) k,"
                       " LATERAL (SELECT now() - interval '30 days' + k * interval '1 day' / %(changes)s AS t) x"),
    ("resource_samples", "INSERT INTO resource_samples SELECT t, 's' || s, 1.2, 41000000"
                         " FROM generate_series(1, %(n)s) s,"
                         " generate_series(now() - interval '26 hours', now(), interval '10 seconds') t"),
    ("host_samples", "INSERT INTO host_samples SELECT t, 12, 40, 60, 50000000000, 80, true, true"
                     " FROM generate_series(now() - interval '26 hours', now(), interval '10 seconds') t"),
]
# before issue 27: a row per check (0001_init.sql), kept 26 h
BEFORE = ("CREATE TABLE health_samples (at timestamptz NOT NULL, server text NOT NULL, ok boolean NOT NULL,"
          " latency_ms real, error text, PRIMARY KEY (server, at)); CREATE INDEX health_samples_at ON health_samples (at)",
          "INSERT INTO health_samples SELECT t, 's' || s, true, 3.2, NULL FROM generate_series(1, %(n)s) s,"
          " generate_series(now() - interval '26 hours', now(), interval '10 seconds') t")
MONTH_CHECKS = 30 * 24 * 360  # a check every 10 s
MONTH_MINUTES = 30 * 24 * 60


async def measure(dsn: str, servers: int, changes: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = await Store.connect(dsn, schema)
    try:
        total = 0
        sizes: dict[str, tuple[int, int]] = {}  # table -> (rows, bytes)
        print(f"{'table':18} {'rows':>10} {'MB':>8}")
        async with store.pool.connection() as conn:
            await conn.execute(BEFORE[0])  # type: ignore[arg-type]
            for table, query in [*FILL, ("health_samples", BEFORE[1])]:
                started = time.perf_counter()
                await conn.execute(query, {"n": servers, "changes": changes})  # type: ignore[arg-type]
                await conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
                rows = (await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone())[0]  # type: ignore
                size = (await (await conn.execute(  # type: ignore[index]
                    "SELECT pg_total_relation_size(%s)", (f"{schema}.{table}",))).fetchone())[0]
                sizes[table] = (rows, size)
                total += size if table != "health_samples" else 0
                print(f"{table:18} {rows:>10} {size / 2**20:>8.1f}   ({time.perf_counter() - started:.1f} s to fill)"
                      + ("   (before issue 27; not in the total)" if table == "health_samples" else ""))
            started = time.perf_counter()
            await store.rollup()
            print(f"one rollup pass over this data: {(time.perf_counter() - started) * 1000:.0f} ms")
        print(f"total for {servers} servers: {total / 2**20:.0f} MB "
              "(400 days of hourly rollups, 26 h of raw figures and health minutes, 30 days of health changes)")

        def per_row(table: str) -> float:
            rows, size = sizes[table]
            return size / rows

        hourly_month = per_row("health_hourly") * 30 * 24
        before = sizes["health_samples"][1] / servers + hourly_month
        after = (sizes["health_minutes"][1] + sizes["health_changes"][1]) / servers + hourly_month
        print(f"one server's health history on disk (26 h of detail, a month of hourly rollups, a month of changes):"
              f" before {before / 2**20:.2f} MB, after {after / 2**20:.2f} MB ({after / before:.2f}x)")
        written_before = per_row("health_samples") * MONTH_CHECKS
        written_after = per_row("health_minutes") * MONTH_MINUTES + per_row("health_changes") * 30 * changes
        print(f"one server's month of checks (every 10 s) as written (rows with their indexes, before they are"
              f" rolled up and deleted): before {MONTH_CHECKS} rows, {written_before / 2**20:.1f} MB;"
              f" after {MONTH_MINUTES + 30 * changes} rows, {written_after / 2**20:.1f} MB"
              f" ({written_after / written_before:.2f}x)")
    finally:
        await store.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--changes-per-day", type=int, default=10, help="health changes per server per day")
    ap.add_argument("--dsn", default=os.environ.get("GATEWAY_DSN"))
    args = ap.parse_args()
    if args.dsn:
        asyncio.run(measure(args.dsn, args.servers, args.changes_per_day))
        return
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp))
        try:
            asyncio.run(measure(pg.start(), args.servers, args.changes_per_day))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
