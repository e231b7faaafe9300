"""The tunnel's pages in a real headless Chromium, at a phone's width (390 px) and a laptop's
(1280 px), with no sideways scrolling: from the phone through the tunnel door (the tunnel's
card offers nothing that cuts it; "Stop all" says the tunnel stays), at the laptop (the card
names what a stop cuts), the Cloudflare page while cloudflared cannot be fetched and when a
newer one is offered, and the form refusing a hostname outside the account's domains.
Screenshots go to test-artifacts/tunnel-*.png."""

from __future__ import annotations

import datetime
import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fix_gateway import Gateway

from tests.tunnel.test_connector import TUNNEL_ID, wait
from tests.tunnel.test_fetch import ASSET, OTHERS, fetched  # noqa: F401 - fixture
from tests.tunnel.test_own_part import enrol_code_app, phone_world  # noqa: F401 - fixture
from tests.webview.conftest import PASSWORD, USER, artifacts, url_of
from tests.webview.test_browser import CHROMIUM, browser, no_horizontal_scroll, sign_in  # noqa: F401 - fixture
from tests.tunnel.test_own_part import PAGE_HOST

pytestmark = pytest.mark.browser
SIZES = ((390, 844), (1280, 800))


def shots(page: Page, name: str, opened: tuple[str, ...] = ()) -> None:
    """The page at both widths, with the named <details> opened."""
    for selector in opened:
        page.locator(selector).evaluate("el => el.open = true")
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"tunnel-{name}-{width}.png"), full_page=True)


class HttpsFront:
    """Cloudflare's edge speaks https to the phone: a TLS listener on 127.0.0.1 (a certificate
    made here for gateway.example.com) in front of the edge stand-in, which the phone's browser
    reaches as https://gateway.example.com (Chromium maps the name to it)."""

    def __init__(self, edge_port: int, folder: Path) -> None:
        cert, key = folder / "cert.pem", folder / "key.pem"
        self._certificate(cert, key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                link = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=30)
                try:
                    link.request(self.command, self.path, body, {k: v for k, v in self.headers.items()})
                    reply = link.getresponse()
                    data = reply.read()
                finally:
                    link.close()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _certificate(cert: Path, key_path: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PAGE_HOST)])
        now = datetime.datetime.now(datetime.UTC)
        made = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(PAGE_HOST)]), critical=False)
                .sign(key, hashes.SHA256()))
        cert.write_bytes(made.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_tunnel_from_the_phone_and_at_the_laptop(phone_world) -> None:  # noqa: F811
    gw, edge, _ = phone_world
    codes = enrol_code_app(gw)
    door = f"https://{PAGE_HOST}"
    front = HttpsFront(edge.port, gw.config_dir.parent)
    with sync_playwright() as p:  # a browser whose DNS sends gateway.example.com to the edge's https front
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", f"--host-resolver-rules=MAP {PAGE_HOST}:443 127.0.0.1:{front.port}"])
        try:
            phone_side(chromium.new_context(viewport={"width": 390, "height": 844}, ignore_https_errors=True)
                       .new_page(), door, codes)
            laptop_side(gw, chromium, codes[3])
        finally:
            chromium.close()
            front.close()


def phone_side(phone: Page, door: str, codes: list[str]) -> None:
    phone.goto(door + "/")
    phone.get_by_label("User name").fill(USER)
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Sign in", exact=True).click()
    phone.get_by_label("The 6-digit code").fill(codes[2])
    phone.get_by_role("button", name="Continue").click()
    expect(phone).to_have_url(door + "/")
    card = phone.locator("#srv-cloudflared")
    expect(card.locator("[data-own-note]")).to_contain_text("only on the laptop itself")
    expect(card.get_by_role("button")).to_have_count(0)
    phone.locator("details.confirm", has_text="Stop all").locator("summary").click()
    expect(phone.locator("[data-stops]")).to_contain_text("so this page stays reachable from your phone")
    shots(phone, "phone-overview")
    phone.goto(door + "/servers/cloudflared")
    expect(phone.locator("#srv-cloudflared [data-own-note]")).to_be_visible()
    shots(phone, "phone-card")


def laptop_side(gw: Gateway, chromium: Browser, code: str) -> None:
    laptop = chromium.new_context(viewport={"width": 1280, "height": 800}).new_page()
    laptop.goto(url_of(gw) + "/")
    laptop.get_by_label("User name").fill(USER)
    laptop.get_by_label("Password").fill(PASSWORD)
    laptop.get_by_role("button", name="Sign in", exact=True).click()
    laptop.get_by_label("The 6-digit code").fill(code)  # the code app is on: the second step here too
    laptop.get_by_role("button", name="Continue").click()
    expect(laptop).to_have_url(url_of(gw) + "/")
    card = laptop.locator("#srv-cloudflared")
    card.locator("[data-own-stop] summary").click()
    expect(card.locator("[data-own-stop]")).to_contain_text("https://gateway.example.com")
    laptop.locator("details.confirm", has_text="Stop all").locator("summary").click()
    expect(laptop.locator("[data-stops]")).to_contain_text("Stops web. The tunnel keeps running")
    shots(laptop, "laptop-overview")
    laptop.goto(url_of(gw) + "/servers/cloudflared")
    shots(laptop, "laptop-card", ("#srv-cloudflared [data-own-stop]",))


def test_the_cloudflare_page_and_the_form(fetched, browser: Browser) -> None:  # noqa: F811
    gw, _, releases, _ = fetched
    gw.wait_phase("cloudflared", "running", timeout=60)
    (gw.data_dir / "tunnel").mkdir(parents=True, exist_ok=True)
    (gw.data_dir / "tunnel" / "cloudflare.json").write_text(json.dumps({
        "tunnel_id": TUNNEL_ID, "account_name": "Ada's account", "tunnel_name": "omen-gateway-laptop",
        "zones": ["example.com"]}))
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, url_of(gw))
    releases.publish("2026.9.0", [ASSET, *OTHERS])
    wait(lambda: "Update cloudflared to 2026.9.0" in page.goto(url_of(gw) + "/cloudflare").text(), timeout=40,
         what="the newer release offered")
    expect(page.get_by_role("button", name="Update cloudflared to 2026.9.0")).to_be_visible()
    shots(page, "cloudflare-offer")
    releases.broken[ASSET] = "500"
    page.get_by_role("button", name="Update cloudflared to 2026.9.0").click()
    expect(page.locator("[data-cf-said]")).to_contain_text("cloudflared 2026.8.2 stays in use")
    shots(page, "cloudflare-update-failed")

    page.goto(url_of(gw) + "/new")
    page.locator("input[name=name]").fill("shop")
    page.locator("input[name=command]").fill("python -m http.server {port}")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.locator("input[name=domain]").fill("shop.not-my-zone.org")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("body")).to_contain_text("is not under a domain of your Cloudflare account (example.com)")
    shots(page, "form-outside-zone")
