"""Server-rendered SVG charts: samples -> plain numbers a template draws as a polyline.
No I/O; gaps (missing samples, failed checks) break the line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

WIDTH, HEIGHT, PAD = 600, 120, 4
RANGES = {"1h": (timedelta(hours=1), False), "24h": (timedelta(hours=24), False), "7d": (timedelta(days=7), True)}


def _ts(value: Any) -> float:
    return (value if isinstance(value, datetime) else datetime.fromisoformat(str(value))).timestamp()


def chart(rows: Sequence[dict[str, Any]], key: str, since: datetime, until: datetime, title: str, unit: str,
          scale: float = 1.0) -> dict[str, Any]:
    """{title, unit, lines: ["x,y x,y", ...], latest, peak, empty} for one series of `rows`."""
    t0, t1 = since.timestamp(), until.timestamp()
    span = max(t1 - t0, 1.0)
    values = [(_ts(r["at"]), None if r.get(key) is None else float(r[key]) * scale) for r in rows]
    present = [v for _, v in values if v is not None]
    peak = max(present, default=0.0)
    top = peak * 1.1 or 1.0
    lines: list[str] = []
    current: list[str] = []
    gap = span / 60  # a hole longer than this many seconds breaks the line
    last_t: float | None = None
    for t, v in values:
        if v is None or (last_t is not None and t - last_t > max(gap, 30.0) and current):
            if len(current) > 1:
                lines.append(" ".join(current))
            current = []
        if v is not None:
            x = PAD + (t - t0) / span * (WIDTH - 2 * PAD)
            y = HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD)
            current.append(f"{x:.1f},{y:.1f}")
        last_t = t
    if len(current) > 1:
        lines.append(" ".join(current))
    elif len(current) == 1:  # one sample: a short flat mark so it shows
        x, y = current[0].split(",")
        lines.append(f"{float(x) - 2:.1f},{y} {float(x) + 2:.1f},{y}")
    return {"title": title, "unit": unit, "lines": lines, "latest": present[-1] if present else None,
            "peak": peak if present else None, "empty": not present, "width": WIDTH, "height": HEIGHT}


def server_charts(series: dict[str, list[dict[str, Any]]], since: datetime, until: datetime) -> list[dict[str, Any]]:
    health, resource = series.get("health", []), series.get("resource", [])
    return [
        chart(health, "latency_ms", since, until, "Response time", "ms"),
        chart(resource, "cpu_percent", since, until, "CPU", "%"),
        chart(resource, "rss_bytes", since, until, "Memory", "MB", scale=1 / 2**20),
    ]
