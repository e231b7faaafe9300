"""The SQL of read-only API tokens (migration 0025): hashes only; the rules and the token
itself live in webview.infra.tokens."""

from __future__ import annotations

from typing import Any

from reconciler.store.accounts import rows
from reconciler.store.queries import Store


async def add(store: Store, token_hash: str, name: str, scope: str, by: str) -> None:
    await rows(store, "INSERT INTO api_tokens (id, name, scope, created_by) VALUES (%(id)s, %(n)s, %(s)s, %(b)s)",
               {"id": token_hash, "n": name, "s": scope, "b": by})


async def find(store: Store, token_hash: str) -> dict[str, Any] | None:
    found = await rows(store, "SELECT id, name, scope FROM api_tokens WHERE id = %(id)s", {"id": token_hash})
    return found[0] if found else None


async def used(store: Store, token_hash: str) -> None:
    await rows(store, "UPDATE api_tokens SET last_used_at = now() WHERE id = %(id)s", {"id": token_hash})


async def listed(store: Store) -> list[dict[str, Any]]:
    return await rows(store, "SELECT id, name, scope, created_by, created_at, last_used_at FROM api_tokens"
                      " ORDER BY created_at, name")


async def revoke(store: Store, token_hash: str) -> str | None:
    """The revoked token's name, or None when there was none."""
    found = await rows(store, "DELETE FROM api_tokens WHERE id = %(id)s RETURNING name", {"id": token_hash})
    return str(found[0]["name"]) if found else None
