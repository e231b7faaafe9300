"""Availability with the dark hours counted (reconciler/store/availability.py): the union of dark
periods by cause, beats charged for them, the month against the 99 % promise; on a real
PostgreSQL (hourly rollups and `dark` events as the gateway writes them); and Cloudflare's view of
the tunnel (reconciler/tunnel/dark.py) against the local stand-in of its API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.spec import ServerSpec
from reconciler.store import Op, Store
from reconciler.store.availability import Dark, dark_seconds, figure, month_length, month_start
from reconciler.tunnel.cfapi import CloudflareError
from reconciler.tunnel.dark import cloudflare_span, public_beats
from tests.tunnel.fake_cloudflare import FakeCloudflare

T = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


def dark(start_min: float, end_min: float, cause: str, servers: dict[str, float] | None = None) -> Dark:
    return Dark(T + timedelta(minutes=start_min), T + timedelta(minutes=end_min), cause,
                servers if servers is not None else {"shop": 10.0})


def test_overlapping_dark_periods_count_once_under_the_first_cause() -> None:
    darks = [dark(0, 42, "asleep"), dark(40, 50, "tunnel"), dark(100, 280, "off"), dark(270, 290, "tunnel"),
             dark(0, 600, "off", {"blog": 10.0})]  # another server's
    seen = dark_seconds(darks, "shop", T - timedelta(hours=1), T + timedelta(hours=10))
    # asleep 0-42, then the tunnel's 42-50 (its 40-42 is asleep's); off 100-280, tunnel 280-290
    assert seen == {"asleep": 42 * 60, "tunnel": 18 * 60, "off": 180 * 60}
    # clipped to the window asked for
    assert dark_seconds(darks, "shop", T + timedelta(minutes=30), T + timedelta(minutes=45)) == {
        "asleep": 12 * 60, "tunnel": 3 * 60}
    assert dark_seconds(darks, "local", T, T + timedelta(hours=10)) == {}


def test_dark_time_is_charged_as_the_beats_it_would_have_had() -> None:
    # 24 h of 10 s checks, all passed, but 42 min asleep and 3 h off: 12.9 % of the day unreachable
    checks = (24 * 3600 - (42 * 60 + 3 * 3600)) // 10
    pct, down = figure(checks, checks, 10.0, 42 * 60 + 3 * 3600)
    assert pct == pytest.approx(100 * (1 - (42 * 60 + 3 * 3600) / 86400), abs=0.001)
    assert down == 42 * 60 + 3 * 3600
    assert figure(100, 99, 10.0, 0.0) == (99.0, 10.0)  # one failed check: its beat is the time down
    assert figure(0, 0, 10.0, 0.0) == (None, 0.0)  # nothing known: no figure, not 0 %
    assert figure(0, 0, 10.0, 600.0) == (0.0, 600.0)  # dark all along: 0 %


def test_the_month_is_the_owner_s_calendar_month() -> None:
    assert month_start(datetime(2026, 12, 10, 12, 0, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)
    assert month_length(datetime(2026, 2, 10, tzinfo=UTC)) == 28 * 86400
    assert month_length(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == 31 * 86400  # 1 % of it: 7 h 26 min


def test_only_public_servers_meant_to_run_are_charged() -> None:
    def spec(name: str, **kw: object) -> ServerSpec:
        return ServerSpec.model_validate({"name": name, "command": ["x"], **kw})

    specs = {"shop": spec("shop", port="auto", domain={"hostname": "shop.example.com"}),
             "slow": spec("slow", port="auto", domain={"hostname": "slow.example.com"},
                          health={"type": "http", "interval": "30s"}),
             "bot": spec("bot", domain={"hostname": "bot.example.com"}, health={"type": "running"}),
             "parked": spec("parked", domain={"hostname": "p.example.com"}, enabled=False),
             "paused": spec("paused", domain={"hostname": "q.example.com"}),
             "local": spec("local", port="auto")}
    beats = public_beats(specs, {"paused": "stop"}, sample_every=10.0, kept=())
    assert beats == {"bot": 10.0, "shop": 10.0, "slow": 30.0}  # a beat: its check's interval, or the round
    assert public_beats(specs, {}, 10.0, kept=["shop"]).keys() == {"bot", "paused", "slow"}


def _hourly(store_rows: list[tuple[str, datetime, int, int]]) -> str:
    return "INSERT INTO health_hourly (server, hour, checks, ok) VALUES " + ", ".join(
        f"('{s}', '{h.isoformat()}', {c}, {o})" for s, h, c, o in store_rows)


def _dark_op(since: datetime, until: datetime, cause: str, servers: dict[str, float]) -> Op:
    return {"op": "event", "id": str(uuid.uuid4()), "seq": int(until.timestamp() * 1000), "at": until.isoformat(),
            "server": None, "kind": "dark", "reason": "test", "detail": {
                "since": since.isoformat(), "until": until.isoformat(), "cause": cause, "servers": servers}}


async def test_a_public_server_s_month_counts_the_dark_hours_a_local_one_s_does_not(store: Store) -> None:
    now = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
    hours = [now - timedelta(hours=h) for h in range(1, 24 * 12)]  # twelve days of hourly rollups
    async with store.pool.connection() as conn:
        await conn.execute(_hourly([(s, h, 360, 360) for s in ("shop", "local") for h in hours]))  # all passed
    both = {"shop": 10.0}
    await store.apply([_dark_op(now - timedelta(hours=5), now - timedelta(hours=5) + timedelta(minutes=42),
                                "asleep", both),
                       _dark_op(now - timedelta(days=3, hours=3), now - timedelta(days=3), "off", both),
                       _dark_op(now - timedelta(days=20), now - timedelta(days=19), "power", both)])  # last month
    got = await store.availability({"shop": 10.0, "local": 10.0}, now=now)
    shop, local = got["shop"], got["local"]
    assert local["24h"] == local["month"] == 100.0 and local["dark"]["month"] == {}
    assert shop["dark"]["24h"] == {"asleep": 42 * 60.0}
    assert shop["dark"]["month"] == {"asleep": 42 * 60.0, "off": 3 * 3600.0}
    assert shop["dark"]["30d"] == {"asleep": 42 * 60.0, "off": 3 * 3600.0, "power": 86400.0}
    assert shop["24h"] == round(100 * 24 * 360 / (24 * 360 + 42 * 6), 3)  # hours from now - 24 h on
    month_checks = (9 * 24 + 12) * 360  # the hours from Dec 1 00:00 to the one of 11:00 on the 10th
    assert shop["month"] == round(100 * month_checks / (month_checks + (42 * 60 + 3 * 3600) / 10), 3)
    assert shop["down_s"]["month"] == 42 * 60 + 3 * 3600  # every check passed: the dark hours alone
    assert shop["month_allowed_s"] == round(31 * 86400 * 0.01, 1) and shop["promise"] == 99.0
    # the old figure, for comparison: passed checks only, the dark hours charged to nobody
    assert (await store.uptime())["shop"]["24h"] == 100.0


async def test_cloudflare_s_view_of_the_tunnel_where_the_token_allows() -> None:
    with FakeCloudflare() as cf:
        account = cf.add_account()
        tunnel = cf.add_tunnel(account, "laptop")
        since, until = datetime.now(UTC) - timedelta(minutes=40), datetime.now(UTC) - timedelta(seconds=2)

        # the tunnel came back after the gateway did: the wait for it is Cloudflare's to tell
        back = until + timedelta(seconds=20)
        cf.connector(tunnel, True, back.isoformat().replace("+00:00", "Z"))
        assert await cloudflare_span(cf.url, cf.token, account, tunnel, since=since, until=until) == (until, back)

        # still down when asked: from when the edge lost it, until the connector is back
        lost = since - timedelta(minutes=3)  # before the gateway's own last record (a power cut)
        cf.connector(tunnel, False, lost.isoformat())

        async def reconnect() -> datetime:
            await asyncio.sleep(0.3)
            again = datetime.now(UTC).replace(microsecond=0)
            cf.connector(tunnel, True, again.isoformat())
            return again

        later = asyncio.ensure_future(reconnect())
        span = await cloudflare_span(cf.url, cf.token, account, tunnel, since=since, until=until, every=0.1)
        assert span == (lost, await later)

        # connected all along (a short sleep Cloudflare did not notice): nothing to add
        cf.connector(tunnel, True, (since - timedelta(days=2)).isoformat())
        assert await cloudflare_span(cf.url, cf.token, account, tunnel, since=since, until=until) is None

        # a token that may not read tunnels: refused in words, and the caller counts without it
        cf.tokens["dns-only"] = {"zone", "dns"}
        with pytest.raises(CloudflareError, match="cannot see the tunnels of"):
            await cloudflare_span(cf.url, "dns-only", account, tunnel, since=since, until=until)
