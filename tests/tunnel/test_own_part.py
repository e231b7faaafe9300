"""The tunnel is the gateway's own part, not one of the owner's servers, tried as the owner
would: from a phone through the tunnel (a stand-in of Cloudflare's edge forwarding to the
fake cloudflared, which forwards to the page's tunnel door), and at the laptop.

- "Stop all" and a group's buttons, from the phone or the laptop, and `gateway stop --all`
  leave the tunnel running: the phone keeps its page (it got `error code: 1033` for good).
- Nothing through the tunnel door can stop, kill or restart the tunnel: its card there has no
  such buttons, and the server refuses the request all the same.
- At the laptop the tunnel's card names what a stop cuts; the stop lasts until the gateway
  restarts (one remembered by an older gateway is not kept either), so no reboot locks the
  owner out.
- The owner's restart of the tunnel goes through the two-connector handover: visitors' requests
  through the edge during it fail none."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pyotp
import pytest

from tests.fix_gateway import REPO, Gateway
from tests.tunnel.fake_cloudflare import FakeCloudflare
from tests.tunnel.fake_edge import ENV, FakeEdge, cloudflare_dns
from tests.tunnel.test_connector import TUNNEL_ID, fake_cloudflared, wait, with_tunnel
from tests.tunnel.test_handover_requests import HOST, Visitor, settled, web_file
from tests.webview.conftest import PASSWORD, USER, cli, signed_in

PAGE_HOST = "gateway.example.com"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Phone:
    """A browser on a phone, through Cloudflare's edge (the stand-in) to the page's hostname."""

    def __init__(self, edge: FakeEdge) -> None:
        self.http = httpx.Client(base_url=edge.url, trust_env=False, timeout=30,
                                 headers={"host": PAGE_HOST, "sec-fetch-site": "same-origin"})
        self.cookie = ""
        self.csrf = ""

    def sign_in(self, code: str) -> None:
        r = self.http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/"})
        assert r.status_code == 303 and r.headers["location"] == "/login/verify", r.text
        pending = r.headers["set-cookie"].split(";", 1)[0]
        r = self.http.post("/login/verify", data={"code": code}, headers={"cookie": pending})
        assert r.status_code == 303, r.text
        self.cookie = r.headers["set-cookie"].split(";", 1)[0]
        self.csrf = CSRF.search(self.get("/").text).group(1)  # type: ignore[union-attr]

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers={"cookie": self.cookie})

    def post(self, path: str, data: dict[str, str], json_answer: bool = True) -> httpx.Response:
        headers = {"cookie": self.cookie, **({"accept": "application/json"} if json_answer else {})}
        return self.http.post(path, data={"csrf": self.csrf, **data}, headers=headers)


def enrol_code_app(gw: Gateway) -> list[str]:
    """The owner turns on the code app at the laptop; its recovery codes."""
    http = signed_in(gw)
    try:
        page = http.get("/security/totp")
        secret = re.search(r"data-secret>([A-Z2-7 ]+)<", page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
        r = http.post("/security/totp", data={"code": pyotp.TOTP(secret).now(), "csrf": http.csrf})  # type: ignore[attr-defined]
        codes = re.findall(r"<li>([a-z0-9-]{14})</li>", r.text)
        assert len(codes) == 10, r.text
        return codes
    finally:
        http.close()


@pytest.fixture
def phone_world(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gateway, FakeEdge, Path]]:
    """A gateway whose page is published at gateway.example.com through the tunnel, a server
    at web.example.com, DNS through the fake API, visitors through the fake edge."""
    with FakeCloudflare() as cf, FakeEdge(resolve=cloudflare_dns(lambda: cf.records.values())) as edge:
        cf.add_zone("example.com")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", cf.token)
        monkeypatch.setenv(ENV, edge.address)
        exe = fake_cloudflared(gateway.config_dir.parent / "bin")
        config_yml = with_tunnel(gateway, exe, extra=f'api_url = "{cf.url}"\n')
        toml = gateway.config_dir / "gateway.toml"
        toml.write_text(toml.read_text().replace("[ports]", f'[web]\nhostname = "{PAGE_HOST}"\n\n[ports]'))
        gateway.write("web", web_file(0))
        gateway.start()
        done = cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
        gateway.wait_phase("cloudflared", "running", timeout=30)
        wait(lambda: edge.get(PAGE_HOST, "/login")[0] == 200, timeout=30, what="the page through the tunnel")
        wait(lambda: edge.get(HOST)[0] == 200, timeout=30, what="the server through the tunnel")
        yield gateway, edge, config_yml


def test_nothing_from_the_phone_or_in_bulk_cuts_the_tunnel(phone_world):
    gw, edge, _ = phone_world
    codes = enrol_code_app(gw)
    phone = Phone(edge)
    phone.sign_in(codes[0])
    before = gw.status()["cloudflared"]["pid"]

    # the tunnel's card at the tunnel door: no Stop, Restart or force; it says why
    page = phone.get("/").text
    card = page[page.index('id="srv-cloudflared"'):]
    card = card[:card.index("</article>")]
    assert "data-own-note" in card and 'value="stop"' not in card and 'value="restart"' not in card
    assert "only on the laptop itself" in card
    assert "The tunnel keeps running, so this page stays reachable from your phone" in page
    detail = phone.get("/servers/cloudflared").text
    assert 'value="kill"' not in detail and 'value="stop"' not in detail and 'value="restart"' not in detail

    # refused on the server side all the same, whatever the form says
    for verb in ("stop", "kill", "restart"):
        r = phone.post("/servers/cloudflared/control", {"verb": verb})
        assert r.status_code == 403 and "only on the laptop itself" in r.json()["error"], (verb, r.text)
        r = phone.post("/control", {"verb": verb, "name": "cloudflared"})
        assert r.status_code == 403, verb
    r = phone.post("/control", {"verb": "stop", "group": "tunnel"})
    assert r.status_code == 404 and "no server matches group 'tunnel'" in r.json()["error"]

    # "Stop all" from the phone: every server stops, the tunnel and the page stay
    r = phone.post("/control", {"verb": "stop", "all": "1"})
    assert r.status_code == 200, r.text
    assert [s["name"] for s in r.json()["servers"]] == ["web"]
    status = gw.status()
    assert status["web"]["phase"] == "stopped" and status["cloudflared"]["phase"] == "running"
    assert status["cloudflared"]["pid"] == before
    assert phone.get("/").status_code == 200  # still signed in, through the tunnel
    assert edge.get(HOST)[0] == 502  # the server is stopped: the tunnel itself answers
    r = phone.post("/control", {"verb": "start", "all": "1"})
    assert r.status_code == 200
    wait(lambda: edge.get(HOST)[0] == 200, timeout=30, what="the server back through the tunnel")

    # and `gateway stop --all` at the laptop: the same
    done = subprocess.run([sys.executable, "-m", "reconciler", "stop", "--all", "--data-dir", str(gw.data_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "cloudflared" not in done.stdout
    status = gw.status()
    assert status["web"]["phase"] == "stopped" and status["cloudflared"]["pid"] == before
    assert phone.get("/").status_code == 200
    intents = [e for e in gw.events("cloudflared") if e["kind"] == "intent"]
    assert not intents  # nothing was asked of the tunnel


def test_at_the_laptop_a_stop_names_what_it_cuts_and_lasts_until_the_gateway_restarts(phone_world):
    gw, edge, _ = phone_world
    local = signed_in(gw)
    try:
        page = local.get("/").text
        card = page[page.index('id="srv-cloudflared"'):]
        card = card[:card.index("</article>")]
        assert "Stop the tunnel…" in card and "This cuts every address it carries" in card
        assert f"https://{PAGE_HOST}" in card and f"https://{HOST}" in card
        assert "Your servers keep running on this computer" in card
        assert "Stops web. The tunnel keeps running: it is the gateway's own" in page

        r = local.post("/servers/cloudflared/control", data={"verb": "stop", "csrf": local.csrf},  # type: ignore[attr-defined]
                       headers={"accept": "application/json"})
        assert r.status_code == 200, r.text
        wait(lambda: gw.status()["cloudflared"]["phase"] == "stopped", what="the tunnel stopped")
        assert edge.get(PAGE_HOST, "/login") == (530, b"error code: 1033")
        assert gw.status()["web"]["phase"] == "running"
    finally:
        local.close()

    # an older gateway remembered such a stop in the database: not this one
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}", autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM intents WHERE name = 'cloudflared'").fetchone() == (0,)
        conn.execute("INSERT INTO intents (name, intent, actor) VALUES ('cloudflared', 'stop', 'operator:old')")
    assert gw.stop() == 0
    gw.start()
    gw.wait_phase("cloudflared", "running", timeout=30)
    wait(lambda: edge.get(PAGE_HOST, "/login")[0] == 200, timeout=30, what="the page through the tunnel again")
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
        assert conn.execute("SELECT count(*) FROM intents WHERE name = 'cloudflared'").fetchone() == (0,)
    said = [e["reason"] for e in gw.events("cloudflared") if e["kind"] == "intent"]
    assert any("the tunnel runs again after a gateway restart" in r for r in said), said


def test_the_owners_restart_of_the_tunnel_fails_no_request(phone_world):
    gw, edge, config_yml = phone_world
    settled(gw, edge, config_yml, "0")  # the first routes' switch is over
    before = gw.status()["cloudflared"]
    mark = max(e["seq"] for e in gw.events())
    with Visitor(edge) as visitor:
        wait(lambda: visitor.ok > 5, what="answers before the restart")
        done = cli(gw, "restart", "cloudflared")
        assert done.returncode == 0, done.stderr
        wait(lambda: any(e["kind"] == "tunnel_handover" and e["reason"].startswith("done") and e["seq"] > mark
                         for e in gw.events("cloudflared")), timeout=60, what="the handover done")
        seen = visitor.ok
        wait(lambda: visitor.ok > seen + 10, what="answers after the restart")
    assert not visitor.failures, visitor.failures[:5]
    after = gw.status()["cloudflared"]
    assert after["pid"] != before["pid"] and after["phase"] == "running"
    said = [e["reason"].split(":")[0] for e in gw.events("cloudflared") if e["kind"] == "tunnel_handover"
            and e["seq"] > mark]
    assert said == ["restart", "the second connector is ready", "done"], said
    assert json.loads(edge.get(HOST)[1])["VERSION"] == "0"  # (the gap is measured by bench/tunnel_gap.py)


def test_a_hostname_outside_the_accounts_domains_or_the_pages_own_is_refused_when_saved(phone_world):
    """Refused by the form before anything is written, said on the card and by `gateway check`,
    and never listed as reachable (it was saved silently, and listed, with only an event saying
    "no zone")."""
    from tests.webview.test_forms import post

    gw, edge, _ = phone_world
    (gw.data_dir / "tunnel").mkdir(exist_ok=True)
    (gw.data_dir / "tunnel" / "cloudflare.json").write_text(json.dumps({"tunnel_id": TUNNEL_ID,
                                                                        "zones": ["example.com"]}))
    local = signed_in(gw)
    try:
        r = post(local, "/new", name="shop", command="python -m http.server {port}", port="auto",
                 domain="www.not-my-zone.org")
        assert r.status_code == 422
        assert ("www.not-my-zone.org is not under a domain of your Cloudflare account (example.com): use a name "
                "like www.example.com") in r.text
        r = post(local, "/new", name="shop", command="python -m http.server {port}", port="auto", domain=PAGE_HOST)
        assert r.status_code == 422 and "is this gateway&#39;s own page ([web] hostname" in r.text
        assert not (gw.config_dir / "shop.toml").exists()

        gw.write("shop", 'command = ["python", "-m", "http.server", "{port}"]\nport = "auto"\n'
                         '[domain]\nhostname = "shop"\n')  # written by hand: said on its card
        wait(lambda: "a single word" in local.get("/").text, what="the card says why")
        page = local.get("/cloudflare").text
        assert "https://shop" not in page and f"https://{HOST}" in page
    finally:
        local.close()
    done = subprocess.run([sys.executable, "-m", "reconciler", "check", str(gw.config_dir), "--data-dir",
                           str(gw.data_dir)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "shop.toml:4: domain.hostname: 'shop' is a single word" in done.stdout
    gw.write("shop", 'command = ["python", "-m", "http.server", "{port}"]\nport = "auto"\n'
                     '[domain]\nhostname = "shop.example.org"\n')
    done = subprocess.run([sys.executable, "-m", "reconciler", "check", str(gw.config_dir), "--data-dir",
                           str(gw.data_dir)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "is not under a domain of your Cloudflare account (example.com)" in done.stdout
