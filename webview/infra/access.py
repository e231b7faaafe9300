"""Optional Cloudflare Access: with a team and an audience tag configured, every page request must
carry a valid `Cf-Access-Jwt-Assertion` (RS256, signed by a key from the team's certs endpoint,
cached; audience, issuer and expiry checked), and the Access identity is the user.

Configured by `GATEWAY_ACCESS_TEAM` and `GATEWAY_ACCESS_AUD` (and, for tests, a certs URL in
`GATEWAY_ACCESS_CERTS_URL`), or `[web] access_team` / `access_aud` in gateway.toml.
webview.infra.auth asks `identity()`: at the tunnel door every request needs a valid token (/static
excepted); at the local door one is believed when sent."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.spec import WebSettings

KEYS_TTL = 3600.0  # seconds to trust fetched keys
REFETCH_GAP = 30.0  # an unknown key id refetches at most this often


class AccessDenied(Exception):
    pass


@dataclass
class Access:
    team: str
    aud: str
    certs_url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.domain = self.team if "." in self.team else f"{self.team}.cloudflareaccess.com"
        self.issuer = f"https://{self.domain}"
        self.certs_url = self.certs_url or f"{self.issuer}/cdn-cgi/access/certs"

    @classmethod
    def from_settings(cls, web: WebSettings | None = None) -> Access | None:
        team = os.environ.get("GATEWAY_ACCESS_TEAM") or (web.access_team if web else None)
        aud = os.environ.get("GATEWAY_ACCESS_AUD") or (web.access_aud if web else None)
        if not team or not aud:
            return None
        return cls(team, aud, os.environ.get("GATEWAY_ACCESS_CERTS_URL", ""))

    async def _key(self, kid: str) -> Any:
        now = time.monotonic()
        stale = now - self.fetched_at > KEYS_TTL
        if kid not in self.keys or stale:
            async with self._lock:
                if (kid not in self.keys and now - self.fetched_at > REFETCH_GAP) or stale:
                    await self._fetch()
        if kid not in self.keys:
            raise AccessDenied(f"the Access token was signed by an unknown key ({kid})")
        return self.keys[kid]

    async def _fetch(self) -> None:
        import httpx  # imported when Access is used: httpx and jwt add ~17 MB to every gateway
        import jwt

        try:
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
                response = await http.get(self.certs_url)
                response.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise AccessDenied(f"cannot fetch the Access keys from {self.certs_url}: {exc}") from None
        self.keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
        self.fetched_at = time.monotonic()

    async def identity(self, token: str) -> str:
        """The email (or service token name) of a valid Access token; raises AccessDenied."""
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid") or ""
        except jwt.PyJWTError as exc:
            raise AccessDenied(f"the Access token is malformed: {exc}") from None
        key = await self._key(kid)
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=self.aud, issuer=self.issuer,
                                options={"require": ["exp", "aud", "iss"]}, leeway=30)
        except jwt.PyJWTError as exc:
            raise AccessDenied(f"the Access token is not valid: {exc}") from None
        who = claims.get("email") or claims.get("common_name") or claims.get("sub")
        if not who:
            raise AccessDenied("the Access token names nobody")
        return str(who)
