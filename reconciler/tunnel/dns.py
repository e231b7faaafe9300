"""DNS routes for the tunnel through the Cloudflare API: for each hostname, a proxied CNAME to
``<tunnel-id>.cfargotunnel.com``.

Zone lookup (``GET /zones?name=``, the configured zone or the longest suffix that is a zone),
list (``GET /zones/{z}/dns_records?name=``), create (``POST``) or update (``PATCH``). A record is
only ever changed when the gateway created it (remembered in PostgreSQL, table
``tunnel_dns_records``). A record the gateway created is deleted once its hostname is gone from
every server (the server or its domain was removed); a record it did not create is never
touched (its SQL: `reconciler/store/dns_records.py`). The base URL is configurable (tests run a local fake speaking the same v4 envelope).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.store.dns_records import Ledger
from reconciler.tunnel.cfapi import Client, CloudflareError

__all__ = ["COMMENT", "CloudflareAPI", "CloudflareError", "Ledger", "Outcome", "sync", "target"]

COMMENT = "managed by omen-gateway (tunnel route)"


def target(tunnel_uuid: str) -> str:
    return f"{tunnel_uuid}.cfargotunnel.com"


class CloudflareAPI(Client):
    """The DNS calls (errors name the zone: "this token cannot edit DNS for example.com")."""

    async def zone_id(self, name: str) -> str | None:
        result = await self.call("GET", "/zones", {"name": name}, what={"zone": name})
        return str(result[0]["id"]) if result else None

    async def records(self, zone: str, name: str, zone_name: str = "") -> list[dict[str, Any]]:
        return await self.all(f"/zones/{zone}/dns_records", {"name": name}, what={"zone": zone_name or name})

    async def create_cname(self, zone: str, name: str, content: str, zone_name: str = "") -> dict[str, Any]:
        body = {"type": "CNAME", "name": name, "content": content, "proxied": True, "ttl": 1, "comment": COMMENT}
        return dict(await self.call("POST", f"/zones/{zone}/dns_records", body=body, what={"zone": zone_name or name}))

    async def update_cname(self, zone: str, record_id: str, name: str, content: str,
                           zone_name: str = "") -> dict[str, Any]:
        body = {"type": "CNAME", "name": name, "content": content, "proxied": True, "ttl": 1}
        return dict(await self.call("PATCH", f"/zones/{zone}/dns_records/{record_id}", body=body,
                                    what={"zone": zone_name or name}))

    async def delete_record(self, zone: str, record_id: str, name: str) -> None:
        await self.call("DELETE", f"/zones/{zone}/dns_records/{record_id}", what={"zone": name})


@dataclass(frozen=True)
class Outcome:
    hostname: str
    action: str  # created | updated | unchanged | removed | conflict | error
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
               zone: str | None = None, keep: Iterable[str] = ()) -> list[Outcome]:
    """Make each hostname a proxied CNAME to the tunnel; delete the records the gateway made
    for hostnames no server has any more (`keep`: hostnames still wanted although not routed
    now, e.g. waiting for a port). Never touches a record the gateway did not create (a clash
    is reported as a conflict for a person to resolve)."""
    want = target(tunnel_uuid)
    wanted = sorted(set(hostnames))
    ours = await ledger.ours()
    out: list[Outcome] = []
    for host in wanted:
        try:
            out.append(await _one(api, ledger, ours, host, want, zone))
        except CloudflareError as exc:
            out.append(Outcome(host, "error", str(exc)))
    still = set(wanted) | set(keep)
    for record_id, zone_id, host, content in await ledger.made():
        if host in still:
            continue
        try:
            await api.delete_record(zone_id, record_id, host)
        except CloudflareError as exc:
            if exc.status != 404:  # already gone in the dashboard: forget it all the same
                out.append(Outcome(host, "error", f"could not remove its DNS record: {exc}"))
                continue
        await ledger.forget(record_id)
        out.append(Outcome(host, "removed", f"removed the DNS record the gateway made for it (CNAME -> {content})"))
    return out


async def _one(api: CloudflareAPI, ledger: Ledger, ours: set[str], host: str, want: str,
               zone: str | None) -> Outcome:
    found = await find_zone(api, host, zone)
    if found is None:
        return Outcome(host, "error", f"no zone for {host} in this Cloudflare account "
                       f"({'zone ' + zone if zone else 'tried every parent domain'}): if the domain is in your "
                       "account, give the token the DNS edit permission for it; if not, add the domain to "
                       "Cloudflare first")
    zone_id, zone_name = found
    existing = [r for r in await api.records(zone_id, host, zone_name) if r.get("name") == host]
    mine = [r for r in existing if str(r.get("id")) in ours]
    if not existing:
        rec = await api.create_cname(zone_id, host, want, zone_name)
        await ledger.remember(str(rec["id"]), zone_id, host, want)
        return Outcome(host, "created", f"proxied CNAME -> {want} in {zone_name}")
    if mine and len(mine) == len(existing):
        rec = mine[0]
        if rec.get("type") == "CNAME" and rec.get("content") == want and rec.get("proxied"):
            return Outcome(host, "unchanged", f"proxied CNAME -> {want}")
        await api.update_cname(zone_id, str(rec["id"]), host, want, zone_name)
        await ledger.remember(str(rec["id"]), zone_id, host, want)
        return Outcome(host, "updated", f"{rec.get('type')} {rec.get('content')} -> proxied CNAME {want}")
    rec = next(r for r in existing if str(r.get("id")) not in ours)
    if rec.get("type") == "CNAME" and rec.get("content") == want and rec.get("proxied"):
        return Outcome(host, "unchanged", f"proxied CNAME -> {want} (made outside the gateway)")
    return Outcome(host, "conflict", f"a {rec.get('type')} record -> {rec.get('content')} exists that the gateway "
                   f"did not create; it is left alone: delete it or point it at {want} (proxied) yourself")
