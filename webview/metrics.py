"""`GET /metrics`: Prometheus text exposition of what the overview shows. Allowed with a
read-only API token (Settings, API tokens: what a scraper should get), the local API token, or
a signed-in session."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from reconciler.core.state import Phase
from webview.infra import auth
from webview.infra.page import gateway_of
from webview.infra.views import gateway_view, server_names, server_view

SERIES = [  # (name, type, help, view key)
    ("gateway_server_restarts_total", "counter", "Restarts since the gateway started.", "restarts"),
    ("gateway_server_failures", "gauge", "Consecutive failed runs.", "failures"),
    ("gateway_server_uptime_seconds", "gauge", "Seconds since the process started.", "uptime_s"),
    ("gateway_server_response_ms", "gauge", "Latency of the last health check.", "latency_ms"),
    ("gateway_server_cpu_percent", "gauge", "CPU of the server's process.", "cpu_percent"),
    ("gateway_server_rss_bytes", "gauge", "Resident memory of the server's process tree.", "rss_bytes"),
]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(gateway: dict[str, Any], servers: list[dict[str, Any]]) -> str:
    out = [
        "# HELP gateway_database_up 1 when PostgreSQL is reachable.", "# TYPE gateway_database_up gauge",
        f"gateway_database_up {int(bool(gateway['database_ok']))}",
        "# HELP gateway_pending_writes Writes queued for PostgreSQL.", "# TYPE gateway_pending_writes gauge",
        f"gateway_pending_writes {gateway['pending_writes']}",
        "# HELP gateway_config_errors Server files with errors.", "# TYPE gateway_config_errors gauge",
        f"gateway_config_errors {len(gateway['config_errors'])}",
        "# HELP gateway_server_up 1 when the server is running and healthy.", "# TYPE gateway_server_up gauge",
    ]
    out += [f'gateway_server_up{{server="{_label(s["name"])}"}} {int(s["phase"] == "running")}' for s in servers]
    out += ["# HELP gateway_server_phase The server's phase (1 for the current one).",
            "# TYPE gateway_server_phase gauge"]
    for s in servers:
        out += [f'gateway_server_phase{{server="{_label(s["name"])}",phase="{p}"}} {int(s["phase"] == p)}'
                for p in Phase]
    for name, kind, help_text, key in SERIES:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        out += [f'{name}{{server="{_label(s["name"])}"}} {s[key]}' for s in servers if s.get(key) is not None]
    return "\n".join(out) + "\n"


@auth.requires(auth.STATUS, message="send an API token (Authorization: Bearer; a read-only one from "
               "Settings, API tokens, is enough) or sign in")
async def metrics(request: Request) -> PlainTextResponse:
    daemon = gateway_of(request)
    text = render_metrics(gateway_view(daemon), [server_view(daemon, n) for n in server_names(daemon)])
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
