"""DNS routes for the tunnel through the Cloudflare API: for each hostname, a proxied CNAME to
``<tunnel-id>.cfargotunnel.com``.

Zone lookup (``GET /zones?name=``, the configured zone or the longest suffix that is a zone),
list (``GET /zones/{z}/dns_records?name=``), create (``POST``) or update (``PATCH``). A record is
only ever changed when the gateway created it (remembered in PostgreSQL, table
``tunnel_dns_records``); nothing is ever deleted. The base URL is configurable (tests run a local
fake speaking the same v4 envelope: ``success``, ``errors``, ``result``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import httpx

from reconciler.store.db import Pool

COMMENT = "managed by omen-gateway (tunnel route)"


class CloudflareError(Exception):
    """An API call failed; the message says which call and why, in words."""


def target(tunnel_uuid: str) -> str:
    return f"{tunnel_uuid}.cfargotunnel.com"


class CloudflareAPI:
    def __init__(self, base_url: str, token: str, *, timeout: float = 15.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"})

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, method: str, path: str, params: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None) -> Any:
        what = f"{method} {path}"
        try:
            reply = await self.client.request(method, self.base + path, params=params, json=body)
        except httpx.HTTPError as exc:
            raise CloudflareError(f"Cloudflare API {what}: cannot reach {self.base}: {exc}") from None
        try:
            data = reply.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("success") and not data.get("errors"):
            return data.get("result")
        errors = data.get("errors") if isinstance(data, dict) else None
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors or [] if isinstance(e, dict))
        hint = {400: "incorrect request parameters", 401: "unauthorized: check the API token",
                403: "forbidden: the API token needs Zone:DNS:Edit on this zone", 404: "not found"}.get(
            reply.status_code, f"HTTP {reply.status_code}")
        raise CloudflareError(f"Cloudflare API {what}: {hint}" + (f" ({detail})" if detail else ""))

    async def zone_id(self, name: str) -> str | None:
        result = await self.call("GET", "/zones", {"name": name})
        return str(result[0]["id"]) if result else None

    async def records(self, zone: str, name: str) -> list[dict[str, Any]]:
        return list(await self.call("GET", f"/zones/{zone}/dns_records", {"name": name}) or [])

    async def create_cname(self, zone: str, name: str, content: str) -> dict[str, Any]:
        body = {"type": "CNAME", "name": name, "content": content, "proxied": True, "ttl": 1, "comment": COMMENT}
        return dict(await self.call("POST", f"/zones/{zone}/dns_records", body=body))

    async def update_cname(self, zone: str, record_id: str, name: str, content: str) -> dict[str, Any]:
        body = {"type": "CNAME", "name": name, "content": content, "proxied": True, "ttl": 1}
        return dict(await self.call("PATCH", f"/zones/{zone}/dns_records/{record_id}", body=body))


class Ledger:
    """Which records the gateway created (PostgreSQL, table tunnel_dns_records)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def ours(self) -> set[str]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute("SELECT record_id FROM tunnel_dns_records")).fetchall()
        return {r[0] for r in rows}

    async def remember(self, record_id: str, zone: str, hostname: str, content: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO tunnel_dns_records (record_id, zone_id, hostname, content) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (record_id) DO UPDATE SET hostname = EXCLUDED.hostname, content = EXCLUDED.content,"
                " updated_at = now()", (record_id, zone, hostname, content))


@dataclass(frozen=True)
class Outcome:
    hostname: str
    action: str  # created | updated | unchanged | conflict | error
    message: str

    def __str__(self) -> str:
        return f"{self.hostname}: {self.action}: {self.message}"


async def find_zone(api: CloudflareAPI, hostname: str, zone: str | None) -> tuple[str, str] | None:
    """(zone id, zone name): the configured zone, else the longest suffix of the hostname that is one."""
    labels = hostname.lstrip("*.").split(".")
    names = [zone] if zone else [".".join(labels[i:]) for i in range(len(labels) - 1)]
    for name in names:
        found = await api.zone_id(name)
        if found:
            return found, name
    return None


async def sync(api: CloudflareAPI, ledger: Ledger, tunnel_uuid: str, hostnames: Iterable[str],
               zone: str | None = None) -> list[Outcome]:
    """Make each hostname a proxied CNAME to the tunnel. Never deletes; never touches a record
    the gateway did not create (that is reported as a conflict for a person to resolve)."""
    want = target(tunnel_uuid)
    ours = await ledger.ours()
    out: list[Outcome] = []
    for host in sorted(set(hostnames)):
        try:
            found = await find_zone(api, host, zone)
            if found is None:
                out.append(Outcome(host, "error", f"no zone for {host} in this Cloudflare account "
                                   f"({'zone ' + zone if zone else 'tried every parent domain'})"))
                continue
            zone_id, zone_name = found
            existing = [r for r in await api.records(zone_id, host) if r.get("name") == host]
            mine = [r for r in existing if str(r.get("id")) in ours]
            if not existing:
                rec = await api.create_cname(zone_id, host, want)
                await ledger.remember(str(rec["id"]), zone_id, host, want)
                out.append(Outcome(host, "created", f"proxied CNAME -> {want} in {zone_name}"))
            elif mine and len(mine) == len(existing):
                rec = mine[0]
                if rec.get("type") == "CNAME" and rec.get("content") == want and rec.get("proxied"):
                    out.append(Outcome(host, "unchanged", f"proxied CNAME -> {want}"))
                else:
                    await api.update_cname(zone_id, str(rec["id"]), host, want)
                    await ledger.remember(str(rec["id"]), zone_id, host, want)
                    out.append(Outcome(host, "updated", f"{rec.get('type')} {rec.get('content')} -> proxied "
                                       f"CNAME {want}"))
            else:
                rec = next(r for r in existing if str(r.get("id")) not in ours)
                if rec.get("type") == "CNAME" and rec.get("content") == want and rec.get("proxied"):
                    out.append(Outcome(host, "unchanged", f"proxied CNAME -> {want} (made outside the gateway)"))
                else:
                    out.append(Outcome(host, "conflict", f"a {rec.get('type')} record -> {rec.get('content')} "
                                       "exists that the gateway did not create; it is left alone: delete it or "
                                       f"point it at {want} (proxied) yourself"))
        except CloudflareError as exc:
            out.append(Outcome(host, "error", str(exc)))
    return out
