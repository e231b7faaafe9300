"""Server-rendered SVG charts: samples -> plain numbers a template draws as a polyline.
No I/O; gaps (missing samples, failed checks) break the line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

WIDTH, HEIGHT, PAD = 600, 120, 4
RANGES = {"1h": (timedelta(hours=1), False), "24h": (timedelta(hours=24), False), "7d": (timedelta(days=7), True)}


def _ts(value: datetime | str) -> float:
    return (value if isinstance(value, datetime) else datetime.fromisoformat(str(value))).timestamp()


def chart(rows: Sequence[dict[str, Any]], key: str, since: datetime, until: datetime, title: str, unit: str,
          scale: float = 1.0) -> dict[str, Any]:
    """{title, unit, lines: ["x,y x,y", ...], latest, peak, empty} for one series of `rows`."""
    t0, t1 = since.timestamp(), until.timestamp()
    span = max(t1 - t0, 1.0)
    values = [(_ts(r["at"]), None if r.get(key) is None else float(r[key]) * scale) for r in rows]
    present = [v for _, v in values if v is not None]
    peak = max(present, default=0.0)
    top = nice_top(peak)
    lines: list[str] = []
    current: list[str] = []
    gap = span / 60  # a hole longer than this many seconds breaks the line
    last_t: float | None = None
    for t, v in values:
        if v is None or (last_t is not None and t - last_t > max(gap, 30.0) and current):
            if current:
                lines.append(_segment(current))
            current = []
        if v is not None:
            x = PAD + (t - t0) / span * (WIDTH - 2 * PAD)
            y = HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD)
            current.append(f"{x:.1f},{y:.1f}")
        last_t = t
    if current:
        lines.append(_segment(current))
    return {"title": title, "unit": unit, "lines": lines, "latest": present[-1] if present else None,
            "peak": peak if present else None, "empty": not present, "width": WIDTH, "height": HEIGHT,
            "y_labels": [f"{_num(top * f)} {unit}" for f in (1.0, 0.5, 0.0)], "x_labels": time_labels(since, until),
            "since_label": _clock(since, span), "first_sample": _clock(datetime.fromtimestamp(values[0][0]).astimezone(), span)
            if values else None}


def _segment(points: list[str]) -> str:
    """A polyline's points; a lone sample becomes a short flat mark so it shows."""
    if len(points) > 1:
        return " ".join(points)
    x, y = points[0].split(",")
    return f"{max(0.0, float(x) - 2):.1f},{y} {min(float(WIDTH), float(x) + 2):.1f},{y}"


def nice_top(peak: float) -> float:
    """The chart's top: a round number at or above 110 % of the peak (1, 2, 2.5, 5 x 10^n)."""
    want = peak * 1.1
    if want <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(want))
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= want:
            return m * step
    return 10 * step  # pragma: no cover - the loop always returns


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}".rstrip("0").rstrip(".")


def _clock(at: datetime, span: float) -> str:
    local = at.astimezone()
    return local.strftime("%a %H:%M") if span > 86400 else local.strftime("%H:%M")


def time_labels(since: datetime, until: datetime, count: int = 4) -> list[str]:
    """`count` evenly spaced times from `since` to `until` on the laptop's clock ("14:02",
    "Mon 14:02" for a week): the whole range asked, however young the data."""
    span = (until - since).total_seconds()
    return [_clock(since + (until - since) * (i / (count - 1)), span) for i in range(count)]


def server_charts(series: dict[str, list[dict[str, Any]]], since: datetime, until: datetime) -> list[dict[str, Any]]:
    health, resource = series.get("health", []), series.get("resource", [])
    return [
        chart(health, "latency_ms", since, until, "Response time", "ms"),
        chart(resource, "cpu_percent", since, until, "CPU", "%"),
        chart(resource, "rss_bytes", since, until, "Memory", "MB", scale=1 / 2**20),
    ]
