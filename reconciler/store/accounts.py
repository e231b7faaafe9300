"""The SQL of signing in: users, sessions, second factors (code app, recovery codes, passkeys).
Tables from migrations 0001 and 0011. Hashing and the rules live in webview.infra.users; here only
reads and writes, each one statement or one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString

from psycopg.rows import dict_row

from reconciler.store.db import CONNECT_TIMEOUT
from reconciler.store.queries import Store


async def rows(store: Store, query: LiteralString, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    async with store.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params or {})
        return await cur.fetchall() if cur.description else []


# --- users ---------------------------------------------------------------------------------
async def count_users(store: Store) -> int:
    return int((await rows(store, "SELECT count(*) AS n FROM users"))[0]["n"])


async def list_users(store: Store) -> list[dict[str, Any]]:
    return await rows(store, """
        SELECT u.name, u.created_at, u.totp_secret IS NOT NULL AS totp,
               (SELECT count(*) FROM passkeys p WHERE p.user_name = u.name) AS passkeys,
               (SELECT count(*) FROM sessions s WHERE s.user_name = u.name AND s.expires_at > now()) AS sessions
        FROM users u ORDER BY u.created_at, u.name""")


async def password_hash(store: Store, name: str) -> str | None:
    found = await rows(store, "SELECT password_hash FROM users WHERE name = %(n)s", {"n": name})
    return found[0]["password_hash"] if found else None


async def set_password_hash(store: Store, name: str, hashed: str) -> None:
    await rows(store, "UPDATE users SET password_hash = %(h)s WHERE name = %(n)s", {"h": hashed, "n": name})


async def upsert_user(store: Store, name: str, hashed: str, *, only_if_none: bool = False) -> bool | None:
    """Create the user or set its password (ending its sessions); True when new. With
    `only_if_none`, create it only while no user exists at all (first run), else None."""
    async with store.pool.connection(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
        if only_if_none:
            await conn.execute("LOCK TABLE users IN EXCLUSIVE MODE")  # two setup forms at once: one owner
            cur = await conn.execute("SELECT count(*) FROM users")
            row = await cur.fetchone()
            if row and row[0]:
                return None
        cur = await conn.execute(
            "INSERT INTO users (name, password_hash) VALUES (%(n)s, %(h)s) ON CONFLICT (name)"
            " DO UPDATE SET password_hash = EXCLUDED.password_hash RETURNING (xmax = 0) AS created",
            {"n": name, "h": hashed})
        row = await cur.fetchone()
        created = bool(row and row[0])
        if not created:
            await conn.execute("DELETE FROM sessions WHERE user_name = %(n)s", {"n": name})
    return created


async def delete_user(store: Store, name: str) -> bool:
    """Remove the user (its sessions, codes and passkeys go with it); never the last one."""
    async with store.pool.connection(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
        await conn.execute("LOCK TABLE users IN EXCLUSIVE MODE")
        cur = await conn.execute("SELECT count(*) FROM users")
        row = await cur.fetchone()
        if not row or row[0] <= 1:
            return False
        cur = await conn.execute("DELETE FROM users WHERE name = %(n)s", {"n": name})
        return cur.rowcount > 0


# --- sessions ------------------------------------------------------------------------------
async def insert_session(store: Store, key: str, user: str, expires: datetime, second_factor: bool,
                         door: str) -> None:
    await rows(store, "DELETE FROM sessions WHERE expires_at < now()")
    await rows(store, "INSERT INTO sessions (id, user_name, expires_at, second_factor, door)"
               " VALUES (%(id)s, %(u)s, %(e)s, %(f)s, %(d)s)",
               {"id": key, "u": user, "e": expires, "f": second_factor, "d": door})


async def find_session(store: Store, key: str) -> dict[str, Any] | None:
    found = await rows(store, "SELECT user_name, expires_at, second_factor, door FROM sessions"
                       " WHERE id = %(id)s AND expires_at > now()", {"id": key})
    return found[0] if found else None


async def extend_session(store: Store, key: str, expires: datetime) -> None:
    await rows(store, "UPDATE sessions SET expires_at = %(e)s WHERE id = %(id)s", {"e": expires, "id": key})


async def delete_session(store: Store, key: str) -> None:
    await rows(store, "DELETE FROM sessions WHERE id = %(id)s", {"id": key})


async def delete_sessions(store: Store, user: str) -> int:
    async with store.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
        cur = await conn.execute("DELETE FROM sessions WHERE user_name = %(n)s", {"n": user})
        return cur.rowcount


# --- code app (TOTP) and recovery codes ----------------------------------------------------
async def second_factors(store: Store, name: str) -> dict[str, Any]:
    """{"totp": bool, "pending": secret | None, "passkeys": n, "recovery": unused codes}."""
    found = await rows(store, """
        SELECT u.totp_secret IS NOT NULL AS totp, u.totp_pending AS pending,
               (SELECT count(*) FROM passkeys p WHERE p.user_name = u.name) AS passkeys,
               (SELECT count(*) FROM recovery_codes r WHERE r.user_name = u.name AND r.used_at IS NULL) AS recovery
        FROM users u WHERE u.name = %(n)s""", {"n": name})
    return found[0] if found else {"totp": False, "pending": None, "passkeys": 0, "recovery": 0}


async def set_totp_pending(store: Store, name: str, secret: str | None) -> None:
    await rows(store, "UPDATE users SET totp_pending = %(s)s WHERE name = %(n)s", {"s": secret, "n": name})


async def totp_state(store: Store, name: str) -> tuple[str | None, int]:
    found = await rows(store, "SELECT totp_secret, totp_last_step FROM users WHERE name = %(n)s", {"n": name})
    return (found[0]["totp_secret"], int(found[0]["totp_last_step"])) if found else (None, 0)


async def use_totp_step(store: Store, name: str, step: int) -> bool:
    """Record that the code of time step `step` was used; False when it (or a later one) was
    already: a code is good once."""
    found = await rows(store, "UPDATE users SET totp_last_step = %(s)s WHERE name = %(n)s"
                       " AND totp_last_step < %(s)s RETURNING name", {"s": step, "n": name})
    return bool(found)


async def enable_totp(store: Store, name: str, secret: str, step: int, code_hashes: list[str]) -> None:
    async with store.pool.connection(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
        await conn.execute("UPDATE users SET totp_secret = %(s)s, totp_pending = NULL, totp_last_step = %(t)s"
                           " WHERE name = %(n)s", {"s": secret, "t": step, "n": name})
        await _replace_codes(conn, name, code_hashes)


async def totp_values(store: Store) -> list[dict[str, Any]]:
    """Every user's stored code app secrets (as stored: sealed, or clear from before sealing)."""
    return await rows(store, "SELECT name, totp_secret, totp_pending FROM users"
                      " WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL ORDER BY name")


async def replace_totp_values(store: Store, name: str, old: tuple[str | None, str | None],
                              new: tuple[str | None, str | None]) -> bool:
    """Store `new` (secret, pending) where `old` still is (a change made meanwhile wins)."""
    found = await rows(store, "UPDATE users SET totp_secret = %(s)s, totp_pending = %(p)s WHERE name = %(n)s"
                       " AND totp_secret IS NOT DISTINCT FROM %(os)s AND totp_pending IS NOT DISTINCT FROM %(op)s"
                       " RETURNING name", {"s": new[0], "p": new[1], "n": name, "os": old[0], "op": old[1]})
    return bool(found)


async def disable_totp(store: Store, name: str) -> None:
    await rows(store, "UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE name = %(n)s", {"n": name})


async def replace_recovery_codes(store: Store, name: str, code_hashes: list[str]) -> None:
    async with store.pool.connection(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
        await _replace_codes(conn, name, code_hashes)


async def _replace_codes(conn: Any, name: str, code_hashes: list[str]) -> None:
    await conn.execute("DELETE FROM recovery_codes WHERE user_name = %(n)s", {"n": name})
    for code_hash in code_hashes:
        await conn.execute("INSERT INTO recovery_codes (user_name, code_hash) VALUES (%(n)s, %(h)s)",
                           {"n": name, "h": code_hash})


async def use_recovery_code(store: Store, name: str, code_hash: str) -> bool:
    found = await rows(store, "UPDATE recovery_codes SET used_at = now() WHERE user_name = %(n)s"
                       " AND code_hash = %(h)s AND used_at IS NULL RETURNING code_hash", {"n": name, "h": code_hash})
    return bool(found)


# --- passkeys ------------------------------------------------------------------------------
async def add_passkey(store: Store, user: str, cred_id: bytes, public_key: bytes, sign_count: int, rp_id: str,
                      label: str) -> None:
    await rows(store, "INSERT INTO passkeys (id, user_name, public_key, sign_count, rp_id, label)"
               " VALUES (%(id)s, %(u)s, %(k)s, %(c)s, %(rp)s, %(l)s)",
               {"id": cred_id, "u": user, "k": public_key, "c": sign_count, "rp": rp_id, "l": label})


async def passkeys_of(store: Store, user: str) -> list[dict[str, Any]]:
    return await rows(store, "SELECT id, rp_id, label, created_at, last_used_at FROM passkeys"
                      " WHERE user_name = %(u)s ORDER BY created_at", {"u": user})


async def passkey(store: Store, cred_id: bytes) -> dict[str, Any] | None:
    found = await rows(store, "SELECT id, user_name, public_key, sign_count, rp_id FROM passkeys"
                       " WHERE id = %(id)s", {"id": cred_id})
    return found[0] if found else None


async def passkey_used(store: Store, cred_id: bytes, sign_count: int) -> None:
    await rows(store, "UPDATE passkeys SET sign_count = %(c)s, last_used_at = now() WHERE id = %(id)s",
               {"c": sign_count, "id": cred_id})


async def delete_passkey(store: Store, user: str, cred_id: bytes) -> bool:
    found = await rows(store, "DELETE FROM passkeys WHERE id = %(id)s AND user_name = %(u)s RETURNING id",
                       {"id": cred_id, "u": user})
    return bool(found)
