"""What the operations record beside the events: each alert message sent (or not), table
`alerts` (reconciler/ops/alerting.py; the page lists them, `Store.recent_alerts`), and each git
pull's outcome, table `sync_commits` (reconciler/ops/gitsync.py). Written at once, not through
the sink: a failure is the caller's to log."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.store.db import Pool

RECORD_TIMEOUT = 5.0  # seconds to wait for a pooled connection
_ALERT = "INSERT INTO alerts (kinds, servers, title, body, targets, ok, error) VALUES (%s, %s, %s, %s, %s, %s, %s)"
_PULL = "INSERT INTO sync_commits (commit, previous, ok, error) VALUES (%s, %s, %s, %s)"


async def record_alert(pool: Pool, kinds: Sequence[str], servers: Sequence[str], title: str, body: str,
                       targets: int, ok: bool, error: str | None) -> None:
    """One message: the alerts' kinds and servers in it, its words, to how many URLs, the outcome."""
    async with pool.connection(timeout=RECORD_TIMEOUT) as conn:
        await conn.execute(_ALERT, (list(kinds), list(servers), title, body, targets, ok, error))


async def record_pull(pool: Pool, commit: str | None, previous: str | None, ok: bool, error: str | None) -> None:
    """One git pull that changed something or failed: the commit it reached and the one before."""
    async with pool.connection(timeout=RECORD_TIMEOUT) as conn:
        await conn.execute(_PULL, (commit, previous, ok, error))
