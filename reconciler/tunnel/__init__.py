"""Cloudflare Tunnel: each server with a ``[domain]`` reachable at its own hostname.

- `ingress`: pure: specs -> cloudflared ingress rules (most specific first, `http_status:404`
  last), checked with cloudflared's own rules and messages, rendered as config.yml.
- `settings`: the ``[tunnel]`` table of gateway.toml.
- `locate`: find cloudflared, or say how to install it.
- `connector`: the synthesized ``cloudflared`` server (plan, spec, config.yml).
- `goregex`, `origin`, `hostnames`: cloudflared's checks of paths, originRequest and hostnames.
- `validate`: the installed cloudflared's own validator on a candidate config.
- `hook`: the loop's one hook, `Tunnel` (its memory: `memory`); `uplink`: offline, waiting for the
  internet, online; `reach`: what the connectors say at /ready; `handover`: restarts without a gap.
- `dns`: proxied CNAMEs through the Cloudflare API, remembering which records it created.
- `commands`: ``gateway tunnel status|render|check|dns``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Tunnel", "plan_of"]


def __getattr__(name: str) -> Any:
    """The connector and the hook load on first use: `gateway status` imports this package
    for its commands and never needs them."""
    if name in ("Tunnel", "plan_of"):
        from reconciler.tunnel import hook

        return getattr(hook, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
