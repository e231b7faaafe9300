"""The DNS records the gateway created for the tunnel (table `tunnel_dns_records`): the only
ones reconciler/tunnel/dns.py's `sync` ever changes or deletes."""

from __future__ import annotations

from reconciler.store.db import Pool


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

    async def made(self) -> list[tuple[str, str, str, str]]:
        """(record id, zone id, hostname, content) of every record the gateway created."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT record_id, zone_id, hostname, content FROM tunnel_dns_records")
            return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]

    async def forget(self, record_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM tunnel_dns_records WHERE record_id = %s", (record_id,))
