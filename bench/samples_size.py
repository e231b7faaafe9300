"""What a year of samples costs on disk, at the default rates and retention.

Fills a fresh schema with what 50 servers leave behind at steady state: the hourly rollups of
400 days (the retention) and 26 hours of raw samples (health, CPU/RSS and
host figures every 10 s), then prints each table's size with indexes.

    python bench/samples_size.py [--servers 50] [--dsn DSN]

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

FILL = [
    ("health_hourly", "INSERT INTO health_hourly SELECT 's' || s, h, 360, 359, 3.5, 40"
                      " FROM generate_series(1, %(n)s) s,"
                      " generate_series(date_trunc('hour', now()) - interval '400 days', now(), interval '1 hour') h"),
    ("resource_hourly", "INSERT INTO resource_hourly SELECT 's' || s, h, 720, 1.5, 30, 40000000, 52000000"
                        " FROM generate_series(1, %(n)s) s,"
                        " generate_series(date_trunc('hour', now()) - interval '400 days', now(), interval '1 hour') h"),
    ("health_samples", "INSERT INTO health_samples SELECT t, 's' || s, true, 3.2, NULL"
                       " FROM generate_series(1, %(n)s) s,"
                       " generate_series(now() - interval '26 hours', now(), interval '10 seconds') t"),
    ("resource_samples", "INSERT INTO resource_samples SELECT t, 's' || s, 1.2, 41000000"
                         " FROM generate_series(1, %(n)s) s,"
                         " generate_series(now() - interval '26 hours', now(), interval '10 seconds') t"),
    ("host_samples", "INSERT INTO host_samples SELECT t, 12, 40, 60, 50000000000, 80, true, true"
                     " FROM generate_series(now() - interval '26 hours', now(), interval '10 seconds') t"),
]


async def measure(dsn: str, servers: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = await Store.connect(dsn, schema)
    try:
        total = 0
        print(f"{'table':18} {'rows':>10} {'MB':>8}")
        async with store.pool.connection() as conn:
            for table, query in FILL:
                started = time.perf_counter()
                await conn.execute(query, {"n": servers})  # type: ignore[arg-type]
                await conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
                rows = (await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone())[0]  # type: ignore
                size = (await (await conn.execute(  # type: ignore[index]
                    "SELECT pg_total_relation_size(%s)", (f"{schema}.{table}",))).fetchone())[0]
                total += size
                print(f"{table:18} {rows:>10} {size / 2**20:>8.1f}   ({time.perf_counter() - started:.1f} s to fill)")
            started = time.perf_counter()
            await store.rollup()
            print(f"one rollup pass over this data: {(time.perf_counter() - started) * 1000:.0f} ms")
        print(f"total for {servers} servers: {total / 2**20:.0f} MB "
              "(400 days of hourly rollups + 26 h of raw samples)")
    finally:
        await store.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--dsn", default=os.environ.get("GATEWAY_DSN"))
    args = ap.parse_args()
    if args.dsn:
        asyncio.run(measure(args.dsn, args.servers))
        return
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp))
        try:
            asyncio.run(measure(pg.start(), args.servers))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
