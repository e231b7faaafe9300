"""The code app (TOTP, RFC 6238 with pyotp): enrolment QR code as inline SVG (segno), codes
accepted once each (the time step used is stored, so a code seen over a shoulder or replayed
is refused), and recovery codes shown once (only their SHA-256 is kept). The secret is kept
sealed with the data folder's key (reconciler.store.secretbox), never in clear in the database or a
backup; `box` is that key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from reconciler.store import secretbox
from reconciler.store import Store, accounts
from reconciler.store.secretbox import Box, SealError

ISSUER = "omen-gateway"
STEP = 30  # seconds per code
DRIFT = 1  # steps either side accepted: a phone's clock a little off still works
RECOVERY_CODES = 10


def new_secret() -> str:
    import pyotp

    return pyotp.random_base32()


def uri(secret: str, user: str) -> str:
    import pyotp

    return pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=ISSUER)


def qr_svg(text: str) -> str:
    """The QR code as an <svg> element to put in the page (no image file, no script)."""
    import segno

    return segno.make(text, error="m").svg_inline(scale=5, border=2, dark="#111", light="#fff",
                                                  omitsize=False, title="QR code for your code app")


def grouped(secret: str) -> str:
    """The secret as a person types it into an app: groups of four."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code `code` is (within DRIFT), else None."""
    import pyotp

    code = "".join(c for c in code if c in "0123456789")
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP)
    for step in range(current - DRIFT, current + DRIFT + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _open(box: Box, user: str, column: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return box.open(value, secretbox.context(user, column))
    except SealError:  # another machine's key (a restored backup): as if there were none
        return None


async def pending(store: Store, box: Box, user: str) -> str:
    """The secret of a code app being set up (made and kept, sealed, when there is none)."""
    factors = await accounts.second_factors(store, user)
    secret = _open(box, user, "totp_pending", factors["pending"])
    if secret is None:
        secret = new_secret()
        await accounts.set_totp_pending(store, user, box.seal(secret, secretbox.context(user, "totp_pending")))
    return secret


async def check(store: Store, box: Box, user: str, code: str) -> bool:
    """A code from the user's app, good now and not used before; it is used up here."""
    sealed, last = await accounts.totp_state(store, user)
    secret = _open(box, user, "totp_secret", sealed)
    if secret is None:
        return False
    step = matching_step(secret, code)
    if step is None or step <= last:
        return False
    return await accounts.use_totp_step(store, user, step)


def new_recovery_codes() -> list[str]:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
    return ["-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
            for _ in range(RECOVERY_CODES)]


CODES_FILE = "omen-gateway-recovery-codes.txt"


def codes_text(user: str, codes: list[str], where: str = "") -> str:
    """The recovery codes as a text file to keep (each works once, instead of a code)."""
    made = time.strftime("%Y-%m-%d %H:%M")
    lines = [f"omen-gateway recovery codes for {user}" + (f" at {where}" if where else "") + f", made {made}",
             "Each code lets you sign in once instead of a code from your app. Keep this file safe;",
             "making new codes ends these.", ""]
    return "\r\n".join(lines + [f"{i:2}. {code}" for i, code in enumerate(codes, 1)]) + "\r\n"


def code_hash(code: str) -> str:
    cleaned = "".join(c for c in code.lower() if c.isalnum())
    return hashlib.sha256(cleaned.encode()).hexdigest()


async def confirm(store: Store, box: Box, user: str, code: str) -> list[str] | None:
    """Turn the code app on when `code` matches the pending secret; returns the new recovery
    codes (to show once), else None."""
    factors = await accounts.second_factors(store, user)
    secret = _open(box, user, "totp_pending", factors["pending"])
    step = matching_step(secret, code) if secret else None
    if secret is None or step is None:
        return None
    codes = new_recovery_codes()
    await accounts.enable_totp(store, user, box.seal(secret, secretbox.context(user, "totp_secret")), step,
                               [code_hash(c) for c in codes])
    return codes


async def use_recovery(store: Store, user: str, code: str) -> bool:
    return await accounts.use_recovery_code(store, user, code_hash(code))
