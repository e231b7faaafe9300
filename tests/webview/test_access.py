"""Cloudflare Access in front of the page: a locally generated RSA key pair, a local certs
endpoint speaking Access's JWKS format, and a real gateway configured to require the token."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, url_of

TEAM, AUD = "omen-test", "aud-1234"
ISSUER = f"https://{TEAM}.cloudflareaccess.com"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def certs() -> Iterator[tuple[str, rsa.RSAPrivateKey, list[int]]]:
    key = new_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/cdn-cgi/access/certs", key, hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def token(key: rsa.RSAPrivateKey, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {"aud": [AUD], "iss": ISSUER, "email": "ada@example.com", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def test_access_required_at_the_tunnel_door_and_identity_used(gateway: Gateway, certs: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url, key, hits = certs
    monkeypatch.setenv("GATEWAY_ACCESS_TEAM", TEAM)
    monkeypatch.setenv("GATEWAY_ACCESS_AUD", AUD)
    monkeypatch.setenv("GATEWAY_ACCESS_CERTS_URL", url)
    gateway.write("one", HTTP)
    gateway.start()
    gateway.wait_phase("one", "running")  # the CLI's API token still works
    tunnel = (gateway.data_dir / "tunnel-door.url").read_text().strip()
    with httpx.Client(base_url=tunnel, trust_env=False, headers={"sec-fetch-site": "same-origin"}) as http:
        assert http.get("/").status_code == 403
        assert http.get("/login").status_code == 403
        assert http.get("/setup").status_code == 403
        assert http.get("/static/style.css").status_code == 200
        good = {"cf-access-jwt-assertion": token(key)}
        page = http.get("/", headers=good)
        assert page.status_code == 200 and "ada@example.com" in page.text
        bad = {
            "wrong audience": token(key, aud=["other"]),
            "expired": token(key, exp=int(time.time()) - 120),
            "wrong issuer": token(key, iss="https://evil.cloudflareaccess.com"),
            "another key": token(new_key()),
            "unknown key id": token(key, kid="k9"),
            "garbage": "not.a.jwt",
        }
        for why, value in bad.items():
            r = http.get("/", headers={"cf-access-jwt-assertion": value})
            assert r.status_code == 403, why
        assert len(hits) <= 3  # keys cached; an unknown kid refetches at most every 30 s
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
        r = http.post("/servers/one/control", data={"verb": "stop", "csrf": csrf}, headers=good)
        assert r.status_code == 303
        assert gateway.status()["one"]["phase"] == "stopped"
        assert any(e["actor"] == "operator:web:ada@example.com" for e in gateway.events("one"))
        r = http.post("/servers/one/control", data={"verb": "start", "csrf": csrf})  # no Access token
        assert r.status_code == 403
        r = http.post("/servers/one/control", data={"verb": "start"}, headers=good)  # no CSRF token
        assert r.status_code == 403
    # the local door: the laptop's own browser signs in as usual; an Access token is believed when valid
    with httpx.Client(base_url=url_of(gateway), trust_env=False) as http:
        r = http.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert http.get("/", headers={"cf-access-jwt-assertion": "not.a.jwt"}).status_code == 403
        assert "ada@example.com" in http.get("/", headers={"cf-access-jwt-assertion": token(key)}).text
