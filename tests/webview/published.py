"""The page published through the tunnel, as a visitor on the internet reaches it: a real
gateway with `[web] hostname`, the fake cloudflared as its connector, the fake Cloudflare API
for the DNS record and the fake edge in front (tests/tunnel). A `Visitor` is one browser
somewhere: its own public address, https (or plain http), and a cookie jar that keeps what a
browser keeps (a `Secure` cookie over https only, `__Host-` names only when Secure, Path=/ and
no Domain)."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp

from tests.fix_gateway import Gateway, finish, own_port_range
from tests.tunnel.fake_cloudflare import FakeCloudflare
from tests.tunnel.fake_edge import ENV, VISITOR_IP, VISITOR_PROTO, FakeEdge, cloudflare_dns
from tests.tunnel.test_connector import fake_cloudflared, wait, with_tunnel
from tests.webview.conftest import CSRF_RE, PASSWORD, USER, cli, signed_in

HOSTNAME = "gateway.example.com"
SAME = {"sec-fetch-site": "same-origin"}


class Visitor:
    """One browser on the internet, at `ip`, reaching https://HOSTNAME through the edge."""

    def __init__(self, edge: FakeEdge, ip: str, proto: str = "https") -> None:
        self.ip, self.proto = ip, proto
        self.jar: dict[str, str] = {}
        self.set_cookies: list[str] = []  # every Set-Cookie answered, as sent
        self.http = httpx.Client(base_url=edge.url, trust_env=False, timeout=30,
                                 headers={"host": HOSTNAME, VISITOR_IP: ip, VISITOR_PROTO: proto, **SAME})

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.jar and "cookie" not in {k.lower() for k in headers}:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        self.http.cookies.clear()
        r = self.http.request(method, path, headers=headers, **kwargs)
        self.http.cookies.clear()
        for raw in r.headers.get_list("set-cookie"):
            self.set_cookies.append(raw)
            self._keep(raw)
        return r

    def _keep(self, raw: str) -> None:
        pair, *attrs = [part.strip() for part in raw.split(";")]
        name, _, value = pair.partition("=")
        flags = {a.split("=", 1)[0].lower(): (a.split("=", 1)[1] if "=" in a else "") for a in attrs}
        if "secure" in flags and self.proto != "https":
            return  # a browser keeps no Secure cookie from plain http
        if name.startswith("__Host-") and ("secure" not in flags or flags.get("path") != "/" or "domain" in flags):
            return
        if flags.get("max-age") == "0" or value == '""':
            self.jar.pop(name, None)
        else:
            self.jar[name] = value

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def csrf(self, path: str = "/") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text[:300]
        return CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]

    def sign_in(self, code: str, user: str = USER, password: str = PASSWORD) -> None:
        r = self.post("/login", data={"username": user, "password": password, "next": "/"})
        assert r.status_code == 303 and r.headers["location"] == "/login/verify", (r.status_code, r.text[:300])
        r = self.post("/login/verify", data={"code": code})
        assert r.status_code == 303, (r.status_code, r.text[:300])

    def close(self) -> None:
        self.http.close()


class Published:
    def __init__(self, gw: Gateway, edge: FakeEdge, cf: FakeCloudflare) -> None:
        self.gw, self.edge, self.cf = gw, edge, cf
        self.codes: dict[str, list[str]] = {}  # user -> unused recovery codes

    def visitor(self, ip: str, proto: str = "https") -> Visitor:
        return Visitor(self.edge, ip, proto)

    def code(self, user: str = USER) -> str:
        """An unused recovery code of `user` (each signs in once)."""
        return self.codes[user].pop()

    def add_user(self, user: str, password: str) -> None:
        """A user with the code app on (enrolled at the laptop's door)."""
        done = cli(self.gw, "user", "add", user, "--password-stdin", stdin=password + "\n")
        assert done.returncode == 0, done.stderr
        self.codes[user] = enrol(self.gw, user, password)[1]


def enrol(gw: Gateway, user: str, password: str) -> tuple[str, list[str]]:
    """Turn on the code app for `user` through the laptop's page: (secret, recovery codes)."""
    http = signed_in(gw, user, password)
    try:
        page = http.get("/security/totp")
        secret = re.search(r"data-secret>([A-Z2-7 ]+)<", page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
        r = http.post("/security/totp", data={"code": pyotp.TOTP(secret).now(), "csrf": http.csrf})  # type: ignore[attr-defined]
        assert r.status_code == 200, r.text[:300]
        return secret, re.findall(r"<li>([a-z0-9-]{14})</li>", r.text)
    finally:
        http.close()


@contextlib.contextmanager
def published_gateway(base: Path, pg_dsn: str, env: dict[str, str] | None = None) -> Iterator[Published]:
    """A running gateway whose page is published at HOSTNAME through the fake edge, with the
    user USER (code app on). `env`: more environment for the daemon."""
    config = base / "gateway.d"
    config.mkdir()
    own_port_range(config)
    gw = Gateway(config, base / "data", pg_dsn, f"t_{uuid.uuid4().hex[:12]}")
    with FakeCloudflare() as cf, FakeEdge(resolve=cloudflare_dns(lambda: cf.records.values())) as edge:
        cf.add_zone("example.com")
        exe = fake_cloudflared(base / "bin")
        with_tunnel(gw, exe, extra=f'api_url = "{cf.url}"\n')
        toml = config / "gateway.toml"
        toml.write_text(f'[web]\nhostname = "{HOSTNAME}"\n' + toml.read_text())
        saved = {k: os.environ.get(k) for k in ("CLOUDFLARE_API_TOKEN", ENV, *(env or {}))}
        os.environ.update({"CLOUDFLARE_API_TOKEN": cf.token, ENV: edge.address, **(env or {})})
        try:
            gw.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        try:
            world = Published(gw, edge, cf)
            world.add_user(USER, PASSWORD)
            wait(lambda: edge.get(HOSTNAME, "/login")[0] == 200, timeout=60, what="the page through the tunnel")
            yield world
        finally:
            finish(gw, pg_dsn)
