"""The second step, over real HTTP against a real gateway: the code app enrolled from the
security page, then required; a wrong code and a replayed code refused; recovery codes work
once; through the tunnel door a sign-in needs the second step and gets a Secure cookie; a bad
passkey answer is refused; wrong answers are rate-limited per address, and wrong codes per user
at that door."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pyotp
import pytest

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, PASSWORD, USER, cli, signed_in, url_of
from tests.webview.test_doors import SAME, tunnel_of


@pytest.fixture(scope="module")
def enrolled(web: Gateway) -> Iterator[tuple[str, list[str]]]:
    """The user's code app turned on through the page: (secret, recovery codes)."""
    http = signed_in(web)
    try:
        page = http.get("/security/totp")
        assert page.status_code == 200 and "<svg" in page.text  # the QR code, inline
        secret = re.search(r"data-secret>([A-Z2-7 ]+)<", page.text).group(1).replace(" ", "")
        r = http.post("/security/totp", data={"code": "000000", "csrf": http.csrf})  # type: ignore[attr-defined]
        assert r.status_code == 400 and "not right" in r.text
        r = http.post("/security/totp", data={"code": pyotp.TOTP(secret).now(), "csrf": http.csrf})  # type: ignore[attr-defined]
        assert r.status_code == 200 and "shown only once" in r.text
        codes = re.findall(r"<li>([a-z0-9-]{14})</li>", r.text)
        assert len(codes) == 10
        assert "On" in http.get("/security").text
        yield secret, codes
    finally:
        http.close()


def password_step(http: httpx.Client) -> httpx.Response:
    r = http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/login/verify", r.text
    return r


def test_code_required_once_enrolled_and_never_twice(web: Gateway, enrolled: tuple[str, list[str]]) -> None:
    secret, _ = enrolled
    with httpx.Client(base_url=url_of(web), trust_env=False, headers=SAME) as http:
        password_step(http)
        assert http.get("/").status_code == 303  # the password alone is not a session now
        page = http.get("/login/verify")
        assert "6-digit code" in page.text
        r = http.post("/login/verify", data={"code": "123456"})
        assert r.status_code == 401 and "not right" in r.text
        code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step's code: not used at enrolment
        r = http.post("/login/verify", data={"code": code})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert http.get("/").status_code == 200
    with httpx.Client(base_url=url_of(web), trust_env=False, headers=SAME) as again:
        password_step(again)
        r = again.post("/login/verify", data={"code": code})  # the same code, replayed
        assert r.status_code == 401 and "already used" in r.text
        r = again.post("/login/verify", data={"code": pyotp.TOTP(secret).now()})  # an older one
        assert r.status_code == 401
        assert again.get("/").status_code == 303


def test_tunnel_sign_in_with_the_second_step(web: Gateway, enrolled: tuple[str, list[str]]) -> None:
    _, codes = enrolled
    with httpx.Client(base_url=tunnel_of(web), trust_env=False, headers=SAME) as http:
        r = http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/events"},
                      headers={"cf-connecting-ip": "198.51.100.50"})
        assert r.status_code == 303 and r.headers["location"] == "/login/verify"
        pending = r.headers["set-cookie"]
        assert "gw_pending=" in pending and "secure" in pending.lower()  # cloudflared's edge speaks https
        cookie = pending.split(";", 1)[0]
        r = http.post("/login/verify", data={"code": codes[0]},
                      headers={"cookie": cookie, "cf-connecting-ip": "198.51.100.50"})
        assert r.status_code == 303 and r.headers["location"] == "/events"
        session = r.headers["set-cookie"]
        assert "gw_session=" in session and "secure" in session.lower()
        jar = session.split(";", 1)[0]
        assert http.get("/", headers={"cookie": jar}).status_code == 200
    signed = [e for e in web.events() if e["kind"] == "signed_in" and e["detail"].get("door") == "tunnel"]
    assert signed and signed[-1]["detail"] == {"door": "tunnel", "ip": "198.51.100.50", "user": USER,
                                               "how": "a password and a recovery code"}
    assert "through the tunnel, from 198.51.100.50" in signed[-1]["reason"]
        # the pending cookie of the tunnel door is no use at the local door
    with httpx.Client(base_url=url_of(web), trust_env=False, headers=SAME) as local:
        r = local.get("/login/verify", headers={"cookie": cookie})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        password_step(local)
        r = local.post("/login/verify", data={"code": codes[0]})  # a recovery code works once
        assert r.status_code == 401
        r = local.post("/login/verify", data={"code": codes[1].upper()})  # as typed from paper
        assert r.status_code == 303


def test_wrong_codes_close_the_users_second_step_at_that_door(web: Gateway, enrolled: tuple[str, list[str]]) -> None:
    assert enrolled  # the code app is on: the second step is asked for
    with httpx.Client(base_url=tunnel_of(web), trust_env=False, headers=SAME) as http:
        statuses = []
        for i in range(6):
            r = http.post("/login", data={"username": USER, "password": PASSWORD},
                          headers={"cf-connecting-ip": f"203.0.113.{i}"})
            cookie = r.headers["set-cookie"].split(";", 1)[0] if r.status_code == 303 else ""
            statuses.append(http.post("/login/verify", data={"code": f"{i:06d}"},
                                      headers={"cookie": cookie, "cf-connecting-ip": f"203.0.113.{i}"}).status_code
                            if cookie else r.status_code)
        assert statuses == [401] * 5 + [429], statuses  # 5 wrong codes for this user at this door
        r = http.post("/login", data={"username": USER, "password": PASSWORD}, headers={"cf-connecting-ip": "192.0.2.7"})
        assert r.status_code == 303  # the password step goes by address
        r = http.post("/login/verify", data={"code": "123456"}, headers={
            "cookie": r.headers["set-cookie"].split(";", 1)[0], "cf-connecting-ip": "192.0.2.7"})
        assert r.status_code == 429 and "Try again in" in r.text  # the user's second step waits, from anywhere here
    locked = [e for e in web.events() if e["kind"] == "sign_in_locked"]
    assert [e["detail"]["locked"] for e in locked] == [USER]  # said once, not at every refused try


def test_bad_passkey_answers_are_refused_and_rate_limited(gateway: Gateway) -> None:
    gateway.write("one", HTTP)
    gateway.start()
    assert cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    port = url_of(gateway).rsplit(":", 1)[1]
    host = {"host": f"localhost:{port}"}
    with httpx.Client(base_url=url_of(gateway), trust_env=False, headers={**SAME, **host}) as http:
        r = http.post("/login/passkey", json={"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}})
        assert r.status_code == 401 and "expired" in r.text  # no challenge was given
        options = http.post("/login/passkey/options")
        assert options.status_code == 200 and options.json()["rpId"] == "localhost"
        forged = {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
                  "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}}
        r = http.post("/login/passkey", json=forged)
        assert r.status_code == 401 and "not known here" in r.text
        r = http.post("/login/passkey", json=forged)  # the challenge was used up
        assert r.status_code == 401 and "expired" in r.text
        statuses = []
        for _ in range(10):
            http.post("/login/passkey/options")
            statuses.append(http.post("/login/passkey", content=b"not json",
                                      headers={"content-type": "application/json"}).status_code)
        assert statuses[-1] == 429 and set(statuses[:7]) == {401}, statuses
        assert http.post("/login/passkey/options").status_code == 429
        assert "gw_session" not in str(http.cookies)
    with httpx.Client(base_url=url_of(gateway), trust_env=False, headers=SAME) as http:
        r = http.post("/login/passkey/options")  # an IP address cannot hold passkeys: said in words
        assert r.status_code in (400, 429)
