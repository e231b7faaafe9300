"""Availability: the share of the time a server should have answered in which it did, over the
last 24 h, 7 d, 30 d and this calendar month, against the 99 % an owner can promise. The one
place it is computed. It reads health_hourly, which the rollup sums from the minutes
(reconciler/engine/checklog.py): the same checks as when every check was a row.

How it counts, like Uptime Kuma's UptimeCalculator (server/uptime-calculator.js): every check is a
beat, up or down, summed per bucket (our minutes, then hourly rollups); the figure is up / (up + down). A
server that should run but is down (backoff, error, exited) gets a down beat each sampling round,
and one with no check gets an up beat each round it runs (reconciler/host/sampler.py).

What Uptime Kuma does not count, and this does: the dark hours. While the laptop is off, asleep
or without power nobody checks anything, so there are no beats at all, and a server that nobody
could reach looked 100 % up. Those periods are recorded as `dark` events (reconciler/tunnel/dark.py:
from the gateway's own records, and Cloudflare's view of the tunnel where the token allows),
each naming the servers with a public address that were meant to run and the length of their
beat. Here every such server is charged the beats it would have had: dark seconds / its beat.
Overlapping dark periods are counted once (their union), each second under its first cause.
Local-only servers are not charged: nobody could have used them from outside anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, LiteralString

from reconciler.store.db import rows as read

if TYPE_CHECKING:
    from reconciler.store.db import Pool

PROMISE = 99.0  # percent an owner can hold a server to on a laptop
WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# the first cause wins where dark periods overlap: the gateway's own records before Cloudflare's
CAUSES = ("power", "off", "asleep", "tunnel")
DARK_KIND = "dark"  # EventKind.DARK

_CHECK_SHARES: LiteralString = (
    "SELECT server,"
    " 100.0 * sum(ok) FILTER (WHERE hour >= now() - interval '24 hours')"
    "   / nullif(sum(checks) FILTER (WHERE hour >= now() - interval '24 hours'), 0) AS \"24h\","
    " 100.0 * sum(ok) FILTER (WHERE hour >= now() - interval '7 days')"
    "   / nullif(sum(checks) FILTER (WHERE hour >= now() - interval '7 days'), 0) AS \"7d\","
    " 100.0 * sum(ok) / nullif(sum(checks), 0) AS \"30d\""
    " FROM health_hourly WHERE hour >= now() - interval '30 days' GROUP BY server"
)
# beats per window: 24 h, 7 d, 30 d, and since the start of the month (whichever reaches further back)
_BEATS: LiteralString = (
    "SELECT server,"
    " sum(checks) FILTER (WHERE hour >= %(d1)s) AS checks_24h, sum(ok) FILTER (WHERE hour >= %(d1)s) AS ok_24h,"
    " sum(checks) FILTER (WHERE hour >= %(d7)s) AS checks_7d, sum(ok) FILTER (WHERE hour >= %(d7)s) AS ok_7d,"
    " sum(checks) FILTER (WHERE hour >= %(d30)s) AS checks_30d, sum(ok) FILTER (WHERE hour >= %(d30)s) AS ok_30d,"
    " sum(checks) FILTER (WHERE hour >= %(month)s) AS checks_month,"
    " sum(ok) FILTER (WHERE hour >= %(month)s) AS ok_month"
    " FROM health_hourly WHERE hour >= least(%(d30)s, %(month)s) GROUP BY server"
)
_DARK: LiteralString = (
    "SELECT detail FROM events WHERE kind = 'dark' AND at >= %(since)s ORDER BY at"
)
# the last thing a gateway wrote before `before`: where the previous run ended (or lost power)
_LAST_SEEN: LiteralString = (
    "SELECT greatest((SELECT max(at) FROM events WHERE at < %(before)s),"
    " (SELECT max(at) FROM health_changes WHERE at < %(before)s),"
    " (SELECT max(last_at) FROM health_minutes WHERE last_at < %(before)s),"
    " (SELECT max(at) FROM host_samples WHERE at < %(before)s)) AS at"
)


@dataclass(frozen=True)
class Dark:
    """A period nobody could reach the listed servers: {name: the length of its beat, s}."""

    since: datetime
    until: datetime
    cause: str
    servers: Mapping[str, float]

    @classmethod
    def of(cls, detail: Mapping[str, Any]) -> Dark | None:
        """From a `dark` event's detail; None when it is not one (an old or broken row)."""
        try:
            since, until = _aware(detail["since"]), _aware(detail["until"])
            servers = {str(k): float(v) for k, v in dict(detail.get("servers") or {}).items()}
        except (KeyError, TypeError, ValueError):
            return None
        return cls(since, until, str(detail.get("cause") or "off"), servers) if until > since else None


def _aware(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dark_seconds(darks: Iterable[Dark], server: str, start: datetime, end: datetime) -> dict[str, float]:
    """Pure: seconds of [start, end) during which `server` was dark, by cause; overlapping
    periods once (their union), each second under the first of CAUSES that covers it."""
    spans = sorted(((max(d.since, start), min(d.until, end), _rank(d.cause)) for d in darks
                    if server in d.servers and d.until > start and d.since < end), key=lambda s: s[0])
    edges = sorted({t for a, b, _ in spans for t in (a, b)})
    out: dict[str, float] = {}
    for a, b in zip(edges, edges[1:]):
        covering = [rank for lo, hi, rank in spans if lo <= a and hi >= b]
        if covering:
            cause = CAUSES[min(covering)] if min(covering) < len(CAUSES) else "off"
            out[cause] = out.get(cause, 0.0) + (b - a).total_seconds()
    return out


def _rank(cause: str) -> int:
    return CAUSES.index(cause) if cause in CAUSES else len(CAUSES)


def figure(checks: int, ok: int, beat: float, dark: float) -> tuple[float | None, float]:
    """Pure: (availability %, seconds down) of `checks` beats of which `ok` passed, each `beat`
    seconds long, and `dark` seconds nobody could reach it (charged as beats it would have had)."""
    missed = dark / beat if beat > 0 else 0.0
    total = checks + missed
    pct = None if total <= 0 else round(100.0 * ok / total, 3)
    return pct, round((checks - ok) * beat + dark, 1)


def month_start(now: datetime) -> datetime:
    """The start of the calendar month `now` is in, on `now`'s own clock (the owner's)."""
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_length(now: datetime) -> float:
    """Seconds in the calendar month of `now`."""
    start = month_start(now)
    following = (start + timedelta(days=32)).replace(day=1)
    return (following - start).total_seconds()


async def check_shares(pool: Pool) -> dict[str, dict[str, float | None]]:
    """Per server: the share of passed checks over 24 h, 7 d and 30 d (0-100), dark hours left out."""
    rows = await read(pool, _CHECK_SHARES)
    return {r["server"]: {k: (None if r[k] is None else round(float(r[k]), 3)) for k in ("24h", "7d", "30d")}
            for r in rows}


async def last_seen(pool: Pool, before: datetime) -> datetime | None:
    """When a gateway last wrote anything before `before` (the end of the previous run)."""
    rows = await read(pool, _LAST_SEEN, {"before": before})
    return rows[0]["at"] if rows and rows[0]["at"] is not None else None


async def darks_since(pool: Pool, since: datetime) -> list[Dark]:
    rows = await read(pool, _DARK, {"since": since})  # recorded at (or after) its end: overlaps since
    return [d for d in (Dark.of(r["detail"]) for r in rows) if d is not None]


async def compute(pool: Pool, beats: Mapping[str, float], now: datetime | None = None,
                  promise: float = PROMISE) -> dict[str, dict[str, Any]]:
    """Per server, for 24h, 7d, 30d and "month": the availability %, and the month's seconds down
    (failed beats and dark hours), the seconds the promise allows, and the dark seconds by cause.
    `beats`: each server's beat in seconds now (its check interval, or the sampling round)."""
    now = now or datetime.now(UTC).astimezone()
    starts = {key: now - length for key, length in WINDOWS.items()}
    starts["month"] = month_start(now)
    rows = await read(pool, _BEATS, {"d1": starts["24h"], "d7": starts["7d"], "d30": starts["30d"],
                                      "month": starts["month"]})
    darks = await darks_since(pool, min(starts.values()))
    counted = {r["server"]: r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for server in sorted(set(counted) | {s for d in darks for s in d.servers}):
        row = counted.get(server, {})
        beat = float(beats.get(server) or next((d.servers[server] for d in darks if server in d.servers), 10.0))
        view: dict[str, Any] = {"dark": {}, "down_s": {}}
        for key, start in starts.items():
            dark = dark_seconds(darks, server, start, now)
            pct, down = figure(int(row.get(f"checks_{key}") or 0), int(row.get(f"ok_{key}") or 0), beat,
                               sum(dark.values()))
            view[key] = pct
            view["dark"][key] = {cause: round(s, 1) for cause, s in dark.items()}
            view["down_s"][key] = down
        view["promise"] = promise
        view["month_allowed_s"] = round(month_length(now) * (100.0 - promise) / 100.0, 1)
        out[server] = view
    return out
