"""Passkeys (WebAuthn, with the `webauthn` package): a phone's fingerprint or face unlock, or a
security key. A passkey belongs to one address (its "relying party id" is the page's host
name), so one added at http://localhost works there and one added through the tunnel works
at the tunnel's name. IP addresses cannot hold passkeys (the browsers' rule).

The browser half is static/passkey.js. A challenge travels in the browser's own cookie,
signed by the gateway (webview.infra.security.sign) and good for two minutes: nothing is kept here
per visitor, so a flood of option requests from anywhere fills no memory and evicts nobody
else's challenge (issue 25, item 12). Each is good once: a used one is remembered until it
expires (`Passkeys`, the page's memory of them)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from reconciler.store import Store, accounts
from webview.infra import cookies
from webview.infra.doors import door_of, is_https
from webview.infra.security import sign, unsign

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
    expires: float  # time.time()


def place(request: Request) -> tuple[str, str] | None:
    """(rp_id, origin) for this request's address, or None when it is an IP address."""
    host = request.headers.get("host", "")
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if not name or name.replace(".", "").isdigit() or ":" in name:
        return None
    return name.lower(), ("https://" if is_https(request) else "http://") + host


class Passkeys:
    """Passkey challenges at one page (one per app, held by webview.infra.page.Page): made into the
    browser's cookie and taken back with the page's key, and the ones answered already (their
    value -> when they expire), remembered until they expire so each is good once."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._used: dict[str, float] = {}

    def used(self) -> dict[str, float]:
        """Challenges already answered, expired ones dropped."""
        now = time.time()
        for key in [k for k, until in self._used.items() if until < now]:
            del self._used[key]
        return self._used

    def remember(self, request: Request, challenge: Challenge) -> str:
        """The challenge as the value of this browser's cookie: signed, so only this gateway can
        have made it, and holding all that `take` needs."""
        return sign(self.secret, {
            "c": base64.urlsafe_b64encode(challenge.value).decode(), "p": challenge.purpose, "u": challenge.user,
            "rp": challenge.rp_id, "o": challenge.origin, "d": door_of(request.scope), "exp": challenge.expires})

    def take(self, request: Request, purpose: str) -> Challenge:
        """The challenge this browser was given here, once."""
        found = unsign(self.secret, cookies.get(request, cookies.CHALLENGE))
        expired = PasskeyError("this passkey request expired: try again")
        if found is None or found.get("p") != purpose or found.get("d") != door_of(request.scope):
            raise expired
        used, key = self.used(), str(found["c"])
        if key in used:
            raise expired
        until = float(str(found["exp"]))
        used[key] = until
        user = found.get("u")
        return Challenge(base64.urlsafe_b64decode(key), purpose, None if user is None else str(user),
                         str(found["rp"]), str(found["o"]), until)

    def registration_options(self, request: Request, user: str, existing: list[dict[str, Any]]) -> tuple[str, str]:
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
            exclude_credentials=[PublicKeyCredentialDescriptor(id=bytes(p["id"]))
                                 for p in existing if p["rp_id"] == rp_id])
        key = self.remember(request, Challenge(options.challenge, "register", user, rp_id, origin,
                                               time.time() + CHALLENGE_TTL))
        return options_to_json(options), key

    async def register(self, request: Request, store: Store, user: str, credential: dict[str, Any] | str,
                       label: str) -> None:
        from webauthn import verify_registration_response
        from webauthn.helpers.exceptions import WebAuthnException

        challenge = self.take(request, "register")
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

    def signin_options(self, request: Request, user: str | None, mine: list[dict[str, Any]]) -> tuple[str, str]:
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
        key = self.remember(request, Challenge(options.challenge, "signin", user, rp_id, origin,
                                               time.time() + CHALLENGE_TTL))
        return options_to_json(options), key

    async def authenticate(self, request: Request, store: Store, credential: dict[str, Any] | str) -> str:
        """The user a passkey assertion proves; raises PasskeyError (a bad signature, someone
        else's passkey, a passkey of another address, a replayed or cloned one)."""
        from webauthn import base64url_to_bytes, verify_authentication_response
        from webauthn.helpers.exceptions import WebAuthnException

        challenge = self.take(request, "signin")
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
