"""The three doors cannot be confused: the local listener answers only its own Host names (no
DNS rebinding) and never believes Cf-Connecting-Ip; the tunnel listener treats everything as
remote (client address from Cf-Connecting-Ip, no API token, no sign-in without a second
factor, https cookies); the local API token works at the local door only. Every POST needs
a session and its CSRF token, and every route declares what it requires (webview.infra.auth.Guard)."""

from __future__ import annotations

import os

import httpx
import pytest
from starlette.routing import Mount, Route

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, PASSWORD, USER, signed_in, url_of
from webview.app import all_routes
from webview.infra.auth import Guard, action, guard_of, undeclared

SAME = {"sec-fetch-site": "same-origin"}


def tunnel_of(gw: Gateway) -> str:
    return (gw.data_dir / "tunnel-door.url").read_text().strip()


def token(gw: Gateway) -> dict[str, str]:
    return {"authorization": "Bearer " + (gw.data_dir / "api-token").read_text().strip()}


def test_local_door_answers_only_its_own_names(web: Gateway) -> None:
    port = url_of(web).rsplit(":", 1)[1]
    with httpx.Client(base_url=url_of(web), trust_env=False) as http:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost", "192.168.1.20:8765"):
            assert http.get("/login", headers={"host": host}).status_code == 200, host
        for host in (f"evil.example:{port}", "rebind.attacker.test", "localhost.attacker.test", ""):
            r = http.get("/login", headers={"host": host})
            assert r.status_code == 421, host
            r = http.post("/login", data={"username": USER, "password": PASSWORD}, headers={"host": host, **SAME})
            assert r.status_code == 421 and "gw_session" not in r.headers.get("set-cookie", ""), host


def test_tunnel_door_is_its_own_loopback_port(web: Gateway) -> None:
    local, tunnel = url_of(web), tunnel_of(web)
    assert tunnel.startswith("http://127.0.0.1:") and tunnel != local
    with httpx.Client(base_url=tunnel, trust_env=False) as http:
        # any Host: cloudflared passes the public name; the API token is not a key here
        assert http.get("/login", headers={"host": "gateway.example.com"}).status_code == 200
        assert http.get("/api/status", headers=token(web)).status_code == 401
        assert http.get("/metrics", headers=token(web)).status_code == 401
        assert http.get("/setup", follow_redirects=False).status_code == 303
    with httpx.Client(base_url=local, trust_env=False) as http:
        assert http.get("/api/status", headers=token(web)).status_code == 200


def test_password_alone_does_not_sign_in_through_the_tunnel(web: Gateway) -> None:
    with httpx.Client(base_url=tunnel_of(web), trust_env=False, headers=SAME) as http:
        r = http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/"},
                      headers={"cf-connecting-ip": "198.51.100.77"})
        assert r.status_code == 403 and "second step" in r.text
        assert "gw_session" not in r.headers.get("set-cookie", "")
    # a session made at the local door is not a key at the tunnel door
    local = signed_in(web)
    try:
        cookie = local.cookies["gw_session"]
        with httpx.Client(base_url=tunnel_of(web), trust_env=False) as http:
            r = http.get("/", headers={"cookie": f"gw_session={cookie}"})
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        local.close()


def test_rate_limits_per_address_through_the_tunnel(web: Gateway) -> None:
    with httpx.Client(base_url=tunnel_of(web), trust_env=False, headers=SAME) as http:
        codes = [http.post("/login", data={"username": "mallory", "password": f"guess-{i}"},
                           headers={"cf-connecting-ip": f"198.51.100.{i}"}).status_code for i in range(12)]
        assert codes == [401] * 12  # never a user name: a stranger could lock out the owner (issue 25)
        codes = [http.post("/login", data={"username": f"user{i}", "password": "x"},
                           headers={"cf-connecting-ip": "203.0.113.9"}).status_code for i in range(11)]
        assert codes == [401] * 10 + [429]  # one address guessing many names is stopped too
        # another address is not affected (the owner's password is right: only the second step is missing)
        r = http.post("/login", data={"username": USER, "password": PASSWORD},
                      headers={"cf-connecting-ip": "192.0.2.1"})
        assert r.status_code == 403


def test_cross_site_sign_in_is_refused_and_the_local_door_ignores_cf_connecting_ip(gateway: Gateway) -> None:
    from tests.webview.conftest import cli

    gateway.start()
    done = cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    with httpx.Client(base_url=url_of(gateway), trust_env=False) as http:
        r = http.post("/login", data={"username": USER, "password": PASSWORD}, headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        r = http.post("/login", data={"username": USER, "password": PASSWORD}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403
        r = http.post("/login", data={"username": USER, "password": PASSWORD}, headers=SAME)
        assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()  # plain http at the laptop
    with httpx.Client(base_url=tunnel_of(gateway), trust_env=False) as http:
        r = http.post("/login", data={"username": "x", "password": "y"}, headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        r = http.post("/login", data={"username": USER, "password": PASSWORD}, headers=SAME)
        pending = r.headers.get("set-cookie", "")
        assert r.status_code == 403 and "gw_session" not in pending  # no second factor yet
    # the local door never believes Cf-Connecting-Ip: one peer, however many addresses it claims
    with httpx.Client(base_url=url_of(gateway), trust_env=False, headers=SAME) as http:
        codes = [http.post("/login", data={"username": f"nobody{i}", "password": "x"},
                           headers={"cf-connecting-ip": f"198.51.100.{i}", "x-forwarded-for": f"192.0.2.{i}"}
                           ).status_code for i in range(11)]
        assert codes == [401] * 10 + [429]


def _post_routes() -> list[str]:
    """Every POST of the page (whoever added it), but the local API's (token only, tested in test_api)."""
    paths = [route.path.replace("{name}", "alpha").replace("{key}", "AAAA") for route in all_routes()
             if "POST" in (getattr(route, "methods", None) or ()) and not route.path.startswith("/api/")]
    assert "/security/totp" in paths and "/servers/alpha/control" in paths
    return sorted(set(paths))


ANONYMOUS = {"/login", "/login/verify", "/login/passkey/options", "/login/passkey", "/setup"}  # sign-in forms


@pytest.mark.parametrize("path", _post_routes())
def test_every_post_needs_a_session_and_its_csrf_token(web: Gateway, path: str) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False) as http:
        r = http.post(path, data={"verb": "stop"}, headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403, path  # from another site: never
        if path not in ANONYMOUS:
            r = http.post(path, data={"verb": "stop"}, headers=SAME)
            assert r.status_code == 401, path  # not signed in
    http = signed_in(web)
    try:
        r = http.post(path, data={"verb": "stop"})
        assert r.status_code == 403 and "reload and try again" in r.text, path  # no CSRF token
        r = http.post(path, data={"verb": "stop", "csrf": "0" * 40})
        assert r.status_code == 403, path  # someone else's
    finally:
        http.close()
    assert web.status()["alpha"]["phase"] == "running"


def test_every_route_declares_what_it_requires() -> None:
    """One way to guard a route: each declares its webview.infra.auth.Guard (`anyone` when nothing is
    required), and the app is not built with one that does not."""
    assert undeclared(all_routes()) == []

    async def bare(request: object) -> None:
        pass

    assert undeclared([Route("/bare", bare), Mount("/mounted", routes=[Route("/x", bare)]),
                       Route("/declared", action(bare))]) == ["/bare", "/mounted/x"]


def _stranger_cases() -> list[tuple[str, str, Guard]]:
    """(method, path, guard) of every guarded route a stranger can be sent to."""
    cases = []
    for route in all_routes():
        guard = guard_of(route.endpoint) if isinstance(route, Route) else None
        if guard is None or not guard.scopes:
            continue  # the sign-in forms and the files: tried by the tests of each (a wrong password counts)
        path = route.path.replace("{name}", "alpha").replace("{key}", "AAAA")
        cases += [(method, path, guard) for method in sorted(route.methods or ()) if method != "HEAD"]
    return cases


@pytest.mark.parametrize("door", ["local", "tunnel"])
def test_a_stranger_gets_what_each_route_declares_at_both_doors(web: Gateway, door: str) -> None:
    from urllib.parse import quote

    cases = _stranger_cases()
    assert {(m, p) for m, p, _ in cases} >= {("GET", "/"), ("POST", "/alerts/test"), ("POST", "/settings/alerts/test"),
                                            ("GET", "/stream"), ("POST", "/api/control"), ("POST", "/setup")}
    base = url_of(web) if door == "local" else tunnel_of(web)
    headers = {**SAME, "cf-connecting-ip": "198.51.100.200"}  # a stranger's own address (at the tunnel door)
    with httpx.Client(base_url=base, trust_env=False, headers=headers) as http:
        for method, path, guard in cases:
            r = http.request(method, path, data={"verb": "stop"} if method == "POST" else None)
            if guard.scopes == ("local",) and door == "local":  # a browser on this laptop: setup itself answers
                assert r.status_code == 303 and r.headers["location"] == "/login", (method, path)
            elif guard.elsewhere:
                assert (r.status_code, r.headers.get("location")) == (303, guard.elsewhere), (method, path)
            elif guard.sign_in and method == "GET":
                assert (r.status_code, r.headers.get("location")) == (303, f"/login?next={quote(path)}"), path
            else:
                assert r.status_code == guard.status_code and guard.message in r.text, (method, path, r.text[:200])
        assert http.get("/login").status_code == 200 and http.get("/static/style.css").status_code == 200
    assert web.status()["alpha"]["phase"] == "running"


def test_the_tunnel_door_is_loopback_only_and_a_bad_address_stops_nothing(gateway: Gateway,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from tests.fix_gateway import REPO

    bad = subprocess.run([sys.executable, "-m", "reconciler", "run", "--config", str(gateway.config_dir),
                          "--data-dir", str(gateway.data_dir), "--listen", "127.0.0.1:0"], cwd=REPO,
                         env={**os.environ, "GATEWAY_TUNNEL_LISTEN": "127.0.0.1:x"}, capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 3 and "GATEWAY_TUNNEL_LISTEN: '127.0.0.1:x' is not HOST:PORT" in bad.stderr
    monkeypatch.setenv("GATEWAY_TUNNEL_LISTEN", "0.0.0.0:0")  # not loopback: refused, the page still runs
    gateway.write("one", HTTP)
    gateway.start()
    gateway.wait_phase("one", "running")
    assert "the page cannot be reached through the tunnel" in gateway.output.read_text()
    assert "must be a loopback address" in gateway.output.read_text()
    assert not (gateway.data_dir / "tunnel-door.url").exists()


def test_both_doors_date_their_answers_without_a_clock_tick(web: Gateway) -> None:
    """The page's server no longer wakes every second to refresh its Date header (issue 16):
    each answer at either door still carries the current date, on a kept-alive connection too."""
    import email.utils
    import time

    for base in (url_of(web), tunnel_of(web)):
        with httpx.Client(base_url=base, trust_env=False) as http:
            dates = []
            for _ in range(2):
                before = int(time.time())
                r = http.get("/login")
                after = time.time()
                when = email.utils.parsedate_to_datetime(r.headers["date"]).timestamp()
                assert before <= when <= after, (base, r.headers["date"])
                dates.append(when)
                time.sleep(1.1)  # the next answer is a second later, on the same connection
            assert dates[1] > dates[0], base
