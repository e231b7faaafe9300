"""Read-only API tokens (issue 25, item 11): what a metrics scraper or a status widget gets
instead of the api-token file, which can do everything the command line can (make users,
reset passwords, stop servers). Made and revoked on Settings -> API tokens
(webview.settings_tokens); a token is shown once, only its SHA-256 is kept.

A read-only token is accepted at the laptop's door only (as the api-token is) and gives the
scope "status": /metrics, /api/status and /api/servers. Not a server's settings (its env
values), not the history, not a page, no change of anything. `ReadTokens` is how the one
authentication backend (webview.infra.auth) looks one up, with its memory."""

from __future__ import annotations

import hashlib
import time

from reconciler.store import Store
from reconciler.store import tokens as sql

PREFIX = "gwr_"  # a read-only token, recognisable in a config file
CACHE_FOR = 5.0  # seconds a looked-up token is trusted without asking PostgreSQL again
MARK_EVERY = 60.0  # seconds between two writes of a token's "last used"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ReadTokens:
    """The page's memory of read-only tokens (one per app, held by webview.infra.page.Page): a token
    looked up is trusted for CACHE_FOR seconds (a name, or None: not a token), and its "last
    used" is written at most every MARK_EVERY seconds."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str | None, float]] = {}  # hash -> (its name or None, when looked up)
        self._marked: dict[str, float] = {}  # hash -> when its "last used" was written

    async def lookup(self, store: Store | None, token: str) -> str | None:
        """The name of the read-only token `token`, or None."""
        if not token.startswith(PREFIX) or store is None:
            return None
        key, now = token_hash(token), time.monotonic()
        cached = self._known.get(key)
        if cached is not None and now - cached[1] < CACHE_FOR:
            name = cached[0]
        else:
            row = await sql.find(store, key)
            name = str(row["name"]) if row else None
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[key] = (name, now)
        if name is not None and now - self._marked.get(key, float("-inf")) > MARK_EVERY:
            self._marked[key] = now
            await sql.used(store, key)
        return name

    def forget(self, key: str) -> None:
        """The token with this hash was revoked: asked again next time."""
        self._known.pop(key, None)
