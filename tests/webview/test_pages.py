"""The page over real HTTP against a real daemon: sign-in, the overview, detail, buttons."""

from __future__ import annotations

import time
from contextlib import closing

import httpx

from tests.fix_gateway import Gateway
from tests.webview.conftest import PASSWORD, USER, signed_in, url_of


def test_pages_need_sign_in(web: Gateway) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False) as anon:
        r = anon.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
        r = anon.get("/servers/alpha")
        assert r.status_code == 303
        login = anon.get("/login")
        assert login.status_code == 200 and 'name="password"' in login.text
        for path in ("/servers/alpha/control", "/control", "/logout"):
            r = anon.post(path, data={"verb": "stop"}, headers={"sec-fetch-site": "same-origin"})
            assert r.status_code == 401, (path, r.text)
        assert anon.get("/stream").status_code == 401


def test_security_headers(web: Gateway) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False) as anon:
        r = anon.get("/login")
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]


def test_sign_in_sets_a_safe_cookie_and_out(web: Gateway) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False, headers={"sec-fetch-site": "same-origin"}) as http:
        bad = http.post("/login", data={"username": USER, "password": "wrong one!"})
        assert bad.status_code == 401 and "Wrong user name or password" in bad.text
        r = http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/servers/alpha"})
        assert r.status_code == 303 and r.headers["location"] == "/servers/alpha"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # plain http here
        assert http.get("/").status_code == 200
        csrf = __import__("re").search(r'name="csrf" value="([0-9a-f]+)"', http.get("/").text).group(1)
        out = http.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        http.cookies.clear()
        http.cookies.set("gw_session", r.cookies["gw_session"])  # the old cookie is dead on the server too
        assert http.get("/").status_code == 303


def test_overview_and_detail(web: Gateway, http: httpx.Client) -> None:
    page = http.get("/").text
    assert 'id="srv-alpha"' in page and 'id="srv-beta"' in page
    assert "first demo" in page and "running" in page
    detail = http.get("/servers/alpha")
    assert detail.status_code == 200
    assert "Its settings, as in force" in detail.text and "http.server" in detail.text
    assert "→ starting" in detail.text  # from stopped, or from error when another test held its port
    assert http.get("/servers/nope").status_code == 404
    assert http.get("/servers/..%2Fetc").status_code == 404
    events = http.get("/events", params={"server": "alpha", "kind": "transition", "period": "24h"})
    assert events.status_code == 200 and "starting" in events.text


def test_stop_and_start_by_button(web: Gateway, http: httpx.Client) -> None:
    r = http.post("/servers/beta/control", data={"verb": "stop", "csrf": http.csrf, "back": "/"})
    assert r.status_code == 303
    assert web.status()["beta"]["phase"] == "stopped"
    assert "beta: Stopped by you" in __import__("urllib.parse").parse.unquote(r.cookies["gw_flash"])
    assert [e for e in web.events("beta") if e["actor"] == f"operator:web:{USER}"]
    r = http.post("/servers/beta/control", data={"verb": "start", "csrf": http.csrf},
                  headers={"accept": "application/json"})
    assert r.status_code == 200 and r.json()["servers"][0]["phase"] == "running"


def test_cross_site_and_missing_csrf_are_refused(web: Gateway, http: httpx.Client) -> None:
    r = http.post("/servers/alpha/control", data={"verb": "stop", "csrf": http.csrf},
                  headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    r = http.post("/servers/alpha/control", data={"verb": "stop"})
    assert r.status_code == 403
    r = http.post("/servers/alpha/control", data={"verb": "stop", "csrf": "0" * 40})
    assert r.status_code == 403
    with closing(signed_in(web)) as other:  # another session's token does not fit this session
        r = http.post("/servers/alpha/control", data={"verb": "stop", "csrf": other.csrf})
        assert r.status_code == 403
    assert web.status()["alpha"]["phase"] == "running"


def test_group_and_all_buttons(web: Gateway, http: httpx.Client) -> None:
    before = web.status()
    r = http.post("/control", data={"verb": "restart", "group": "web", "csrf": http.csrf},  # type: ignore[attr-defined]
                  headers={"accept": "application/json"})
    assert r.status_code == 200 and {s["name"] for s in r.json()["servers"]} >= {"alpha", "beta"}
    after = web.status()
    assert all(after[n]["pid"] != before[n]["pid"] and after[n]["phase"] == "running" for n in ("alpha", "beta"))
    r = http.post("/control", data={"verb": "stop", "group": "nope", "csrf": http.csrf},  # type: ignore[attr-defined]
                  headers={"accept": "application/json"})
    assert r.status_code == 404 and "no server matches group 'nope'" in r.json()["error"]


def test_send_a_test_alert_from_the_events_page(web: Gateway, http: httpx.Client) -> None:
    from tests.ops.test_notify import Receiver

    receiver = Receiver()
    toml = web.config_dir / "gateway.toml"
    try:
        page = http.get("/events")
        assert "No alert addresses yet" in page.text
        toml.write_text(f'[notify]\nurls = ["{receiver.url}"]\n')
        deadline = time.monotonic() + 10
        while "Send a test alert" not in http.get("/events").text:
            assert time.monotonic() < deadline, "the page never offered the button"
            time.sleep(0.1)
        assert http.post("/alerts/test", data={}).status_code == 403  # no CSRF token
        r = http.post("/alerts/test", data={"csrf": http.csrf})
        assert r.status_code == 303
        got = receiver.wait(1)
        assert got and "test alert sent by ada from the web page" in got[0][1]["message"]
        page = http.get("/events")
        assert "Test alert sent." in page.text and "sent</span>" in page.text
    finally:
        toml.unlink(missing_ok=True)
        receiver.close()
