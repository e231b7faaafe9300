"""The tunnel's state in words, for `gateway status`, the page and `gateway tunnel status`:
not configured / cloudflared missing (being fetched) / connecting / running / offline since
... / stopped. "running" means reachable from outside: a connector (the managed one, or the
second one of a handover) said so at /ready at the last look (`reach`, every 2 s), not only
that a process runs; until the first look, the health check decides."""

from __future__ import annotations

import time
from typing import Any

from reconciler.core.names import CONNECTOR
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Phase
from reconciler.engine.runtime import to_wall
from reconciler.tunnel import uplink
from reconciler.tunnel.hook import tunnel_of
from reconciler.tunnel.hostnames import HostnameError, ascii_hostname

TLS_NOTE = ("Cloudflare's edge serves each hostname over https with its own certificate: there are no "
            "certificate files to manage.")


def public_url(spec: ServerSpec | None) -> str | None:
    """https://HOSTNAME for a server with a (non-wildcard) domain."""
    if spec is None or spec.domain is None or spec.domain.hostname.startswith("*"):
        return None
    try:
        return f"https://{ascii_hostname(spec.domain.hostname)}"  # as routed: lower-case ASCII
    except HostnameError:
        return None


def tunnel_view(rt: Any) -> dict[str, Any]:
    tunnel = tunnel_of(rt)
    plan = tunnel.plan if tunnel else None
    if plan is None or plan.settings is None:
        missing = plan.missing if plan else "not configured: add a [tunnel] table to gateway.toml"
        state = "config error" if plan and plan.errors else "not configured"
        return {"state": state, "summary": missing, "routes": [], "tls": TLS_NOTE}
    base: dict[str, Any] = {
        "tunnel": plan.settings.id,
        "config_file": str(plan.config_path),
        "cloudflared": str(plan.executable) if plan.executable else None,
        "routes": [{"hostname": r.hostname, "path": r.path or None, "service": r.service, "server": r.server}
                   for r in plan.rules[:-1]],
        "waiting_for_port": list(plan.pending),
        "tls": TLS_NOTE,
    }
    if plan.spec is None:
        return {**base, "state": "cloudflared missing" if plan.executable is None else "not started",
                "summary": plan.missing}
    st = rt.state(CONNECTOR)
    up = tunnel.memory.uplink if tunnel else None
    reach = tunnel.reachable() if tunnel else None
    bridge = tunnel.memory.handover if tunnel else None
    base["reachable"] = bool(reach) if reach is not None else uplink.is_up(st)
    if rt.intents.get(CONNECTOR) == "stop" and st.phase in (Phase.STOPPED, Phase.STOPPING):
        return {**base, "reachable": False, "state": "stopped", "summary": "stopped by you"}
    if base["reachable"]:
        switching = " (switching to a second connector: no gap)" if bridge is not None and bridge.ready else ""
        held = f"; the new routes wait: {bridge.failed}" if bridge is not None and bridge.failed else ""
        return {**base, "state": "running",
                "summary": f"reachable from outside: {len(plan.rules) - 1} routes{switching}{held}"}
    since = to_wall(up.since if up and up.since is not None else (st.exited_at or time.monotonic()))
    cause = (up.cause if up else None) or uplink.cause_of(rt)
    details = {"since": since, "cause": cause}
    if up is not None and (up.held or rt.internet_ok is False):
        return {**base, **details, "state": "waiting for the internet",
                "summary": "not reachable from outside: this laptop has no internet; cloudflared retries when "
                           "the internet is back"}
    if st.phase is Phase.STARTING:
        return {**base, **details, "state": "connecting", "summary": "connecting to Cloudflare's edge"}
    if st.phase is Phase.STOPPING:
        return {**base, **details, "state": "restarting", "summary": f"restarting: {st.reason}"}
    if st.phase is Phase.RUNNING and reach is False:
        why = "cloudflared runs but has no connection to Cloudflare (its /ready says so); it keeps trying"
        return {**base, **details, "state": "offline", "summary": f"offline since {since}: {why}"}
    why = cause or st.health_error or st.last_exit or st.reason or str(st.phase)
    return {**base, **details, "state": "offline", "summary": f"offline since {since}: {why}"}
