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
            conn.execute("INSERT INTO health_minutes (minute, server, checks, failures, timed, latency_avg, last_at)"
                         " VALUES (%s, 'alpha', 6, 0, 1, %s, %s) ON CONFLICT DO NOTHING", (at, 2.0 + i % 5, at))
            conn.execute("INSERT INTO resource_samples (at, server, cpu_percent, rss_bytes) VALUES"
                         " (%s, 'alpha', %s, %s) ON CONFLICT DO NOTHING", (at, 1.5, 30 * 2**20))
    page = http.get("/servers/alpha", params={"range": "1h"}).text
    assert page.count('<polyline class="line"') >= 3
    assert "Memory: now 30.0 MB" in page
    assert "Response time: now" in page
    week = http.get("/servers/alpha", params={"range": "7d"})
    assert week.status_code == 200 and 'aria-current="page">7d' in week.text


def test_labels_cover_the_range_asked_even_with_young_data() -> None:
    from webview.charts import nice_top, time_labels

    until = T0 + timedelta(hours=24)
    rows = [{"at": until - timedelta(minutes=2), "v": 3.0}, {"at": until, "v": 4.0}]  # two minutes of data
    c = chart(rows, "v", T0, until, "CPU", "%")
    assert c["x_labels"] == time_labels(T0, until) and len(c["x_labels"]) == 4
    assert c["x_labels"][0] == T0.astimezone().strftime("%H:%M") and c["x_labels"][-1] == until.astimezone().strftime("%H:%M")
    assert c["y_labels"] == ["5 %", "2.5 %", "0 %"]
    xs = [float(p.split(",")[0]) for line in c["lines"] for p in line.split()]
    assert min(xs) > WIDTH * 0.99  # drawn at the right end of the day, not stretched across it
    assert [nice_top(v) for v in (0, 0.8, 9.5, 20, 95)] == [1.0, 1.0, 20, 25, 200]
    week = time_labels(T0, T0 + timedelta(days=7))
    assert len(week[0].split()) == 2  # "Tue 10:00": a day name on a week's chart
