"""Second-step secrets sealed at rest (issue 25, item 2): the code app's secret of each user
(`users.totp_secret`, and `totp_pending` while it is being set up) is kept in PostgreSQL
encrypted with a key that lives in the data folder (`secrets.key`, readable by this user
only) and never in a backup. Whoever holds a database dump or a backup, but not the data
folder, holds no code generator.

As Authelia (storage encryption_key: AES-256-GCM over the TOTP secrets, the key outside the
database) and Grafana (secret_key: a key in its own config encrypting secrets in its database)
do it: AES-256-GCM, a fresh 96-bit nonce per value, and the user and column as associated data
so a sealed value cannot be moved to another user or column. Stored as
`sealed:v1:<base64url(nonce + ciphertext + tag)>`; a value without the prefix is an old clear
one (sealed at the next start).

A backup restored where the key is not (a new laptop) cannot open those values: the restore
says so first, in words, and the owner sets up their code app again."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.platform.fsutil import write_secret

KEY_FILE = "secrets.key"
PREFIX = "sealed:v1:"
NONCE = 12


class SealError(ValueError):
    """A sealed value that this key cannot open (another machine's key, or damaged)."""


def context(user: str, column: str) -> str:
    return f"users.{column}:{user}"


@dataclass(frozen=True)
class Box:
    key: bytes

    @property
    def key_id(self) -> str:
        """A short name of the key (not the key): which key sealed a backup's values."""
        return hashlib.sha256(b"omen-gateway secrets key id\0" + self.key).hexdigest()[:16]

    def seal(self, text: str, where: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(NONCE)
        sealed = AESGCM(self.key).encrypt(nonce, text.encode(), where.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str, where: str) -> str:
        """The clear text of a sealed value (a clear value, from before sealing, as it is);
        raises SealError when this key did not seal it for `where`."""
        if not is_sealed(value):
            return value
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        body = value[len(PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return AESGCM(self.key).decrypt(raw[:NONCE], raw[NONCE:], where.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError(f"sealed with another key ({type(exc).__name__})") from None

    def opens(self, value: str, where: str) -> bool:
        try:
            self.open(value, where)
        except SealError:
            return False
        return True


async def seal_users(store: Any, box: Box) -> tuple[list[str], list[str]]:
    """At start: every code app secret still in clear (from before sealing) sealed now. Returns
    (users sealed now, users whose sealed secret this key cannot open: their code app must be
    set up again, or the data folder's secrets.key brought back; nothing is deleted)."""
    from reconciler.store import accounts

    sealed, unreadable = [], []
    for row in await accounts.totp_values(store):
        name = row["name"]
        old = (row["totp_secret"], row["totp_pending"])
        new = tuple(None if v is None else v if is_sealed(v) else box.seal(v, context(name, c))
                    for v, c in zip(old, ("totp_secret", "totp_pending")))
        if new != old and await accounts.replace_totp_values(store, name, old, (new[0], new[1])):
            sealed.append(name)
        if is_sealed(old[0]) and not box.opens(str(old[0]), context(name, "totp_secret")):
            unreadable.append(name)
    return sealed, unreadable


def is_sealed(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def load(data_dir: Path) -> Box | None:
    """The data folder's key, or None when it has none (yet)."""
    path = key_path(data_dir)
    try:
        return Box(bytes.fromhex(path.read_text(encoding="utf-8").strip()))
    except FileNotFoundError:
        return None
    except ValueError:
        raise SealError(f"{path} is damaged: it is not a key (restore it from where you keep the data "
                        "folder, or remove it: then everyone sets up their code app again)") from None


def load_or_create(data_dir: Path) -> Box:
    """The data folder's key, made (256 random bits, a file only this user can read) on first use."""
    found = load(data_dir)
    if found is not None:
        return found
    path = key_path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    write_secret(tmp, os.urandom(32).hex() + "\n")
    try:
        os.link(tmp, path)  # only if there is none: two first starts at once agree on one key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    found = load(data_dir)
    assert found is not None
    return found
