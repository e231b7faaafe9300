"""Passkeys (WebAuthn, with the `webauthn` package): a phone's fingerprint or face unlock, or a
security key. A passkey belongs to one address (its "relying party id" is the page's host
name), so one added at http://localhost works there and one added through the tunnel works
at the tunnel's name. IP addresses cannot hold passkeys (the browsers' rule).

The browser half is static/passkey.js. Challenges live in memory for two minutes, keyed by
a random id in a cookie; each is used once."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from reconciler.store import Store, accounts
from webview.doors import is_https

CHALLENGE_COOKIE = "gw_webauthn"
CHALLENGE_TTL = 120.0
RP_NAME = "omen-gateway"


class PasskeyError(ValueError):
    """A passkey that cannot be accepted, in words."""


@dataclass
class Challenge:
    value: bytes
    purpose: str  # "register" | "signin"
    user: str | None
    rp_id: str
    origin: str
    expires: float


def place(request: Request) -> tuple[str, str] | None:
    """(rp_id, origin) for this request's address, or None when it is an IP address."""
    host = request.headers.get("host", "")
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if not name or name.replace(".", "").isdigit() or ":" in name:
        return None
    return name.lower(), ("https://" if is_https(request) else "http://") + host


def _store(request: Request) -> dict[str, Challenge]:
    state = request.app.state
    if not hasattr(state, "challenges"):
        state.challenges = {}
    challenges: dict[str, Challenge] = state.challenges
    now = time.monotonic()
    for key in [k for k, c in challenges.items() if c.expires < now]:
        del challenges[key]
    return challenges


def remember(request: Request, challenge: Challenge) -> str:
    challenges = _store(request)
    if len(challenges) > 1000:  # a flood of option requests: drop the oldest
        for key in list(challenges)[:100]:
            del challenges[key]
    key = secrets.token_urlsafe(16)
    challenges[key] = challenge
    return key


def take(request: Request, purpose: str) -> Challenge:
    """The challenge this browser was given, once."""
    found = _store(request).pop(request.cookies.get(CHALLENGE_COOKIE, ""), None)
    if found is None or found.purpose != purpose:
        raise PasskeyError("this passkey request expired: try again")
    return found


def registration_options(request: Request, user: str, existing: list[dict[str, Any]]) -> tuple[str, str]:
    """(options JSON, challenge key) for adding a passkey for `user` at this address."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    where = place(request)
    if where is None:
        raise PasskeyError("passkeys need a name in the address, not numbers: open this page at localhost")
    rp_id, origin = where
    options = generate_registration_options(
        rp_id=rp_id, rp_name=RP_NAME, user_name=user, user_display_name=user,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=bytes(p["id"])) for p in existing if p["rp_id"] == rp_id])
    key = remember(request, Challenge(options.challenge, "register", user, rp_id, origin,
                                      time.monotonic() + CHALLENGE_TTL))
    return options_to_json(options), key


async def register(request: Request, store: Store, user: str, credential: Any, label: str) -> None:
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import WebAuthnException

    challenge = take(request, "register")
    if challenge.user != user:
        raise PasskeyError("this passkey request was made for someone else")
    try:
        verified = verify_registration_response(
            credential=credential if isinstance(credential, (str, dict)) else json.dumps(credential),
            expected_challenge=challenge.value, expected_rp_id=challenge.rp_id, expected_origin=challenge.origin,
            require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(f"the passkey could not be checked: {exc}") from None
    label = (label or "passkey").strip()[:60]
    await accounts.add_passkey(store, user, verified.credential_id, verified.credential_public_key,
                               verified.sign_count, challenge.rp_id, label)


def signin_options(request: Request, user: str | None, mine: list[dict[str, Any]]) -> tuple[str, str]:
    """(options JSON, challenge key) for signing in at this address; with `user` (after the
    password) only that user's passkeys are offered."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

    where = place(request)
    if where is None:
        raise PasskeyError("passkeys need a name in the address, not numbers: open this page at localhost")
    rp_id, origin = where
    allowed = [PublicKeyCredentialDescriptor(id=bytes(p["id"])) for p in mine if p["rp_id"] == rp_id]
    options = generate_authentication_options(rp_id=rp_id, allow_credentials=allowed or None,
                                              user_verification=UserVerificationRequirement.REQUIRED)
    key = remember(request, Challenge(options.challenge, "signin", user, rp_id, origin,
                                      time.monotonic() + CHALLENGE_TTL))
    return options_to_json(options), key


async def authenticate(request: Request, store: Store, credential: Any) -> str:
    """The user a passkey assertion proves; raises PasskeyError (a bad signature, someone
    else's passkey, a passkey of another address, a replayed or cloned one)."""
    from webauthn import base64url_to_bytes, verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException

    challenge = take(request, "signin")
    try:
        raw = credential if isinstance(credential, dict) else json.loads(credential)
        cred_id = base64url_to_bytes(str(raw.get("rawId") or raw.get("id") or ""))
    except (ValueError, TypeError, AttributeError):
        raise PasskeyError("that is not a passkey answer") from None
    row = await accounts.passkey(store, cred_id)
    if row is None or row["rp_id"] != challenge.rp_id:
        raise PasskeyError("this passkey is not known here")
    if challenge.user is not None and row["user_name"] != challenge.user:
        raise PasskeyError("this passkey belongs to someone else")
    try:
        verified = verify_authentication_response(
            credential=raw, expected_challenge=challenge.value, expected_rp_id=challenge.rp_id,
            expected_origin=challenge.origin, credential_public_key=bytes(row["public_key"]),
            credential_current_sign_count=int(row["sign_count"]), require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(f"the passkey's answer is not valid: {exc}") from None
    await accounts.passkey_used(store, cred_id, verified.new_sign_count)
    return str(row["user_name"])
