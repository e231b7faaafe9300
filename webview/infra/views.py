"""View models: the live runtime and the loaded config as plain dicts, for the JSON API,
`gateway status` and the templates alike. Nothing here has methods a template could call.
`ServersAnswer` is the memory of `GET /api/servers` (one per app, held by webview.infra.page.Page)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.core.facts import as_dict
from reconciler.core.spec import RunningHealth
from reconciler.core.state import Phase
from reconciler.engine.runtime import to_wall
from reconciler.tunnel.status import public_url, tunnel_view

if TYPE_CHECKING:
    from reconciler.core.spec import ServerSpec
    from webview.infra.gateway import Gateway, Live

P = Phase


def status_word(daemon: Gateway, name: str) -> str:
    """The phase as a person reads it: 'stopped by operator', 'backoff: next try in 12s'."""
    state = daemon.rt.state(name)
    now = time.monotonic()
    if state.phase is P.STOPPED and daemon.rt.intents.get(name) == "stop":
        return "stopped by operator"
    if state.phase in (P.BACKOFF, P.ERROR) and state.next_try_at is not None:
        return f"{state.phase}: next try in {max(0.0, state.next_try_at - now):.0f}s"  # the page's count rounds alike
    return str(state.phase)


def carried(rt: Live) -> list[str]:
    """The public addresses the tunnel carries now (what a stop of it cuts)."""
    from reconciler.tunnel.hook import plan_of

    plan = plan_of(rt)
    names = [r.hostname for r in plan.rules[:-1]] if plan is not None and plan.rules else []
    return list(dict.fromkeys(n if n.startswith("*") else f"https://{n}" for n in names))


def server_view(daemon: Gateway, name: str, usage: Mapping[int, tuple[float, int]] | None = None) -> dict[str, Any]:
    rt = daemon.rt
    result = daemon.reconciler.result
    spec = result.specs.get(name) if result else None
    state = rt.state(name)
    now = time.monotonic()
    alive = state.phase in (P.STARTING, P.RUNNING, P.STOPPING)
    health_spec = spec.effective_health() if spec else None
    port = state.port if alive else (spec.port if spec and isinstance(spec.port, int) else rt.ports.get(name))
    return {
        "name": name,
        "phase": str(state.phase),
        "status": status_word(daemon, name),
        "reason": state.reason,  # the engine's text (CLI, API); the page's words come from the facts
        "cause": str(state.cause or ""),  # the typed Reason, when the loop records one
        "pid": state.pid if alive else None,
        "port": port,
        "local_url": f"http://127.0.0.1:{port}/" if port else None,
        "uptime_s": round(now - state.started_at, 1) if alive and state.started_at is not None else None,
        "started_at": to_wall(state.started_at) if alive else None,
        "since_epoch": round(time.time() - (now - state.started_at), 1) if alive and state.started_at else None,
        "restarts": state.restarts,
        "ended_at": to_wall(state.exited_at) if not alive and state.exited_at is not None else None,
        "failures": state.failures,
        "last_exit": state.last_exit,
        "next_try_in_s": round(max(0.0, state.next_try_at - now), 1) if state.next_try_at else None,
        "next_try_at_epoch": round(time.time() + state.next_try_at - now, 1) if state.next_try_at else None,
        "alert_after": spec.restart.alert_after if spec else 5,
        "health_failures": state.health_failures,
        "health_threshold": getattr(health_spec, "failures", None),
        "min_uptime": getattr(health_spec, "min_uptime", None),  # a program with no web page
        "health_error": state.health_error,
        "latency_ms": state.last_latency_ms,
        # typed facts (reconciler/core/facts.py): the page's words are written from these, never parsed
        "ended": as_dict(state.ended),
        "held": as_dict(state.held),
        "start_error": state.start_error,
        "not_answering": as_dict(state.not_answering),
        "replacing": state.replacing,
        "stopped_by_operator": rt.intents.get(name) == "stop",
        "description": spec.description if spec else "",
        "group": spec.group if spec else None,
        "tags": list(spec.tags) if spec else [],
        "enabled": spec.enabled if spec else False,
        "config_stale": bool(result and name in result.stale),
        "in_config": spec is not None,
        "domain": spec.domain.hostname if spec and spec.domain else None,
        "public_url": public_url(spec),  # https://HOSTNAME (Cloudflare's certificate)
        "cpu_percent": _usage(usage, state.pid, alive, 0, daemon.figures.resources.get(name, {}).get("cpu_percent")),
        "rss_bytes": _usage(usage, state.pid, alive, 1, daemon.figures.resources.get(name, {}).get("rss_bytes")),
        "health": _health_word(state.phase, spec, state.health_failures, state.health_error),
        "uptime_pct": daemon.figures.uptime.get(name, {"24h": None, "7d": None, "30d": None}),
        # a change that failed and was rolled back (reconciler/core/rollout.py): not tried again by itself
        "rolled_back": rt.rollouts.failed_why.get(name, "it failed") if name in rt.rollouts.failed else None,
        "rolled_back_facts": (dict(rt.rollouts.failed_facts.get(name) or {}) if name in rt.rollouts.failed
                              else None),
        # the gateway's own part (the tunnel): not in bulk actions, never cut through the tunnel door
        "own": name in rt.own_parts,
        "carries": carried(rt) if name in rt.own_parts else [],
    }



def _health_word(phase: Phase, spec: ServerSpec | None, failures: int, error: str | None) -> str:
    """'ok', 'failing (2 of 3): <error>', 'no check', or '-' when not running."""
    if spec is None or phase not in (P.STARTING, P.RUNNING):
        return "-"
    health = spec.effective_health()
    if health.type == "none":
        return "no check"
    if phase is P.STARTING:
        return "starting" + (f": {error}" if error else "")
    if failures:  # a program with no web page has no threshold (it has no check to fail, so far)
        of = "" if isinstance(health, RunningHealth) else f" of {health.failures}"
        return f"failing ({failures}{of})" + (f": {error}" if error else "")
    return "ok"


def _usage(usage: Mapping[int, tuple[float, int]] | None, pid: int | None, alive: bool, index: int,
           sampled: float | int | None = None) -> float | int | None:
    if pid is None or not alive:
        return None
    if usage is None or pid not in usage:
        return sampled  # the sampler's latest figure for the whole tree
    return usage[pid][index]


def gateway_view(daemon: Gateway) -> dict[str, Any]:
    result = daemon.reconciler.result
    sink = daemon.sink
    since = sink.unreachable_since
    return {
        "url": daemon.url,
        "config_dir": str(daemon.settings.config_dir),
        "data_dir": str(daemon.settings.data_dir),
        "database": daemon.db_label,
        "database_ok": sink.db_ok,
        "database_unreachable_since": since.isoformat() if since else None,
        "pending_writes": sink.pending,
        "config_errors": [str(e) for e in result.errors] if result else [],
        "host": dict(daemon.figures.host),
        "tunnel": tunnel_view(daemon.rt),
    }


def server_names(daemon: Gateway) -> list[str]:
    return sorted(set(daemon.reconciler.result.specs if daemon.reconciler.result else ()) | set(daemon.rt.states))


def status_view(daemon: Gateway, usage: Mapping[int, tuple[float, int]] | None = None) -> dict[str, Any]:
    return {"gateway": gateway_view(daemon), "servers": [server_view(daemon, n, usage) for n in server_names(daemon)]}


class ServersAnswer:
    """The body of `GET /api/servers` and its weak ETag, built when someone asks and at most
    once per change of the runtime (a phase, an intent: `rt.changed`), per loaded folder and
    per second (uptimes tick), however many ask at once: no timer, no query. The ETag leaves
    out what only the clock moves (CLOCK), so a phone asking with If-None-Match gets 304
    until something it shows has changed; its copy's clock fields are as of its last 200.
    Gzipped once per body when someone asks for it (100 servers: 74 KB -> 3 KB, through a
    laptop's uplink when a phone polls over the tunnel)."""

    CLOCK = frozenset({"uptime_s", "started_at", "since_epoch", "ended_at", "next_try_in_s", "next_try_at_epoch",
                       "status"})  # status: the phase and intent (both kept) with the backoff's countdown

    def __init__(self) -> None:
        self._key: tuple[Any, Any, int] | None = None
        self.body, self.etag = b"", ""
        self._gzipped: bytes | None = None

    def current(self, daemon: Gateway, now: float | None = None) -> tuple[bytes, str]:
        """(body, etag) as of `now` (time.monotonic())."""
        second = int(time.monotonic() if now is None else now)
        changed, result = daemon.rt.changed, daemon.reconciler.result
        key = self._key
        if key is None or key[0] is not changed or key[1] is not result or key[2] != second:
            view = status_view(daemon)
            self.body = json.dumps({**view["gateway"], "servers": view["servers"]}, ensure_ascii=False,
                                   allow_nan=False, separators=(",", ":")).encode()  # as JSONResponse
            stable = [{k: v for k, v in s.items() if k not in self.CLOCK} for s in view["servers"]]
            text = json.dumps([view["gateway"], stable], separators=(",", ":")).encode()
            self.etag = f'W/"{hashlib.blake2b(text, digest_size=8).hexdigest()}"'
            self._key, self._gzipped = (changed, result, second), None
        return self.body, self.etag

    def gzipped(self) -> bytes:
        """The current body, gzipped (made on the first ask after each build)."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, 6, mtime=0)
        return self._gzipped
