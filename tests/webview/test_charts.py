"""SVG charts: the pure point mapping, and the detail page drawing samples from PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from tests.fix_gateway import Gateway
from webview.charts import HEIGHT, PAD, WIDTH, chart

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_chart_maps_points_and_breaks_at_gaps() -> None:
    rows = [{"at": T0 + timedelta(seconds=s), "v": v} for s, v in
            [(0, 10.0), (60, 20.0), (120, None), (180, 5.0), (240, 5.0), (3000, 8.0)]]
    c = chart(rows, "v", T0, T0 + timedelta(hours=1), "Latency", "ms")
    assert c["peak"] == 20.0 and c["latest"] == 8.0 and not c["empty"]
    assert len(c["lines"]) == 3  # broken by the failed check and by the long hole
    first = [tuple(map(float, p.split(","))) for p in c["lines"][0].split()]
    assert first[0][0] == PAD and abs(first[1][1] - (HEIGHT - PAD - 20.0 / 25.0 * (HEIGHT - 2 * PAD))) < 0.06
    assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for line in c["lines"] for p in line.split()
               for x, y in [map(float, p.split(","))])
    assert chart([], "v", T0, T0 + timedelta(hours=1), "x", "ms")["empty"]


def test_detail_page_draws_samples(web: Gateway, http: httpx.Client) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(web.dsn, options=f"-c search_path={web.schema}", autocommit=True) as conn:
        for i in range(30):
            at = now - timedelta(minutes=29) + timedelta(seconds=60 * i)  # the last one is the newest row: the
            # gateway's own sampler measures alpha too, but its rows are older than `now`
            conn.execute("INSERT INTO health_samples (at, server, ok, latency_ms) VALUES (%s, 'alpha', true, %s)"
                         " ON CONFLICT DO NOTHING", (at, 2.0 + i % 5))
            conn.execute("INSERT INTO resource_samples (at, server, cpu_percent, rss_bytes) VALUES"
                         " (%s, 'alpha', %s, %s) ON CONFLICT DO NOTHING", (at, 1.5, 30 * 2**20))
    page = http.get("/servers/alpha", params={"range": "1h"}).text
    assert page.count('<polyline class="line"') >= 3
    assert "Memory: now 30.0 MB" in page
    assert "Response time: now" in page
    week = http.get("/servers/alpha", params={"range": "7d"})
    assert week.status_code == 200 and 'aria-current="page">7d' in week.text
