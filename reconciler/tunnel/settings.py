"""``gateway.toml``'s ``[tunnel]`` table, validated here (``GatewayFile.tunnel`` keeps it as a
plain table): which tunnel, its credentials, where config.yml goes, which cloudflared, the
metrics port, and how to reach the Cloudflare API for DNS routes.

The API token is never read from the folder (it is often git-synced): only from a file
outside it (``api_token_file``: `gateway tunnel connect` keeps it in the data folder) or an
environment variable (``api_token_env``, default ``CLOUDFLARE_API_TOKEN``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reconciler.core.names import GATEWAY_FILE
from reconciler.core.spec import Duration, PortSpec
from reconciler.engine.config import ConfigError, _line_of
from reconciler.tunnel.ingress import IngressError, check_origin

DEFAULT_API = "https://api.cloudflare.com/client/v4"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class TunnelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)  # the tunnel's UUID, or its name
    credentials_file: str | None = None  # what `cloudflared tunnel create NAME` wrote (~/.cloudflared/UUID.json)
    config_file: str | None = None  # default: DATA_DIR/tunnel/config.yml
    cloudflared: str | None = None  # default: found on PATH (Windows: also the winget/MSI locations)
    metrics_port: PortSpec = "auto"  # cloudflared's --metrics 127.0.0.1:PORT (its /ready is the health check)
    check_interval: Duration = 15.0  # how often /ready is asked
    restart_after: Duration = 180.0  # not ready this long (e.g. stuck after the internet came back): restart
    start_period: Duration = 60.0  # time to make the first edge connection
    grace_period: Duration = 30.0  # cloudflared's --grace-period: how long a stop may drain requests
    offline_alert_after: Duration = 60.0  # not ready this long with the internet up: "tunnel offline"
    origin: dict[str, Any] = Field(default_factory=dict)  # global originRequest defaults
    zone: str | None = None  # the DNS zone (e.g. example.com); default: found from each hostname
    account_id: str | None = None  # the Cloudflare account (written by `gateway tunnel connect`)
    api_url: str = DEFAULT_API
    api_token_env: str = "CLOUDFLARE_API_TOKEN"
    api_token_file: str | None = None
    dns: bool = True  # keep a proxied CNAME per hostname (needs an API token)

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_origin(value)
        except IngressError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    # --- derived ---------------------------------------------------------------------------
    def config_path(self, data_dir: Path) -> Path:
        return Path(self.config_file).expanduser() if self.config_file else data_dir / "tunnel" / "config.yml"

    def health_failures(self) -> int:
        return max(1, math.ceil(self.restart_after / self.check_interval))

    def tunnel_uuid(self) -> str | None:
        """The UUID: `id` when it is one, else the TunnelID in the credentials file."""
        if _UUID.match(self.id):
            return self.id.lower()
        if self.credentials_file:
            try:
                data = json.loads(Path(self.credentials_file).expanduser().read_text(encoding="utf-8"))
                found = str(data.get("TunnelID") or "")
                return found.lower() if _UUID.match(found) else None
            except (OSError, ValueError, AttributeError):
                return None
        return None

    def api_token(self, environ: Mapping[str, str]) -> str | None:
        if self.api_token_file:
            try:
                return Path(self.api_token_file).expanduser().read_text(encoding="utf-8").strip() or None
            except OSError:
                return None
        return environ.get(self.api_token_env) or None


def parse(table: Mapping[str, Any], config_dir: Path) -> TunnelSettings | None | list[ConfigError]:
    """The ``[tunnel]`` table -> settings; None when there is none; else errors naming the key."""
    if not table:
        return None
    path = str(Path(config_dir) / GATEWAY_FILE)
    if "api_token" in table:
        return [ConfigError(path, _line_of(path, ("tunnel", "api_token")), None, "tunnel.api_token",
                            "never put the API token in gateway.d (it is often synced with git): set "
                            "api_token_env (default CLOUDFLARE_API_TOKEN) or api_token_file")]
    try:
        return TunnelSettings.model_validate(dict(table))
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            keys = ("tunnel", *(str(k) for k in err["loc"]))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown key (known: {', '.join(TunnelSettings.model_fields)})"
            elif err["type"] == "missing":
                message = ("is required: connect Cloudflare on the page (/cloudflare) or with `gateway tunnel connect`, "
                           "which fills it in; or the UUID `cloudflared tunnel create NAME` printed")
            line = _line_of(path, keys) if Path(path).exists() else None
            errors.append(ConfigError(path, line, None, ".".join(keys), message))
        return errors
