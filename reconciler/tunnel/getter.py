"""Keep cloudflared there and up to date, by itself (a daemon task) and from the page.

- With ``[tunnel]`` set, no ``tunnel.cloudflared`` configured and none found: fetch the
  latest official release now (`fetch`), retried with backoff (1 min, doubling, up to 1 h);
  once installed the config is reloaded and the connector starts.
- Once a day (and soon after the gateway starts): is a newer release out than the one in
  use? Then the page offers it ("Update cloudflared to 2026.9.0"). The update itself is the
  owner's click (`update_now`): the new binary is checked, installed beside the old one, and
  the connector moves to it through the two-connector handover; if the new one does not
  come up, the previous one is put back (`handover`, `fetch.revert`).
What happened is kept for the page (`Getter`) and recorded as events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from reconciler.core.events import EventKind
from reconciler.core.names import CONNECTOR
from reconciler.platform.aio import wait_for
from reconciler.tunnel import fetch
from reconciler.tunnel.hook import getter_of
from reconciler.tunnel.memory import RETRY_START, TunnelContext
from reconciler.tunnel.release import Release, ReleaseError, newer, version_of

LOOK_EVERY = 2.0  # seconds between looks at the plan
CHECK_EVERY = float(os.environ.get("GATEWAY_CLOUDFLARED_CHECK_EVERY") or 24 * 3600)  # newer releases
FIRST_CHECK = 10.0  # seconds after the start: the first look for a newer release
RETRY_CAP = 3600.0  # seconds: the longest wait between two tries to fetch cloudflared


_versions: dict[tuple[str, float], str | None] = {}


def version_in_use(executable: Path | None, data_dir: Path) -> str | None:
    """The version of `executable`: the one recorded when the gateway fetched it, else what
    ``cloudflared --version`` says (asked once per file)."""
    if executable is None:
        return None
    got = fetch.installed(data_dir)
    if got is not None and got.path == executable:
        return got.version
    try:
        key = (str(executable), executable.stat().st_mtime)
    except OSError:
        return None
    if key not in _versions:
        try:
            from reconciler.platform import current

            done = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL, check=False, **current().quiet_kwargs())
            _versions[key] = version_of(done.stdout + done.stderr)
        except (OSError, subprocess.TimeoutExpired):
            _versions[key] = None
    return _versions[key]


async def install(rt: Any, data_dir: Path, release: Release | None, actor: str, mark_dirty: Any) -> tuple[bool, str]:
    """Fetch, check and install `release` (the latest when None). (ok, words); nothing changes
    when it fails, and the words say that the previous cloudflared stays in use."""
    got = getter_of(rt)
    if got.busy:
        return False, f"Already {got.busy}."
    got.busy = "getting cloudflared" if release is None else f"getting cloudflared {release.version}"
    before = got.version
    try:
        release = release or await fetch.latest()
        got.busy = f"getting cloudflared {release.version}"
        done = await fetch.install(data_dir, release)
    except (fetch.FetchError, ReleaseError) as exc:
        keep = (f"cloudflared {before} stays in use" if before else
                "the gateway tries again by itself (in a minute, then less often)")
        words = f"cloudflared was not installed: {exc}; {keep}."
        if words != got.said or actor != "gateway":  # the gateway's own retries say a new reason once
            rt.event(EventKind.CLOUDFLARED_FAILED, CONNECTOR, words, actor=actor, detail={"error": str(exc)})
        got.said, got.ok = words, False
        return False, words
    finally:
        got.busy = None
    got.version, got.offer, got.retry = done.version, None, RETRY_START
    words = (f"cloudflared {done.version} is installed (checked against the checksum Cloudflare published)"
             + (f"; the tunnel moves to it from {before} without a gap" if before and before != done.version else ""))
    got.said, got.ok = words + ".", True
    rt.event(EventKind.CLOUDFLARED_INSTALLED, CONNECTOR, words, actor=actor,
             detail={"version": done.version, "sha256": done.sha256, "path": str(done.path)})
    mark_dirty()
    return True, got.said


async def look_for_newer(rt: Any, data_dir: Path) -> None:
    got = getter_of(rt)
    got.checked_at = time.monotonic()
    try:
        release = await fetch.latest()
    except (fetch.FetchError, ReleaseError):
        return  # said when an install is asked for; a check that fails is tried tomorrow
    in_use = got.version
    if in_use and newer(release.version, in_use) and release.version != fetch.rejected(data_dir):
        got.offer = release
    else:
        got.offer = None


def offered(rt: Any, data_dir: Path) -> Release | None:
    """The newer release to offer now (not one given up, not one older than what runs)."""
    got = getter_of(rt)
    offer = got.offer
    if offer is None or offer.version == fetch.rejected(data_dir) or not newer(offer.version, got.version):
        return None
    return offer


async def cloudflared_forever(tunnel: TunnelContext, data_dir: Path) -> None:
    """The daemon's task: fetch cloudflared when the tunnel needs one, look for a newer one daily.
    It wakes when the tunnel's plan is loaded again (`plan_changes`), and when a download to retry
    or the daily look is due; it looked at the plan every 2 s before (issue 27)."""
    from reconciler.tunnel.hook import plan_changes

    rt, got = tunnel.rt, tunnel.memory.getter
    started = time.monotonic()
    changed = plan_changes(tunnel.memory)
    wait: float | None = LOOK_EVERY  # the first look: once the first load has made a plan
    while True:
        with contextlib.suppress(TimeoutError):
            await wait_for(changed.wait(), wait)
        changed.clear()
        wait = None  # until the plan changes, unless a deadline below comes first
        plan = tunnel.memory.plan
        if plan is None or plan.settings is None:
            continue
        now = time.monotonic()
        got.version = await asyncio.to_thread(version_in_use, plan.executable, data_dir)
        if plan.executable is None and not plan.settings.cloudflared:
            if now >= got.retry_at and not got.busy:
                ok, _ = await install(rt, data_dir, None, "gateway", tunnel.reload)
                if ok:  # the plans loaded while it downloaded still lack it: wait for the load it asked for
                    changed.clear()
                    continue
                got.retry_at, got.retry = time.monotonic() + got.retry, min(got.retry * 2, RETRY_CAP)
            wait = max(LOOK_EVERY, got.retry_at - time.monotonic())  # (installed: the reload wakes it first)
            continue
        if plan.executable is not None and not plan.settings.cloudflared:
            due = started + FIRST_CHECK if got.checked_at is None else got.checked_at + CHECK_EVERY
            if now >= due and not got.busy:
                await look_for_newer(rt, data_dir)
                due = (got.checked_at or time.monotonic()) + CHECK_EVERY
            wait = max(LOOK_EVERY, due - time.monotonic())
