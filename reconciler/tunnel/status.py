"""The tunnel's state in words, for `gateway status`, the page and `gateway tunnel status`:
not configured / cloudflared missing (and how to install it) / connecting / running /
offline since ... / stopped."""

from __future__ import annotations

import time
import weakref
from typing import Any

from reconciler.runtime import to_wall
from reconciler.spec import ServerSpec
from reconciler.state import Phase
from reconciler.tunnel.connector import RESERVED, plan_of

TLS_NOTE = ("Cloudflare's edge serves each hostname over https with its own certificate: there are no "
            "certificate files to manage.")
_offline_since: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def public_url(spec: ServerSpec | None) -> str | None:
    """https://HOSTNAME for a server with a (non-wildcard) domain."""
    if spec is None or spec.domain is None or spec.domain.hostname.startswith("*"):
        return None
    return f"https://{spec.domain.hostname}"


def tunnel_view(rt: Any) -> dict[str, Any]:
    plan = plan_of(rt)
    if plan is None or plan.settings is None:
        missing = plan.missing if plan else "not configured: add a [tunnel] table to gateway.toml"
        state = "config error" if plan and plan.errors else "not configured"
        return {"state": state, "summary": missing, "routes": [], "tls": TLS_NOTE}
    base = {
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
    st = rt.state(RESERVED)
    now = time.monotonic()
    if st.phase is Phase.RUNNING and not st.health_failures:
        _offline_since.pop(rt, None)
        return {**base, "state": "running", "summary": f"running: {len(plan.rules) - 1} routes, ready"}
    if st.phase is Phase.STARTING:
        return {**base, "state": "connecting", "summary": "connecting to Cloudflare's edge"}
    if st.phase in (Phase.STOPPED, Phase.STOPPING) and rt.intents.get(RESERVED) == "stop":
        return {**base, "state": "stopped", "summary": "stopped by operator"}
    if st.phase is Phase.STOPPING:
        return {**base, "state": "restarting", "summary": f"restarting: {st.reason}"}
    since = _offline_since.setdefault(rt, st.exited_at if st.exited_at is not None and st.phase is not
                                      Phase.RUNNING else now)
    why = st.health_error or st.last_exit or st.reason or str(st.phase)
    return {**base, "state": "offline", "since": to_wall(since),
            "summary": f"offline since {to_wall(since)}: {why}"}
