"""The dark hours: periods in which nobody could reach the servers with a public address because
the laptop was off, without power or asleep. Nothing is checked then, so without a record of its
own such a period counted as nobody's downtime. Each is recorded as one `dark` event naming the
servers it charges (reconciler/store/availability.py counts them):

- at start, the gap since the last thing the previous run wrote: "off" after a clean stop,
  "power" after an unclean one (a power cut, a kill). Servers that were adopted kept running
  through it and are not charged, nor is any server when the tunnel's connector was adopted too;
- on waking (`host_resumed`, reconciler/engine/resume.py), the time asleep ("asleep");
- where the Cloudflare token may read the tunnel (`GET /accounts/A/cfd_tunnel/T`), Cloudflare's
  view after each of those: `conns_inactive_at` (the edge lost the connector) to `conns_active_at`
  (it came back), as a "tunnel" period. It covers what the gateway cannot see of itself: the
  minutes before a power cut it had no time to write, and the wait for the tunnel after a wake.

Charged are the servers with a public address (`[domain]`) that were meant to run: enabled and
not stopped by the owner. A local-only server is not charged: nobody outside could use it anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from reconciler.core.events import EventKind
from reconciler.core.names import CONNECTOR

if TYPE_CHECKING:
    from reconciler.engine.config import LoadResult
    from reconciler.engine.runtime import Runtime
    from reconciler.store import Store
    from reconciler.tunnel.connector import TunnelPlan

log = logging.getLogger("gateway")
MIN_DARK = 5.0  # seconds: shorter gaps (a quick restart) are not recorded
CLOUDFLARE_EVERY = 15.0  # seconds between two looks at the tunnel while it is down
CLOUDFLARE_FOR = 300.0  # seconds to keep looking after a dark period (the network wakes, the tunnel reconnects)
CLOUDFLARE_REACH = timedelta(minutes=15)  # how far before the gateway's own start of a period Cloudflare's may go
WORDS = {"off": "the gateway was off", "power": "the gateway stopped without a clean stop (a power cut or a kill)",
         "asleep": "the laptop was asleep", "tunnel": "Cloudflare saw the tunnel offline"}


def beat_of(spec: Any, sample_every: float) -> float:
    """A server's beat: its check interval, or the sampling round when no check runs while it is up."""
    health = spec.effective_health()
    return float(getattr(health, "interval", sample_every)) if health.type in ("http", "tcp", "command") \
        else sample_every


def public_beats(specs: Mapping[str, Any], intents: Mapping[str, str], sample_every: float,
                 kept: Iterable[str] = ()) -> dict[str, float]:
    """{name: beat} of the servers a dark period charges: a public address, meant to run, and not
    `kept` running through it (adopted after the gap)."""
    kept = set(kept)
    return {name: beat_of(spec, sample_every) for name, spec in sorted(specs.items())
            if spec.domain is not None and spec.enabled and intents.get(name) != "stop" and name not in kept}


def record(rt: Runtime, since: datetime, until: datetime, cause: str, servers: Mapping[str, float],
           seen_by: str = "gateway") -> bool:
    """One `dark` event for [since, until) (nothing when too short or nobody is charged)."""
    seconds = (until - since).total_seconds()
    if seconds < MIN_DARK or not servers:
        return False
    names = ", ".join(servers)
    rt.event(EventKind.DARK, None, f"{WORDS.get(cause, cause)} for {_words(seconds)}: counted as down for {names}",
             detail={"since": since.isoformat(), "until": until.isoformat(), "seconds": round(seconds, 1),
                     "cause": cause, "servers": dict(servers), "seen_by": seen_by})
    return True


def _words(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class DarkHours:
    """The daemon's recorder: the gap before this start, every wake, and Cloudflare's view."""

    def __init__(self, rt: Runtime, store: Store | None, loaded: Callable[[], LoadResult | None],
                 sample_every: Callable[[], float], tunnel: Callable[[], TunnelPlan | None], *,
                 started: datetime, unclean: bool, adopted: Iterable[str]) -> None:
        """`loaded()`: the folder as last loaded; `sample_every()`: the sampling round in s;
        `tunnel()`: the tunnel's plan (its settings say where to ask Cloudflare); `started`: this
        run's start; `unclean`: the previous run ended without a clean stop; `adopted`: the
        servers that kept running through the gap."""
        self.rt, self.store, self.loaded, self.sample_every, self.tunnel = rt, store, loaded, sample_every, tunnel
        self.started, self.unclean, self.adopted = started, unclean, list(adopted)
        self.asking: set[asyncio.Task[None]] = set()

    def servers(self, kept: Iterable[str] = ()) -> dict[str, float]:
        result = self.loaded()
        specs = result.specs if result else {}
        return public_beats(specs, self.rt.intents, self.sample_every(), kept)

    async def run(self) -> None:
        self.rt.subscribe(self._resumed, kinds=[EventKind.HOST_RESUMED])
        try:
            await self.before_start()
        except Exception as exc:  # noqa: BLE001 - the database may be away: the periods after still count
            log.warning("the time the gateway was off could not be worked out: %s", exc)
        await asyncio.Event().wait()  # wakes come through the listener; Cloudflare looks run as tasks

    async def before_start(self) -> None:
        store = self.store
        if store is None:
            return
        last = await store.last_seen(self.started)
        if last is None:
            return  # the first run on this database
        # adopted servers kept running through the gap, and were reachable if the tunnel's
        # connector was kept too (or there is none to lose)
        result = self.loaded()
        tunnel_kept = CONNECTOR in self.adopted or CONNECTOR not in (result.specs if result else {})
        servers = self.servers(self.adopted if tunnel_kept else ())
        if record(self.rt, last, self.started, "power" if self.unclean else "off", servers):
            self.ask_cloudflare(last, self.started, servers)

    def _resumed(self, op: Mapping[str, Any]) -> None:
        seconds = float((op.get("detail") or {}).get("seconds") or 0.0)
        until = datetime.fromisoformat(str(op["at"]))
        servers = self.servers()
        if record(self.rt, until - timedelta(seconds=seconds), until, "asleep", servers):
            self.ask_cloudflare(until - timedelta(seconds=seconds), until, servers)

    def ask_cloudflare(self, since: datetime, until: datetime, servers: Mapping[str, float]) -> None:
        task = asyncio.ensure_future(self._cloudflare(since, until, dict(servers)))
        self.asking.add(task)
        task.add_done_callback(self.asking.discard)

    async def _cloudflare(self, since: datetime, until: datetime, servers: dict[str, float]) -> None:
        where = tunnel_where(self.tunnel())
        if where is None:
            return  # no tunnel, or no token that may read it
        every = float(os.environ.get("GATEWAY_CLOUDFLARE_EVERY") or CLOUDFLARE_EVERY)  # tests: shorter
        try:
            span = await cloudflare_span(*where, since=since, until=until, every=every)
        except Exception as exc:  # noqa: BLE001 - Cloudflare's view is extra: say why it is missing
            log.info("Cloudflare's view of the tunnel is not counted: %s", exc)
            return
        if span is not None:
            record(self.rt, span[0], span[1], "tunnel", servers, seen_by="cloudflare")


def tunnel_where(plan: TunnelPlan | None) -> tuple[str, str, str, str] | None:
    """(api url, token, account id, tunnel id) when the tunnel's settings name them all."""
    settings = plan.settings if plan is not None else None
    if settings is None:
        return None
    token, uuid = settings.api_token(os.environ), settings.tunnel_uuid()
    if not token or not uuid or not settings.account_id:
        return None
    return settings.api_url, token, settings.account_id, uuid


async def cloudflare_span(api_url: str, token: str, account: str, tunnel: str, *, since: datetime,
                          until: datetime, every: float = CLOUDFLARE_EVERY,
                          give_up: float = CLOUDFLARE_FOR) -> tuple[datetime, datetime] | None:
    """Cloudflare's view of one dark period: from when the edge lost the tunnel (`conns_inactive_at`,
    not earlier than CLOUDFLARE_REACH before `since`) to when it was back (`conns_active_at`), asked
    every `every` s until it is back (at most `give_up` s). None when Cloudflare saw no gap there."""
    from reconciler.tunnel.cfapi import Client

    path = f"/accounts/{account}/cfd_tunnel/{tunnel}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up
    began: datetime | None = None
    async with Client(api_url, token, timeout=10.0) as client:
        while True:
            seen = dict(await client.call("GET", path, what={"account": f"the account {account}"}) or {})
            inactive, active = _when(seen.get("conns_inactive_at")), _when(seen.get("conns_active_at"))
            if inactive is not None and (active is None or inactive > active):  # down now, since then
                began = began or max(inactive, since - CLOUDFLARE_REACH)
            elif active is not None:  # connected since `active`
                if began is None and inactive is not None and inactive >= since - CLOUDFLARE_REACH:
                    began = inactive  # both told: it was down from one to the other
                start = began if began is not None else until  # else: the wait after our own return
                return (start, active) if active > start else None
            if loop.time() >= deadline:
                return (began, datetime.now(UTC)) if began is not None else None
            await asyncio.sleep(every)


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
