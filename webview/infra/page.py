"""`Page`: what the running page holds, one object per app (`app.state.page`), instead of
module-level dictionaries (kopf's ResourceMemories, "instead of global or context
variables"): the gateway it shows (webview.infra.gateway.Gateway), the key its CSRF tokens and
signed cookies are made with, the box the code app's secrets are sealed in, Cloudflare
Access when configured, the tunnel door's address, the sign-in lock-outs, and the memory
of each part, defined by the part that uses it and handed to it from here:

- `sessions` (webview.infra.users.Sessions): sessions looked up in the last seconds, lookups under way;
- `read_tokens` (webview.infra.tokens.ReadTokens): read-only API tokens looked up, when each was marked used;
- `cards` (webview.infra.overview.Cards): the overview's and the live stream's cards, rendered once a change;
- `servers` (webview.infra.views.ServersAnswer): the body of `GET /api/servers` and its ETag;
- `tries` (webview.infra.trying.Tries): the "Try it first" runs under way;
- `passkeys` (webview.infra.passkeys.Passkeys): the passkey challenges answered already.

Nothing here outlives the process; a second app (a test's, a bench's) has its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from reconciler.store import secretbox
from reconciler.store.secretbox import Box
from webview.infra.access import Access
from webview.infra.gateway import Gateway
from webview.infra.lockout import LockOuts
from webview.infra.overview import Cards
from webview.infra.passkeys import Passkeys
from webview.infra.security import read_or_create_secret
from webview.infra.tokens import ReadTokens
from webview.infra.trying import Tries
from webview.infra.users import Sessions
from webview.infra.views import ServersAnswer


@dataclass
class Page:
    gateway: Gateway
    secret: bytes  # CSRF tokens and signed cookies (webview.infra.security.sign)
    box: Box  # seals the code app's secrets (reconciler.store.secretbox)
    access: Access | None  # Cloudflare Access, when [web] configures it
    tunnel_url: str | None = None  # the tunnel door, once it is bound (webview.server)
    lockouts: LockOuts = field(default_factory=LockOuts)
    sessions: Sessions = field(default_factory=Sessions)
    read_tokens: ReadTokens = field(default_factory=ReadTokens)
    cards: Cards = field(default_factory=Cards)
    servers: ServersAnswer = field(default_factory=ServersAnswer)
    tries: Tries = field(default_factory=Tries)
    passkeys: Passkeys = field(init=False)

    def __post_init__(self) -> None:
        self.passkeys = Passkeys(self.secret)

    @classmethod
    def open(cls, gateway: Gateway) -> Page:
        """The page of `gateway`: its keys read from the data folder (made there the first time)."""
        data_dir = gateway.settings.data_dir
        result = gateway.reconciler.result
        return cls(gateway, read_or_create_secret(data_dir), secretbox.load_or_create(data_dir),
                   Access.from_settings(result.settings.web if result else None))


def page_of(conn: HTTPConnection) -> Page:
    page = conn.app.state.page
    assert isinstance(page, Page), page
    return page


def gateway_of(conn: HTTPConnection) -> Gateway:
    return page_of(conn).gateway
