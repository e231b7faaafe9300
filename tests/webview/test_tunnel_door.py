"""The page as strangers on the internet reach it (issue 25): through the fake edge and the fake
cloudflared into the gateway's tunnel door, each visitor with its own public address.

- plain http is answered with a 308 to https, before anything else runs; every answer of the
  tunnel door carries Strict-Transport-Security (item 3);
- its cookies are `__Host-` cookies, Secure, so a sibling subdomain cannot set or shadow them
  (item 10);
- wrong answers lock out an address (an IPv6 /64) at this door only, never a user name: a
  stranger cannot lock the owner out, at the laptop or from another address (items 1 and 4);
- a flood of passkey challenges evicts nobody else's (item 12)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.webview.conftest import PASSWORD, USER, url_of
from tests.webview.published import HOSTNAME, SAME, Published, published_gateway

HSTS = "max-age=31536000"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Published]:
    with published_gateway(tmp_path_factory.mktemp("published"), pg_dsn) as published:
        yield published


def test_plain_http_is_sent_to_https_and_never_takes_a_password(world: Published) -> None:
    visitor = world.visitor("198.51.100.10", proto="http")
    try:
        for path in ("/", "/login?next=/events", "/static/style.css", "/no/such/page"):
            r = visitor.get(path)
            assert r.status_code == 308, (path, r.status_code)
            assert r.headers["location"] == f"https://{HOSTNAME}{path}", path
            assert r.headers["strict-transport-security"] == HSTS
        before = len(world.gw.events())
        r = visitor.post("/login", data={"username": USER, "password": PASSWORD, "next": "/"})
        assert r.status_code == 308 and r.headers["location"] == f"https://{HOSTNAME}/login"
        assert not r.headers.get_list("set-cookie") and USER not in r.text
        assert not [e for e in world.gw.events()[before:] if e["kind"].startswith("sign")]
    finally:
        visitor.close()


def test_every_answer_of_the_tunnel_door_has_hsts_and_the_laptops_door_none(world: Published) -> None:
    visitor = world.visitor("198.51.100.11")
    try:
        answers = [visitor.get("/login"), visitor.get("/"), visitor.get("/static/style.css"),
                   visitor.get("/no/such/page"), visitor.get("/api/status"),
                   visitor.post("/login", data={"username": "x", "password": "y"}),
                   visitor.post("/login", data={"username": "x"}, headers={"sec-fetch-site": "cross-site"})]
        assert [r.status_code for r in answers] == [200, 303, 200, 404, 401, 401, 403]
        assert all(r.headers.get("strict-transport-security") == HSTS for r in answers)
    finally:
        visitor.close()
    with httpx.Client(base_url=url_of(world.gw), trust_env=False) as local:
        assert "strict-transport-security" not in local.get("/login").headers  # plain http at the laptop


def test_cookies_through_the_tunnel_are_host_cookies(world: Published) -> None:
    visitor = world.visitor("198.51.100.12")
    try:
        visitor.sign_in(world.code())
        sent = {raw.split("=", 1)[0]: raw.lower() for raw in visitor.set_cookies}
        assert {"__Host-gw_pending", "__Host-gw_session"} <= set(sent), visitor.set_cookies
        for name, raw in sent.items():
            assert name.startswith("__Host-"), name  # nothing of the page's without the prefix
            assert "; secure" in raw and "; path=/" in raw and "domain=" not in raw, raw
        assert visitor.get("/").status_code == 200
        session = visitor.jar["__Host-gw_session"]
        # a sibling subdomain (blog.example.com) can set gw_session / gw_flash for .example.com:
        # the tunnel door never reads them, so it can neither sign the owner out nor speak for the page
        forged = f"__Host-gw_session={session}; gw_session=junk; gw_flash=Your%20account%20is%20closed"
        page = visitor.get("/", headers={"cookie": forged})
        assert page.status_code == 200 and "account is closed" not in page.text
        r = visitor.get("/", headers={"cookie": f"gw_session={session}"})  # the session under the old name
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        visitor.close()
    # the laptop's door is plain http: its cookies keep their names (a __Host- cookie needs https)
    with httpx.Client(base_url=url_of(world.gw), trust_env=False, headers=SAME) as local:
        r = local.post("/login", data={"username": USER, "password": PASSWORD})
        assert r.status_code == 303 and r.headers["set-cookie"].startswith("gw_pending=")
        assert "secure" not in r.headers["set-cookie"].lower()


def test_wrong_passwords_lock_out_an_address_never_the_owner(world: Published) -> None:
    gw = world.gw
    stranger = world.visitor("203.0.113.66")
    try:
        codes = [stranger.post("/login", data={"username": USER, "password": f"guess {i}"}).status_code
                 for i in range(11)]
        assert codes == [401] * 10 + [429]
        r = stranger.post("/login", data={"username": USER, "password": PASSWORD})
        assert r.status_code == 429 and "Try again in" in r.text  # even the right password, from there
    finally:
        stranger.close()
    # many addresses, five wrong passwords each for the owner: nobody is locked but them
    for i in range(3):
        guesser = world.visitor(f"192.0.2.{100 + i}")
        try:
            assert [guesser.post("/login", data={"username": USER, "password": "nope"}).status_code
                    for _ in range(5)] == [401] * 5
        finally:
            guesser.close()
    owner = world.visitor("198.51.100.13")
    try:
        owner.sign_in(world.code())  # the owner, from their phone's address
        assert owner.get("/").status_code == 200
    finally:
        owner.close()
    with httpx.Client(base_url=url_of(gw), trust_env=False, headers=SAME) as laptop:
        r = laptop.post("/login", data={"username": USER, "password": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/login/verify"  # the laptop's door is open
    locked = [e for e in gw.events() if e["kind"] == "sign_in_locked"]
    assert [e["detail"]["locked"] for e in locked] == ["203.0.113.66"], locked
    assert locked[0]["detail"]["door"] == "tunnel" and "the address 203.0.113.66" in locked[0]["reason"]


def test_an_ipv6_address_counts_as_its_64(world: Published) -> None:
    statuses = []
    for i in range(11):  # eleven addresses of one /64: one home, one server
        visitor = world.visitor(f"2001:db8:1:2::{i + 1:x}")
        try:
            statuses.append(visitor.post("/login", data={"username": "root", "password": "x"}).status_code)
        finally:
            visitor.close()
    assert statuses == [401] * 10 + [429]
    same, other = world.visitor("2001:db8:1:2:ffff:ffff:ffff:ffff"), world.visitor("2001:db8:1:3::1")
    try:
        assert same.post("/login", data={"username": "root", "password": "x"}).status_code == 429
        assert other.post("/login", data={"username": "root", "password": "x"}).status_code == 401
    finally:
        same.close()
        other.close()
    locked = [e for e in world.gw.events() if e["kind"] == "sign_in_locked" and "2001" in e["detail"]["locked"]]
    assert [e["detail"]["locked"] for e in locked] == ["2001:db8:1:2::/64"]


def test_wrong_codes_close_that_users_second_step_here_not_at_the_laptop(world: Published) -> None:
    """Only someone with the password reaches the code: five wrong codes for one user (from five
    addresses) close that user's second step at the tunnel door for a while; at the laptop it
    stays open."""
    world.add_user("bob", "bob's long password")
    for i in range(5):
        visitor = world.visitor(f"192.0.2.{200 + i}")
        try:
            r = visitor.post("/login", data={"username": "bob", "password": "bob's long password"})
            assert r.status_code == 303
            assert visitor.post("/login/verify", data={"code": f"{i:06d}"}).status_code == 401
        finally:
            visitor.close()
    bob = world.visitor("192.0.2.250")
    try:
        r = bob.post("/login", data={"username": "bob", "password": "bob's long password"})
        assert r.status_code == 303  # the password step is per address: this one is fine
        r = bob.post("/login/verify", data={"code": world.code("bob")})
        assert r.status_code == 429 and "Try again in" in r.text  # the code step of bob, here, waits
    finally:
        bob.close()
    with httpx.Client(base_url=url_of(world.gw), trust_env=False, headers=SAME) as laptop:
        r = laptop.post("/login", data={"username": "bob", "password": "bob's long password"})
        assert r.status_code == 303
        r = laptop.post("/login/verify", data={"code": world.code("bob")})
        assert r.status_code == 303 and r.headers["location"] == "/"
    locked = [e for e in world.gw.events() if e["kind"] == "sign_in_locked" and e["detail"]["locked"] == "bob"]
    assert len(locked) == 1 and locked[0]["detail"]["door"] == "tunnel"


def test_a_signed_in_owner_changes_their_password_from_a_locked_address(world: Published) -> None:
    world.add_user("cy", "cy's long password")
    phone = world.visitor("198.51.100.77")
    stranger = world.visitor("198.51.100.77")  # someone else behind the same address
    try:
        phone.sign_in(world.code("cy"), "cy", "cy's long password")
        for _ in range(11):
            stranger.post("/login", data={"username": "cy", "password": "wrong"})
        assert stranger.post("/login", data={"username": "cy", "password": "x"}).status_code == 429
        csrf = phone.csrf("/users")
        r = phone.post("/account/password", data={"current": "cy's long password", "password": "cy's new password",
                                                   "password2": "cy's new password", "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/users"
        page = phone.get("/users")
        assert page.status_code == 200 and "Password changed" in page.text
        # its own wrong current passwords are what count against it, and only it
        csrf = phone.csrf("/users")
        for _ in range(5):
            r = phone.post("/account/password", data={"current": "not it", "password": "whatever long",
                                                       "password2": "whatever long", "csrf": csrf})
            assert r.status_code == 303 and "was not right" in phone.get("/users").text
        r = phone.post("/account/password", data={"current": "cy's new password", "password": "cy's third password",
                                                   "password2": "cy's third password", "csrf": csrf})
        assert r.status_code == 303 and "wrong too many times here" in phone.get("/users").text
    finally:
        phone.close()
        stranger.close()


def test_a_flood_of_passkey_challenges_evicts_nobody_elses(world: Published) -> None:
    """1,100 unauthenticated option requests (from one address, and from many) leave another
    visitor's challenge in place: its answer is judged, not "expired"."""
    alice = world.visitor("198.51.100.90")
    try:
        assert alice.post("/login/passkey/options").status_code == 200
        with httpx.Client(base_url=world.edge.url, trust_env=False, timeout=30,
                          headers={"host": HOSTNAME, **SAME}) as flood:
            for i in range(1100):
                r = flood.post("/login/passkey/options", headers={"fake-visitor-ip": f"10.{i // 250}.{i % 250}.1"})
                assert r.status_code == 200, (i, r.status_code, r.text[:200])
        forged = {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
                  "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}}
        r = alice.post("/login/passkey", json=forged)
        assert r.status_code == 401 and "not known here" in r.text, r.text  # her challenge was still there
        r = alice.post("/login/passkey", json=forged)
        assert r.status_code == 401 and "expired" in r.text  # and it is good once
    finally:
        alice.close()

