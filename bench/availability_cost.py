"""What the availability figures cost (reconciler/store/availability.py): the rollup task computes
them every minute for every server (24 h, 7 d, 30 d and the month, dark hours counted).

Fills a fresh schema with 400 days of hourly rollups for N servers and a month of dark periods
(a night asleep every day, an afternoon off every week), then times `Store.availability`:

    python bench/availability_cost.py [--servers 50] [--dsn DSN] [--rounds 20]

Uses GATEWAY_DSN / --dsn, else an embedded PostgreSQL in a temporary folder. Prints the median
and the slowest of the rounds, and one server's month, so the figure is seen to count the dark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.platform.aio import run  # noqa: E402
from reconciler.store import Store  # noqa: E402
from reconciler.store.embedded import EmbeddedPostgres  # noqa: E402

HOURLY = ("INSERT INTO health_hourly SELECT 's' || s, h, 360, 359, 3.5, 40 FROM generate_series(1, %(n)s) s,"
          " generate_series(date_trunc('hour', now()) - interval '400 days', now(), interval '1 hour') h")


def darks(servers: int, now: datetime) -> list[dict[str, object]]:
    public = {f"s{i}": 10.0 for i in range(1, servers + 1, 2)}  # every other server has a public address
    out = []
    for day in range(35):
        night = now - timedelta(days=day, hours=8)
        spans = [(night, night + timedelta(minutes=42), "asleep")]
        if day % 7 == 3:
            spans.append((night - timedelta(hours=6), night - timedelta(hours=3), "off"))
        for since, until, cause in spans:
            out.append({"op": "event", "id": str(uuid.uuid4()), "seq": int(until.timestamp() * 1e6),
                        "at": until.isoformat(), "server": None, "kind": "dark", "reason": "bench",
                        "detail": {"since": since.isoformat(), "until": until.isoformat(), "cause": cause,
                                   "servers": public}})
    return out


async def measure(dsn: str, servers: int, rounds: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = await Store.connect(dsn, schema)
    try:
        async with store.pool.connection() as conn:
            await conn.execute(HOURLY, {"n": servers})
            await conn.execute("VACUUM ANALYZE health_hourly")
        periods = darks(servers, datetime.now(UTC))
        await store.apply(periods)  # type: ignore[arg-type]
        beats = {f"s{i}": 10.0 for i in range(1, servers + 1)}
        took, before = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            figures = await store.availability(beats)
            took.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await store.uptime()  # what the rollup task computed before: passed checks only, 3 windows
            before.append((time.perf_counter() - started) * 1000)
        print(f"{servers} servers, 400 days of hourly rollups, {len(periods)} dark periods: "
              f"availability in {statistics.median(took):.1f} ms (median of {rounds}), slowest {max(took):.1f} ms; "
              f"the check-only figure it replaces: {statistics.median(before):.1f} ms")
        print("s1 (public):", json.dumps({k: figures["s1"][k] for k in ("24h", "7d", "30d", "month")}),
              "dark this month:", json.dumps(figures["s1"]["dark"]["month"]))
        print("s2 (local): ", json.dumps({k: figures["s2"][k] for k in ("24h", "7d", "30d", "month")}))
    finally:
        await store.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dsn", default=os.environ.get("GATEWAY_DSN"))
    args = ap.parse_args()
    if args.dsn:
        run(measure(args.dsn, args.servers, args.rounds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp))
        try:
            run(measure(pg.start(), args.servers, args.rounds))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
