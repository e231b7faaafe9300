"""Issue 27: health history as change rows and minutes keeps the meaning of what the page shows.
The same half hour of checks is read the old way (a row per check: what the chart drew and
availability counted) and the new way (reconciler/engine/checklog.py -> PostgreSQL -> the rollup, the
chart's series), against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.engine.checklog import CheckLog
from reconciler.store import Store
from webview.charts import chart


def half_hour(now: datetime) -> list[tuple[datetime, bool, float | None, str | None]]:
    """A check every 10 s for 30 minutes; down (refused) from minute 10 to minute 14."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=31)
    out = []
    for i in range(180):
        at = start + timedelta(seconds=10 * i + 3)
        down = 60 <= i < 90
        out.append((at, not down, None if down else 5.0 + (i % 7) * 2.0, "refused" if down else None))
    return out


async def test_chart_and_availability_read_the_same_from_minutes_as_from_every_check(store: Store) -> None:
    now = datetime.now(UTC)
    checks = half_hour(now)
    ops: list[dict[str, Any]] = []
    log = CheckLog(ops.append)
    for at, ok, latency, error in checks:
        log.check("web", ok, latency, error, at)
    log.flush(now, everything=True)
    assert len(ops) < len(checks) / 5  # 31 minutes and 3 changes instead of 180 rows
    await store.apply(ops)
    await store.rollup()

    # availability: the share of passed checks, exactly as when every check was a row
    share = round(100.0 * sum(1 for c in checks if c[1]) / len(checks), 3)
    up = await store.uptime()
    assert up["web"]["24h"] == share == 83.333
    figures = await store.availability({"web": 10.0})
    assert figures["web"]["24h"] == share and figures["web"]["down_s"]["24h"] == 30 * 10.0

    # the response-time chart: one line before the outage and one after, as the rows drew it, its
    # values within what the checks measured
    since = now - timedelta(hours=1)
    old = chart([{"at": at, "latency_ms": latency} for at, _, latency, _ in checks], "latency_ms", since, now,
                "Response time", "ms")
    series = await store.series("web", since, hourly=False)
    new = chart(series["health"], "latency_ms", since, now, "Response time", "ms")
    assert len(old["lines"]) == len(new["lines"]) == 2
    measured = [c[2] for c in checks if c[2] is not None]
    assert min(measured) <= new["peak"] <= max(measured) and new["latest"] is not None

    def xs(line: str) -> list[float]:
        return [float(p.split(",")[0]) for p in line.split()]

    # the gap is where the server was down: it ends where the old gap ends, give or take a minute
    minute_px = 60 / 3600 * (600 - 8)
    assert abs(xs(new["lines"][1])[0] - xs(old["lines"][1])[0]) <= minute_px + 0.1
    assert xs(new["lines"][0])[-1] <= xs(old["lines"][0])[-1]
    # the week's chart (hourly rollups) counts every check
    hourly = await store.series("web", now - timedelta(days=7), hourly=True)
    assert sum(p["checks"] for p in hourly["health"]) == len(checks)
