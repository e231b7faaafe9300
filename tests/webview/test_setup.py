"""First run in the browser: with nobody set up, the local door from this machine shows the
setup screen; the tunnel door never does (not even to a loopback peer: cloudflared is one);
a request that came through cloudflared to the local port is not treated as local either."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, url_of
from tests.webview.test_doors import SAME, tunnel_of

OWNER, GOOD = "sam", "plum kettle orbit 42"


def test_setup_only_at_the_local_door_and_only_once(gateway: Gateway) -> None:
    gateway.write("one", HTTP)
    gateway.start()
    local, tunnel = url_of(gateway), tunnel_of(gateway)
    with httpx.Client(base_url=tunnel, trust_env=False, headers=SAME) as http:
        assert http.get("/setup").headers["location"] == "/login"
        r = http.get("/login")
        assert r.status_code == 200 and "not set up yet" in r.text and "Welcome" not in r.text
        r = http.post("/setup", data={"name": "mallory", "password": GOOD, "password2": GOOD})
        assert r.status_code == 303 and r.headers["location"] == "/login" and "gw_session" not in str(r.headers)
    with httpx.Client(base_url=local, trust_env=False, headers=SAME) as http:
        # through cloudflared to the local port: not local either
        for proxied in ({"cf-connecting-ip": "198.51.100.1"}, {"x-forwarded-for": "127.0.0.1"}):
            r = http.post("/setup", data={"name": "mallory", "password": GOOD, "password2": GOOD}, headers=proxied)
            assert r.status_code == 303 and r.headers["location"] == "/login", proxied
        # a page elsewhere (DNS rebinding to 127.0.0.1) cannot reach it
        r = http.post("/setup", data={"name": "mallory", "password": GOOD, "password2": GOOD},
                      headers={"host": "attacker.example"})
        assert r.status_code == 421
        # nor a cross-site form
        r = http.post("/setup", data={"name": "mallory", "password": GOOD, "password2": GOOD},
                      headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        r = http.get("/", follow_redirects=True)
        assert str(r.url).endswith("/setup") and "Create my account" in r.text
        for form, why in (({"name": OWNER, "password": GOOD, "password2": GOOD + "x"}, "not the same"),
                          ({"name": OWNER, "password": "short", "password2": "short"}, "Too short"),
                          ({"name": OWNER, "password": "password1", "password2": "password1"}, "Too easy"),
                          ({"name": "gateway", "password": GOOD, "password2": GOOD}, "the gateway uses itself"),
                          ({"name": "a/b", "password": GOOD, "password2": GOOD}, "is not a user name")):
            r = http.post("/setup", data=form)
            assert r.status_code == 400 and why in r.text, why
        r = http.post("/setup", data={"name": OWNER, "password": GOOD, "password2": GOOD})
        assert r.status_code == 303 and r.headers["location"] == "/setup/next"
        steps = http.get("/setup/next")
        assert steps.status_code == 200 and "Show my servers" in steps.text and "Alerts" in steps.text
        assert 'id="srv-one"' in http.get("/").text
    with httpx.Client(base_url=local, trust_env=False, headers=SAME) as other:
        r = other.post("/setup", data={"name": "second", "password": GOOD, "password2": GOOD})
        assert r.status_code == 303 and r.headers["location"] == "/login"  # one owner, once
        assert other.get("/setup").headers["location"] == "/login"
        r = other.get("/login")
        assert "not set up yet" not in r.text
        r = other.post("/login", data={"username": OWNER, "password": GOOD, "next": "/"})
        assert r.status_code == 303
        users = other.get("/users").text
        assert re.findall(r"<strong>([^<(]+)", users) == [f"{OWNER} "]


def test_first_run_says_the_next_step_and_stop_says_what_happened(gateway: Gateway) -> None:
    gateway.write("one", HTTP)
    gateway.start()
    out = gateway.output.read_text()
    assert f"open {url_of(gateway)}/ to finish setting up" in out
    assert gateway.stop() == 0
    assert gateway.output.read_text().rstrip().endswith("omen-gateway: stopped; your servers are stopped")
    gateway.start("--keep-servers", "--no-browser")
    assert gateway.stop() == 0
    assert gateway.output.read_text().rstrip().endswith("stopped; your servers were left running")
    gateway.start()  # (and stop them: no process left behind)


def test_a_browser_opens_only_at_a_desktop(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.platform import desktop

    for name in ("GATEWAY_NO_BROWSER", "CI", "SSH_CONNECTION", "SSH_TTY", "DISPLAY", "WAYLAND_DISPLAY", "SESSIONNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("reconciler.platform.SYSTEM", "linux")
    assert not desktop.has_desktop()  # no display
    monkeypatch.setenv("DISPLAY", ":0")
    assert desktop.has_desktop()
    for blocker in ("GATEWAY_NO_BROWSER", "CI", "SSH_CONNECTION"):
        monkeypatch.setenv(blocker, "1")
        assert not desktop.has_desktop(), blocker
        monkeypatch.delenv(blocker)
    monkeypatch.setattr("reconciler.platform.SYSTEM", "windows")
    assert not desktop.has_desktop()  # a boot task: session 0, no SESSIONNAME
    monkeypatch.setenv("SESSIONNAME", "Console")
    assert desktop.has_desktop()
