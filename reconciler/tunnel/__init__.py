"""Cloudflare Tunnel: each server with a ``[domain]`` reachable at its own hostname.

- `ingress`: pure: specs -> cloudflared ingress rules (most specific first, `http_status:404`
  last), checked with cloudflared's own rules and messages, rendered as config.yml.
- `settings`: the ``[tunnel]`` table of gateway.toml.
- `locate`: find cloudflared, or say how to install it.
- `connector`: the synthesized ``cloudflared`` server (plan, spec, config.yml).
- `goregex`, `origin`, `hostnames`: cloudflared's checks of paths, originRequest and hostnames.
- `validate`: the installed cloudflared's own validator on a candidate config.
- `hook`: the loop's one hook, `with_tunnel`; `uplink`: offline, waiting for the internet, online.
- `dns`: proxied CNAMEs through the Cloudflare API, remembering which records it created.
- `commands`: ``gateway tunnel status|render|check|dns``.
"""

from reconciler.tunnel.connector import RESERVED
from reconciler.tunnel.hook import plan_of, with_tunnel

__all__ = ["RESERVED", "plan_of", "with_tunnel"]
