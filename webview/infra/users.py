"""Users and sessions in PostgreSQL (the `users` and `sessions` tables of migration 0001).

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).
A session cookie holds a random token; the table keeps only its SHA-256, so a leaked
database backup holds no usable session."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from reconciler.core.names import RESERVED_NAMES
from reconciler.store import Store, accounts

if TYPE_CHECKING:
    from argon2 import PasswordHasher

NAME_MAX = 128
NAME_MARKS = frozenset(" ._@+-'")  # besides letters and digits (of any alphabet)
SESSION_TTL = timedelta(days=7)
REFRESH_AFTER = timedelta(hours=1)  # extend a used session at most this often
MIN_PASSWORD = 8
CACHE_FOR = 5.0  # seconds a looked-up session is trusted without asking PostgreSQL again


@functools.cache
def _argon2() -> tuple[PasswordHasher, str]:
    """The argon2id hasher, and a hash to verify against when the user does not exist (so
    both answers take as long). Made on first use, in a worker thread: one hash costs
    ~0.4 s of CPU and 64 MB for a moment, which a gateway nobody signs in to never pays."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    return hasher, hasher.hash("not a real password")


class UserError(ValueError):
    """A user name or password that cannot be accepted, in words."""


@dataclass(frozen=True)
class Session:
    user: str
    token_hash: str
    expires_at: datetime
    second_factor: bool = False
    door: str = "local"


RESERVED = RESERVED_NAMES | {"cli"}  # names the gateway uses for itself (the CLI's actor too)


def normal_name(name: str) -> str:
    """A name as typed, made comparable: Unicode NFC, no spaces around it, one space between
    its words ("  Ada   Lovelace " -> "Ada Lovelace")."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def check_name(name: str) -> str:
    """A person's name ("Ada Lovelace", "José", "ada") or a short one; `normal_name` first."""
    if (not name or len(name) > NAME_MAX or not name[0].isalnum() or name != normal_name(name)
            or any(not (c.isalnum() or c in NAME_MARKS) for c in name)):
        raise UserError(f"{name!r} is not a user name: use letters, digits, spaces and . _ @ + - ' "
                        f"(up to {NAME_MAX}), starting with a letter or digit")
    if name.lower() in RESERVED:
        raise UserError(f"{name!r} is a name the gateway uses itself: pick another one")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    return password


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def set_user(store: Store, name: str, password: str, *, sessions: Sessions | None,
                   first: bool = False) -> bool:
    """Create the user, or set a new password; True when the user is new. Setting a new
    password ends the user's sessions (and `sessions` forgets them: the running page's memory,
    None where no page runs). With `first`, only while nobody exists yet (first run): raises
    UserError when someone does."""
    check_name(name)
    password = check_password(password)
    hasher, _ = await asyncio.to_thread(_argon2)
    hashed = await asyncio.to_thread(hasher.hash, password)
    created = await accounts.upsert_user(store, name, hashed, only_if_none=first)
    if created is None:
        raise UserError("this gateway already has an owner: sign in instead")
    if not created and sessions is not None:
        sessions.forget(name)
    return created


async def count_users(store: Store) -> int:
    return await accounts.count_users(store)


async def verify(store: Store, name: str, password: str) -> bool:
    """The password is this user's. Takes one argon2 verification either way."""
    stored_hash = await accounts.password_hash(store, name)
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    hasher, dummy = await asyncio.to_thread(_argon2)
    stored = stored_hash or dummy
    try:
        ok = await asyncio.to_thread(hasher.verify, stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if ok and stored_hash and hasher.check_needs_rehash(stored):
        await accounts.set_password_hash(store, name, await asyncio.to_thread(hasher.hash, password))
    return ok and stored_hash is not None


async def new_session(store: Store, user: str, second_factor: bool = False, door: str = "local") -> str:
    """A fresh session for `user`; returns the cookie token (only its hash is stored). It
    remembers whether a second factor was given and at which door it was made."""
    token = secrets.token_urlsafe(32)
    await accounts.insert_session(store, token_hash(token), user, datetime.now(UTC) + SESSION_TTL,
                                  second_factor, door)
    return token


class Sessions:
    """The page's memory of sessions (one per app, held by webview.infra.page.Page): a session looked
    up in PostgreSQL is trusted for CACHE_FOR seconds without asking again, and the same
    session asked for many times at once is one query. Ending a session goes through here, so
    the memory never outlives the row."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Session, float]] = {}  # token hash -> (session, when looked up)
        self._asking: dict[str, asyncio.Future[Session | None]] = {}

    async def find(self, store: Store, token: str) -> Session | None:
        """The live session for a cookie token, extended when it is in use (sliding expiry)."""
        key = token_hash(token)
        cached = self._seen.get(key)
        if cached is not None and time.monotonic() - cached[1] < CACHE_FOR and \
                cached[0].expires_at > datetime.now(UTC):
            return cached[0]
        pending = self._asking.get(key)
        if pending is not None:  # the same session asked for many times at once: one query
            return await asyncio.shield(pending)
        task = asyncio.ensure_future(self._lookup(store, key))
        self._asking[key] = task
        try:
            return await asyncio.shield(task)
        except Exception:
            if cached is not None and cached[0].expires_at > datetime.now(UTC):
                return cached[0]  # PostgreSQL is away: a session seen recently stays good until it expires
            raise
        finally:
            if task.done():
                self._asking.pop(key, None)
            else:
                task.add_done_callback(lambda _: self._asking.pop(key, None))

    async def _lookup(self, store: Store, key: str) -> Session | None:
        row = await accounts.find_session(store, key)
        if row is None:
            self._seen.pop(key, None)
            return None
        expires = row["expires_at"]
        now = datetime.now(UTC)
        if expires - now < SESSION_TTL - REFRESH_AFTER:
            expires = now + SESSION_TTL
            await accounts.extend_session(store, key, expires)
        session = Session(row["user_name"], key, expires, row["second_factor"], row["door"])
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (session, time.monotonic())
        return session

    def forget(self, user: str) -> None:
        """`user`'s sessions are asked again (a new password, the user removed)."""
        for key in [k for k, (sess, _) in self._seen.items() if sess.user == user]:
            self._seen.pop(key, None)

    def forget_all(self) -> None:
        """After a restore: no session seen before is trusted from memory (the table was replaced)."""
        self._seen.clear()

    async def end(self, store: Store, token: str) -> None:
        self._seen.pop(token_hash(token), None)
        await accounts.delete_session(store, token_hash(token))

    async def end_all(self, store: Store, user: str) -> int:
        """Sign `user` out everywhere: every browser, every phone."""
        self.forget(user)
        return await accounts.delete_sessions(store, user)
