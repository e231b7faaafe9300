"""Keep DNS in step by itself: whenever the tunnel's hostnames (or its id) change, make each
one a proxied CNAME to the tunnel (`dns.sync`), and record the outcome as events. Retried
with backoff on failure; without an API token it says once what is missing and waits.
Also: the account's list of domains is read again every `ZONES_EVERY` (a domain added in
Cloudflare counts without reconnecting; hostnames are checked against that list)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.events import EventKind
from reconciler.platform.aio import wait_for
from reconciler.tunnel.connector import RESERVED
from reconciler.tunnel.hook import plan_changes, plan_of
from reconciler.tunnel.memory import TunnelContext

if TYPE_CHECKING:
    from reconciler.store import Store

log = logging.getLogger("gateway")
TOKEN_LOOK_EVERY = 30.0  # seconds between looks for an API token while there is none (the resync's pace)
CHECK_EVERY = 2.0  # seconds: a look again while the database is not there yet
RETRY_START, RETRY_CAP = 5.0, 300.0
ZONES_EVERY = 900.0  # seconds between two reads of the account's domains


async def refresh_zones(tunnel: TunnelContext, data_dir: Path, api_url: str, token: str, account_id: str) -> None:
    """The account's domains as Cloudflare lists them now, kept for the hostname check (a change
    reads the folder again: `tunnel.reload`)."""
    from reconciler.tunnel.cfapi import Client, CloudflareError
    from reconciler.tunnel.connect import update_zones

    try:
        async with Client(api_url, token) as client:
            zones = sorted(str(z["name"]) for z in await client.zones(account_id))
    except CloudflareError:
        return  # offline or not allowed: the list from the last look stays
    if update_zones(data_dir, zones):
        tunnel.reload()


def _sooner(a: float | None, b: float | None) -> float | None:
    """The nearer of two waits (None: no deadline)."""
    return b if a is None else a if b is None else min(a, b)


async def dns_forever(tunnel: TunnelContext, store: Store | None, data_dir: Path) -> None:
    """The daemon's task, handed the tunnel (its runtime, memory and reload), the store (None: not
    there yet) and the data folder (the account's domains). Wakes when the tunnel's plan is
    loaded again (`plan_changes`: a file, a setting, a port,
    the resync), when a failed sync is due again, and when the domains are due a read; nothing
    else. It looked at the plan every 2 s before (issue 27: a wake-up every 2 s at rest)."""
    done: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None  # (tunnel id, hostnames, kept) synced
    said_missing: str | None = None
    retry, retry_at = RETRY_START, 0.0
    loop = asyncio.get_running_loop()
    zones_at = 0.0
    rt = tunnel.rt
    changed = plan_changes(tunnel.memory)  # the tunnel is built before the tasks
    wait: float | None = None
    while True:
        with contextlib.suppress(TimeoutError):
            await wait_for(changed.wait(), wait)
        changed.clear()
        wait = None  # until the plan changes, unless a deadline below comes first
        plan = plan_of(rt)
        if plan is None or plan.settings is None or not plan.settings.dns:
            continue
        if store is None:  # the database is not there yet: look again soon
            wait = CHECK_EVERY
            continue
        settings = plan.settings
        uuid, token = settings.tunnel_uuid(), settings.api_token(os.environ)
        if token is not None and settings.account_id:
            if loop.time() >= zones_at:
                zones_at = loop.time() + ZONES_EVERY
                await refresh_zones(tunnel, data_dir, settings.api_url, token, settings.account_id)
            wait = max(0.0, zones_at - loop.time())
        hostnames = tuple(sorted({r.hostname for r in plan.rules[:-1] if r.hostname}))
        key = (uuid or "", hostnames, plan.hostnames)
        if uuid is None or key == done:
            continue
        if loop.time() < retry_at:
            wait = _sooner(wait, retry_at - loop.time())
            continue
        if token is None:
            why = (f"DNS routes are not managed: no API token (connect Cloudflare on the page or with `gateway tunnel "
                   f"connect`, or set ${settings.api_token_env} to a token with DNS edit)")
            if said_missing != why and hostnames:
                rt.event(EventKind.DNS_UNAVAILABLE, RESERVED, why, actor="gateway")
                said_missing = why
            # a token file written later is no new plan (a load of the same plan wakes nobody): look again
            wait = _sooner(wait, TOKEN_LOOK_EVERY)
            continue
        from reconciler.store.dns_records import Ledger
        from reconciler.tunnel.dns import CloudflareAPI, sync  # httpx: only with a tunnel to route

        api = CloudflareAPI(settings.api_url, token)
        try:
            outcomes = await sync(api, Ledger(store.pool), uuid, hostnames, settings.zone, keep=plan.hostnames)
        except Exception as exc:  # noqa: BLE001 - the API or the database is away: retry later
            rt.event(EventKind.DNS_FAILED, RESERVED, f"DNS sync failed, retrying in {retry:.0f}s: {exc}")
            retry_at, retry = loop.time() + retry, min(retry * 2, RETRY_CAP)
            wait = _sooner(wait, retry_at - loop.time())
            continue
        finally:
            await api.close()
        changed_records = [o for o in outcomes if o.action != "unchanged"]
        if changed_records or done is None:
            rt.event(EventKind.DNS_SYNCED, RESERVED, "; ".join(str(o) for o in outcomes) or "no DNS records",
                            detail={"outcomes": [{"hostname": o.hostname, "action": o.action} for o in outcomes]})
        if any(o.action == "error" for o in outcomes):
            retry_at, retry = loop.time() + retry, min(retry * 2, RETRY_CAP)
            wait = _sooner(wait, retry_at - loop.time())
        else:
            done, retry = key, RETRY_START
