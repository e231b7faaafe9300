"""The outside alarm: a laptop that is off, asleep or crashed cannot say so itself, so
Cloudflare's own tunnel health notification does (``POST /accounts/{a}/alerting/v3/policies``,
alert type ``tunnel_health_event``, filtered to this tunnel), by email or to a webhook (an
https URL, e.g. an ntfy topic; made with ``POST .../alerting/v3/destinations/webhooks``).

Needs the token's Notifications edit permission; without it, the words say so. Setting it up
twice keeps one policy (found by its name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reconciler.tunnel.cfapi import Client

ALERT_TYPE = "tunnel_health_event"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AlarmError(ValueError):
    pass


@dataclass(frozen=True)
class Alarm:
    policy_id: str
    to: str  # the email address or the webhook URL
    created: bool


def policy_name(tunnel_id: str) -> str:
    return f"omen-gateway: tunnel {tunnel_id} health"


def check_target(to: str) -> str:
    to = to.strip()
    if _EMAIL.match(to) or to.startswith("https://"):
        return to
    raise AlarmError(f"{to!r} is neither an email address nor an https:// address Cloudflare can call "
                     "(for a phone: https://ntfy.sh/your-secret-topic)")


async def ensure(client: Client, account: dict[str, Any], tunnel_id: str, to: str) -> Alarm:
    """One policy for this tunnel, sending to `to` (raises CloudflareError in words)."""
    to = check_target(to)
    what = {"account": f"the account {account.get('name') or account['id']}"}
    base = f"/accounts/{account['id']}/alerting/v3"
    name = policy_name(tunnel_id)
    existing = [p for p in await client.all(f"{base}/policies", what=what) if p.get("name") == name]
    if existing:
        return Alarm(str(existing[0]["id"]), to, False)
    if to.startswith("https://"):
        hook = await client.call("POST", f"{base}/destinations/webhooks", body={"name": name, "url": to},
                                 what=what)
        mechanisms: dict[str, Any] = {"webhooks": [{"id": str(hook["id"])}]}
    else:
        mechanisms = {"email": [{"id": to}]}
    body = {"name": name, "alert_type": ALERT_TYPE, "enabled": True, "mechanisms": mechanisms,
            "description": "The laptop running omen-gateway cannot be reached (off, asleep, crashed or offline)",
            "filters": {"tunnel_id": [tunnel_id]}}
    made = await client.call("POST", f"{base}/policies", body=body, what=what)
    return Alarm(str(made["id"]), to, True)
