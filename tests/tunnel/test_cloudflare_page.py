"""The page's Cloudflare step against a real gateway and the local stand-ins of Cloudflare's
API and of GitHub's releases: a token is refused in words; with tunnels already there the
page asks which one; connecting creates the tunnel, writes the credentials 0600, records
[tunnel]; the gateway then fetches cloudflared itself (here the release server has none yet:
said in words, with the install command as a fallback), and one that appears on PATH is
noticed (no restart); from then on a server's hostname is routed and gets its DNS record,
which goes when the server is deleted. Screenshots at a phone's and a desktop's width."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from tests.fix_gateway import Gateway
from tests.fix_children import private
from tests.tunnel.fake_cloudflare import FakeCloudflare
from tests.tunnel.fake_releases import FakeReleases
from tests.tunnel.test_connector import fake_cloudflared, wait
from tests.webview.conftest import PASSWORD, USER, artifacts, cli, signed_in, url_of

SHOTS = artifacts()  # this checkout's test-artifacts/ (a folder shared by several checkouts mixes their shots)
BLOG = ('command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\nport = "auto"\n'
        '[domain]\nhostname = "Blog.Example.com"\n')


def _start(gateway: Gateway, cf: FakeCloudflare, monkeypatch: pytest.MonkeyPatch, releases: str = "") -> Path:
    bin_dir = gateway.config_dir.parent / "later-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GATEWAY_CLOUDFLARE_API", cf.url)
    monkeypatch.setenv("GATEWAY_CLOUDFLARED_RELEASES", releases or "http://127.0.0.1:9/none")  # nothing there
    gateway.write("blog", BLOG)
    toml = gateway.config_dir / "gateway.toml"  # a short drain, so the test's gateway stops quickly
    toml.write_text(toml.read_text() + '\n[tunnel]\ngrace_period = "1s"\n')
    gateway.start()
    done = cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    return bin_dir


def test_connect_on_the_page_then_routes_and_dns_follow(gateway: Gateway, monkeypatch: pytest.MonkeyPatch):
    with FakeCloudflare() as cf, FakeReleases() as releases:
        account = cf.add_account("Ada's account")
        zone = cf.add_zone("example.com", account)
        old = cf.add_tunnel(account, "old-laptop")
        bin_dir = _start(gateway, cf, monkeypatch, releases.url)
        http = signed_in(gateway)
        try:
            page = http.get("/cloudflare")
            assert page.status_code == 200
            assert "Connect in one step" in page.text and "permissionGroupKeys=" in page.text
            assert "Cloudflare Tunnel — edit: create the tunnel and run it" in page.text
            assert "winget" not in page.text  # nothing to install by hand: the gateway gets cloudflared itself

            r = http.post("/cloudflare/connect", data={"csrf": http.csrf, "token": "wrong"})
            assert r.status_code == 422
            assert "Cloudflare did not accept this token (mistyped, expired or deleted?)" in r.text
            cf.tokens["no-tunnels"] = {"zone", "dns"}
            r = http.post("/cloudflare/connect", data={"csrf": http.csrf, "token": "no-tunnels"})
            assert r.status_code == 422 and "add the Cloudflare Tunnel edit permission" in r.text

            r = http.post("/cloudflare/connect", data={"csrf": http.csrf, "token": cf.token})
            assert r.status_code == 200 and "Which tunnel should this laptop run?" in r.text and "old-laptop" in r.text
            assert f'value="{old}"' in r.text and 'value="new" checked' in r.text
            r = http.post("/cloudflare/connect", data={"csrf": http.csrf, "token": cf.token, "account": account,
                                                       "tunnel": "new"})
            assert r.status_code == 303, r.text
            [new] = [t for t in cf.tunnels if t != old]
            settings = tomllib.loads((gateway.config_dir / "gateway.toml").read_text())["tunnel"]
            assert settings["id"] == new and private(Path(settings["credentials_file"]))
            assert cf.token not in (gateway.config_dir / "gateway.toml").read_text()

            page = http.get("/cloudflare")
            assert "Connected to <b>Ada&#39;s account</b>" in page.text
            wait(lambda: releases.checks > 0, what="the gateway asked the release server for cloudflared")
            wait(lambda: "cloudflared is not there yet" in http.get("/cloudflare").text, what="the failure said")
            page = http.get("/cloudflare")
            assert "cloudflared was not installed: GitHub did not say which cloudflared is the newest (HTTP 404)" \
                in page.text
            assert "winget install --id Cloudflare.cloudflared" in page.text and 'data-copy="cf-winget"' in page.text
            # cloudflared appears on PATH: noticed without a restart, the tunnel runs and routes the blog
            fake_cloudflared(bin_dir)
            config_yml = gateway.data_dir / "tunnel" / "config.yml"
            wait(lambda: config_yml.exists() and '"blog.example.com"' in config_yml.read_text(), timeout=30,
                 what="the blog routed (lower-case) once cloudflared is there")
            gateway.wait_phase("cloudflared", "running", timeout=20)
            wait(lambda: any(r["name"] == "blog.example.com" and r["content"] == f"{new}.cfargotunnel.com"
                             for r in list(cf.records.values())), timeout=30, what="the blog's DNS record")
            wait(lambda: "Reachable from outside" in http.get("/cloudflare").text, what="the page says reachable")
            assert "https://blog.example.com" in http.get("/cloudflare").text

            # the add/edit form suggests a name in each of the account's domains
            assert http.get("/cloudflare/zones.json").json() == {"zones": ["example.com"]}
            assert 'list="cf-zones"' in http.get("/new").text

            # the outside alarm, with the token the gateway keeps
            assert "Outside alarm: off" in http.get("/cloudflare").text
            r = http.post("/cloudflare/alarm", data={"csrf": http.csrf, "alarm": "ada@example.com"})
            assert r.status_code == 303 and "Outside alarm on" in r.headers.get("set-cookie", "").replace("%20", " ")
            assert "Outside alarm: on" in http.get("/cloudflare").text
            assert cf.policies[0]["filters"] == {"tunnel_id": [new]}

            # the server is deleted: its route goes, then the DNS record the gateway made for it
            (gateway.config_dir / "blog.toml").unlink()
            wait(lambda: not any(r["name"] == "blog.example.com" for r in list(cf.records.values())), timeout=30,
                 what="the blog's DNS record removed")
            removed = [e for e in gateway.events("cloudflared") if e["kind"] == "dns_synced"
                       and "blog.example.com: removed" in e["reason"]]
            assert removed and "blog.example.com" not in config_yml.read_text()
            assert cf.records == {} and zone in cf.zones
        finally:
            http.close()
            gateway.stop()


@pytest.mark.browser
def test_the_page_at_phone_and_desktop_width(gateway: Gateway, monkeypatch: pytest.MonkeyPatch):
    from playwright.sync_api import sync_playwright

    from tests.webview.test_browser import CHROMIUM, no_horizontal_scroll, sign_in

    SHOTS.mkdir(parents=True, exist_ok=True)
    with FakeCloudflare() as cf:
        cf.add_zone("example.com", cf.add_account("Ada's account"))
        _start(gateway, cf, monkeypatch)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                contexts = {w: browser.new_context(viewport={"width": w, "height": h})
                            for w, h in ((390, 844), (1280, 800))}
                pages = {w: c.new_page() for w, c in contexts.items()}
                for width, page in pages.items():
                    sign_in(page, url_of(gateway))
                    page.goto(url_of(gateway) + "/cloudflare")
                    no_horizontal_scroll(page)
                    page.screenshot(path=str(SHOTS / f"cloudflare-connect-{width}.png"), full_page=True)
                page = pages[390]
                page.get_by_label("API token").fill(cf.token)
                page.get_by_role("button", name="Connect").click()
                page.wait_for_url(re.compile(r".*/cloudflare$"))
                for width, page in pages.items():
                    page.goto(url_of(gateway) + "/cloudflare")
                    page.get_by_text("Connected to").wait_for()
                    page.get_by_text("cloudflared is not there yet").wait_for()  # no release server here: said
                    no_horizontal_scroll(page)
                    page.screenshot(path=str(SHOTS / f"cloudflare-connected-{width}.png"), full_page=True)
                for context in contexts.values():
                    context.close()
            finally:
                browser.close()
        gateway.stop()
