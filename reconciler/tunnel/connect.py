"""Connect Cloudflare with one API token: no cloudflared command, no UUID to copy.

token -> the account and its zones -> a locally-managed tunnel (created through
``POST /accounts/{id}/cfd_tunnel`` with a secret generated here, or an existing one picked,
whose secret comes from ``GET .../cfd_tunnel/{id}/token``) -> the credentials JSON written
0600 in the data folder -> the tunnel id recorded in gateway.toml (comments kept) -> the
token kept in the data folder (never in gateway.d). From then on the daemon keeps ingress
and DNS in step.

Locally-managed rather than remotely-managed (``config_src = "cloudflare"``): a remote
config would apply ingress live without a restart, but only while the API is reachable,
and it would make Cloudflare's copy the truth instead of gateway.d; a laptop's internet
comes and goes, and the two-connector handover already changes routes without a gap.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.platform.fsutil import write_secret
from reconciler.tunnel.cfapi import DEFAULT_API, TUNNEL_EDIT, Client, CloudflareError

DNS_ALL = ("add the DNS edit permission (Zone → DNS → Edit) with Zone Resources “All zones” (the link on the "
           "page fills it in)")

TOKEN_FILE = "cloudflare-token"
PERMISSIONS = (  # (template key, type, what it is for), shown on the page in this order
    ("argotunnel", "edit", "Cloudflare Tunnel — edit: create the tunnel and run it"),
    ("zone_dns", "edit", "DNS — edit: point each server's name (blog.example.com) at the tunnel"),
    ("notification", "edit", "Notifications — edit (optional): Cloudflare tells you when the laptop is off, "
                             "asleep or crashed"),
)


def template_url(name: str = "omen-gateway") -> str:
    """Cloudflare's token page with the permissions filled in (its documented template URL)."""
    from urllib.parse import urlencode

    keys = json.dumps([{"key": k, "type": t} for k, t, _ in PERMISSIONS], separators=(",", ":"))
    return ("https://dash.cloudflare.com/profile/api-tokens?"
            + urlencode({"permissionGroupKeys": keys, "accountId": "*", "zoneId": "all", "name": name}))


class ConnectError(ValueError):
    """What is missing or wrong, in words (with Cloudflare's codes in `detail`)."""

    def __init__(self, words: str, detail: str = "", choices: list[dict[str, str]] | None = None) -> None:
        super().__init__(words)
        self.words, self.detail, self.choices = words, detail, choices or []


@dataclass(frozen=True)
class Found:
    account: dict[str, Any]
    zones: list[str]
    tunnels: list[dict[str, Any]]  # existing, not deleted


@dataclass(frozen=True)
class Connected:
    account_id: str
    account_name: str
    tunnel_id: str
    tunnel_name: str
    created: bool
    credentials_file: Path
    token_file: Path
    zones: list[str] = field(default_factory=list)


def data_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "tunnel"


async def find(client: Client, account_id: str | None = None) -> Found:
    """The account (the one asked for, or the only one), its zones and its tunnels."""
    try:
        await client.verify()
        accounts = await client.accounts()
    except CloudflareError as exc:
        raise ConnectError(exc.words, exc.detail) from None
    if not accounts:
        raise ConnectError(f"this token reaches no Cloudflare account: {TUNNEL_EDIT}")
    if account_id:
        account = next((a for a in accounts if a["id"] == account_id), None)
        if account is None:
            raise ConnectError(f"this token cannot reach the account {account_id}",
                               choices=[{"id": a["id"], "name": a.get("name", "")} for a in accounts])
    elif len(accounts) > 1:
        raise ConnectError(f"this token reaches {len(accounts)} accounts: pick one",
                           choices=[{"id": a["id"], "name": a.get("name", "")} for a in accounts])
    else:
        account = accounts[0]
    name = account.get("name") or account["id"]
    try:  # the tunnel permission first (it is the tunnel), then the domains and their DNS
        tunnels = [t for t in await client.tunnels(account) if not t.get("deleted_at")]
        listed = await client.zones(account["id"])
    except CloudflareError as exc:
        if exc.status in (401, 403) and "/zones" in exc.detail.split(":", 1)[0]:
            raise ConnectError(f"this token cannot see the domains of {name}: {DNS_ALL}", exc.detail) from None
        raise ConnectError(exc.words, exc.detail) from None
    if not listed:
        raise ConnectError(f"Cloudflare shows this token no domain in {name}: if your domain is there, the token "
                           f"lacks the DNS permission ({DNS_ALL}); if not, add your domain to Cloudflare first. "
                           "Then connect again") from None
    try:
        editable = await client.can_edit_dns(str(listed[0]["id"]), str(listed[0]["name"]))
    except CloudflareError as exc:
        raise ConnectError(exc.words, exc.detail) from None
    if not editable:
        raise ConnectError(f"this token can see your domains but cannot change their DNS records, so your servers' "
                           f"names cannot point at the tunnel: {DNS_ALL}")
    return Found(account, sorted(str(z["name"]) for z in listed), tunnels)


def default_name() -> str:
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "laptop"
    return f"omen-gateway-{host}"[:60]


async def connect(client: Client, data_dir: Path, gateway_toml: Path, *, token: str,
                  account_id: str | None = None, tunnel: str | None = None,
                  api_url: str = DEFAULT_API) -> Connected:
    """Everything after the token: see the module docstring. `tunnel`: an existing tunnel's
    id or name to use, else a new one is created (named after this computer)."""
    found = await find(client, account_id)
    account = found.account
    picked = next((t for t in found.tunnels if tunnel in (t.get("id"), t.get("name"))), None) if tunnel else None
    try:
        if picked is not None:
            raw = await client.tunnel_token(account, str(picked["id"]))
            parts = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
            creds = {"AccountTag": parts["a"], "TunnelSecret": parts["s"], "TunnelID": parts["t"]}
            created, name = False, str(picked.get("name") or picked["id"])
        else:
            taken = {t.get("name") for t in found.tunnels}
            name = tunnel or default_name()
            base, n = name, 2
            while name in taken:
                name, n = f"{base}-{n}", n + 1
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            made = await client.create_tunnel(account, name, secret)
            creds = {"AccountTag": account["id"], "TunnelSecret": secret, "TunnelID": str(made["id"])}
            created = True
    except CloudflareError as exc:
        raise ConnectError(exc.words, exc.detail) from None
    except (ValueError, KeyError) as exc:
        raise ConnectError("Cloudflare's answer about the tunnel could not be read", str(exc)) from None
    folder = data_folder(data_dir)
    cred_path = folder / f"{creds['TunnelID']}.json"
    write_secret(cred_path, json.dumps(creds, indent=2) + "\n")
    token_path = folder / TOKEN_FILE
    write_secret(token_path, token.strip() + "\n")
    record(gateway_toml, creds["TunnelID"], cred_path, token_path, account["id"], api_url)
    done = Connected(account["id"], str(account.get("name") or account["id"]), creds["TunnelID"], name, created,
                     cred_path, token_path, found.zones)
    write_summary(data_dir, done)
    return done


SUMMARY = "cloudflare.json"


def write_summary(data_dir: Path, done: Connected) -> None:
    """What the page shows without asking Cloudflare again: account, tunnel, domains."""
    import time

    data = {"account_id": done.account_id, "account_name": done.account_name, "tunnel_id": done.tunnel_id,
            "tunnel_name": done.tunnel_name, "zones": done.zones, "connected_at": time.time()}
    write_secret(data_folder(data_dir) / SUMMARY, json.dumps(data, indent=2) + "\n")


def update_zones(data_dir: Path, zones: list[str]) -> bool:
    """The account's domains as Cloudflare lists them now (the daemon refreshes them); whether
    they changed."""
    summary = read_summary(data_dir)
    if not summary or summary.get("zones") == zones:
        return False
    summary["zones"] = zones
    write_secret(data_folder(data_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return True


def read_summary(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((data_folder(data_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(gateway_toml: Path, tunnel_id: str, credentials: Path, token_file: Path, account_id: str,
           api_url: str) -> None:
    """[tunnel] in gateway.toml: id, credentials_file, api_token_file, account_id (comments kept)."""
    from reconciler.ops.tomledit import DELETE, edit

    changes: dict[str, Any] = {"id": tunnel_id, "credentials_file": str(credentials),
                               "api_token_file": str(token_file), "account_id": account_id,
                               "api_url": api_url if api_url.rstrip("/") != DEFAULT_API else DELETE}
    edit(gateway_toml, {"tunnel": changes})


async def set_alarm(client: Client, data_dir: Path, account_id: str, tunnel_id: str, to: str) -> str:
    """Set up the outside alarm (see `alarm`) and remember it for the page; returns the words
    to show. Raises ConnectError in words (e.g. the token lacks Notifications edit)."""
    from reconciler.tunnel.alarm import AlarmError, ensure

    summary = read_summary(data_dir)
    account = {"id": account_id, "name": summary.get("account_name") or account_id}
    try:
        made = await ensure(client, account, tunnel_id, to)
    except AlarmError as exc:
        raise ConnectError(str(exc)) from None
    except CloudflareError as exc:
        raise ConnectError(exc.words, exc.detail) from None
    summary["alarm"] = {"to": made.to, "policy_id": made.policy_id}
    write_secret(data_folder(data_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return f"Outside alarm on: Cloudflare tells {made.to} when this laptop cannot be reached."
