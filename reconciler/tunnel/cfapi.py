"""A small client of Cloudflare's v4 API (httpx, imported when a client is made).

Why not the official ``cloudflare`` SDK: measured on this machine (bench/cloudflare_client.py),
importing it and touching the four resources the gateway uses takes 2-5 s and 91-93 MB RSS
in a fresh interpreter, against 0.26-0.35 s and 26 MB for httpx (bare Python: 8.6 MB); the gateway
needs seven endpoints.

Every answer is the v4 envelope ``{"success", "errors", "messages", "result", "result_info"}``;
lists are paged (``page``, ``per_page``; ``result_info.total_pages``). A failure is a
`CloudflareError` whose message says in words what the token cannot do and what to add
("this token cannot edit DNS for example.com: add the DNS edit permission"); Cloudflare's
codes stay in its `detail`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

DEFAULT_API = "https://api.cloudflare.com/client/v4"
PER_PAGE = 50
DNS_EDIT = "add the DNS edit permission (Zone → DNS → Edit) for it"
TUNNEL_EDIT = "add the Cloudflare Tunnel edit permission (Account → Cloudflare Tunnel → Edit)"
NOTIFY_EDIT = "add the Notifications edit permission (Account → Notifications → Edit)"


class CloudflareError(Exception):
    """An API call failed; `str()` is the sentence for a person, `detail` the codes."""

    def __init__(self, words: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(words)
        self.words, self.detail, self.status = words, detail, status


def _denied(method: str, path: str, what: dict[str, str]) -> str:
    """What a 401/403 on this call means, in words (`what` names the zone or the account)."""
    zone, account = what.get("zone", "this domain"), what.get("account", "this account")
    if "/dns_records" in path:
        verb = "read" if method == "GET" else "edit"
        return f"this token cannot {verb} DNS for {zone}: {DNS_EDIT}"
    if "/cfd_tunnel" in path:
        verb = "see the tunnels of" if method == "GET" else "create or change tunnels in"
        return f"this token cannot {verb} {account}: {TUNNEL_EDIT}"
    if "/alerting/" in path:
        return f"this token cannot set up notifications in {account}: {NOTIFY_EDIT}"
    if path.startswith("/user/tokens/verify"):
        return "Cloudflare did not accept this token (mistyped, expired or deleted?): create a new one"
    if path.startswith("/zones"):
        return f"this token cannot see {zone}: {DNS_EDIT}"
    if path.startswith("/accounts"):
        return f"this token cannot see {account}: {TUNNEL_EDIT}"
    return "this token is not allowed to do that"


class Client:
    def __init__(self, base_url: str, token: str, *, timeout: float = 15.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        import httpx  # the daemon starts without it; only a Cloudflare call needs it

        self._httpx = httpx
        self.base = base_url.rstrip("/")
        self.host = re.sub(r"^https?://", "", self.base).split("/", 1)[0]
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False,
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"})

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def envelope(self, method: str, path: str, params: dict[str, Any] | None = None,
                       body: dict[str, Any] | None = None, what: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            reply = await self.client.request(method, self.base + path, params=params, json=body)
        except self._httpx.HTTPError as exc:
            raise CloudflareError(f"cannot reach Cloudflare ({self.host}): check this laptop's internet "
                                  "connection", f"{method} {path}: cannot reach {self.base}: {exc}") from None
        try:
            data = reply.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("success") and not data.get("errors"):
            return data
        errors = data.get("errors") if isinstance(data, dict) else None
        codes = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors or [] if isinstance(e, dict))
        detail = f"{method} {path}: HTTP {reply.status_code}" + (f" ({codes})" if codes else "")
        status = reply.status_code
        if status in (401, 403) or any(isinstance(e, dict) and e.get("code") in (9109, 10000, 10001)
                                       for e in errors or []):
            words = _denied(method, path, what or {})
        elif status == 429:
            words = "Cloudflare asks to slow down (too many requests): it is tried again in a minute"
        elif status >= 500:
            words = f"Cloudflare had a problem (HTTP {status}): it is tried again in a few minutes"
        elif status == 404:
            words = "Cloudflare does not know this (it may have been deleted in the dashboard)"
        else:
            words = f"Cloudflare refused the request: {codes or f'HTTP {status}'}"
        raise CloudflareError(words, detail, status)

    async def call(self, method: str, path: str, params: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None, what: dict[str, str] | None = None) -> Any:
        return (await self.envelope(method, path, params, body, what)).get("result")

    async def pages(self, path: str, params: dict[str, Any] | None = None,
                    what: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paged list."""
        page = 1
        while True:
            data = await self.envelope("GET", path, {**(params or {}), "page": page, "per_page": PER_PAGE},
                                       what=what)
            items = data.get("result") or []
            for item in items:
                yield item
            info = data.get("result_info") or {}
            total_pages = info.get("total_pages")
            if total_pages is None and info.get("total_count") is not None:
                total_pages = -(-int(info["total_count"]) // int(info.get("per_page") or PER_PAGE))
            if not items or (total_pages is not None and page >= int(total_pages)) or (
                    total_pages is None and len(items) < PER_PAGE):
                return
            page += 1

    async def all(self, path: str, params: dict[str, Any] | None = None,
                  what: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [item async for item in self.pages(path, params, what)]

    # --- the calls the gateway makes -------------------------------------------------------
    async def verify(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/user/tokens/verify") or {})

    async def accounts(self) -> list[dict[str, Any]]:
        return await self.all("/accounts")

    async def zones(self, account_id: str | None = None) -> list[dict[str, Any]]:
        return await self.all("/zones", {"account.id": account_id} if account_id else None)

    async def tunnels(self, account: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.all(f"/accounts/{account['id']}/cfd_tunnel", {"is_deleted": "false"},
                              what={"account": f"the account {account.get('name') or account['id']}"})

    async def create_tunnel(self, account: dict[str, Any], name: str, secret_b64: str) -> dict[str, Any]:
        body = {"name": name, "tunnel_secret": secret_b64, "config_src": "local"}
        return dict(await self.call("POST", f"/accounts/{account['id']}/cfd_tunnel", body=body,
                                    what={"account": f"the account {account.get('name') or account['id']}"}))

    async def can_edit_dns(self, zone_id: str, zone_name: str) -> bool:
        """Does the token have DNS edit for this zone? Asked without changing anything: a PATCH
        of a record that does not exist is refused (403) without the permission, and "not found"
        (404) with it."""
        try:
            await self.call("PATCH", f"/zones/{zone_id}/dns_records/{'0' * 32}", body={},
                            what={"zone": zone_name})
        except CloudflareError as exc:
            if exc.status in (401, 403):
                return False
            return True  # 404 (record does not exist) or a refusal of the empty change: allowed
        return True

    async def tunnel_token(self, account: dict[str, Any], tunnel_id: str) -> str:
        return str(await self.call("GET", f"/accounts/{account['id']}/cfd_tunnel/{tunnel_id}/token",
                                   what={"account": f"the account {account.get('name') or account['id']}"}))
