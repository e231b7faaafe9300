"""Names every layer agrees on, defined once and importing nothing: the folder's settings file,
the tunnel connector's server name, and the server names a file may not take."""

from __future__ import annotations

GATEWAY_FILE = "gateway.toml"  # in the config folder: the global settings, never a server
CONNECTOR = "cloudflared"  # the tunnel connector, the gateway's own part that runs as a server
RESERVED_NAMES = frozenset({"gateway", CONNECTOR})  # a server file with one of these names is refused
