"""In a real headless Chromium, from an empty data folder: the setup screen creates the owner,
the optional steps are skippable, the code app is enrolled (its QR code shown, the code typed
from pyotp) and then asked for at sign-in, a passkey is added and used with a virtual
authenticator (the DevTools Protocol's WebAuthn domain), and through the tunnel door the
password alone gets no further than the second step, and no setup is offered there.
Screenshots of every screen at 390x844 and 1280x800 go to test-artifacts/ (signin-*.png)."""

from __future__ import annotations

import re
import time

import pyotp
from playwright.sync_api import Browser, Page, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, artifacts, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, pytestmark  # noqa: F401 - fixture
from tests.webview.test_doors import tunnel_of

OWNER, GOOD = "sam", "plum kettle orbit 42"
SIZES = [(390, 844), (1280, 800)]


def shot(page: Page, name: str) -> None:
    """The screen at both sizes, with no sideways scrolling on the phone."""
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        if width == 390:
            no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"signin-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_first_run_two_factors_and_the_tunnel_door(gateway: Gateway, browser: Browser) -> None:  # noqa: F811
    gateway.write("one", HTTP)
    gateway.start()
    port = url_of(gateway).rsplit(":", 1)[1]
    base = f"http://localhost:{port}"  # passkeys need a name, not an IP address
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        # --- nobody yet: the setup screen, not a sign-in page
        page.goto(base + "/")
        expect(page).to_have_url(base + "/setup")
        expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
        page.get_by_label("Your name").fill(OWNER)
        page.get_by_label("Password", exact=True).fill("short")
        expect(page.locator("[data-strength]")).to_have_text("Too short: use at least 8 characters.")
        page.get_by_label("Password", exact=True).fill(GOOD)
        expect(page.locator("[data-strength]")).to_have_text("Strong.")
        shot(page, "setup")
        page.get_by_label("Password again").fill(GOOD + "!")
        page.get_by_role("button", name="Create my account").click()
        expect(page.locator(".error")).to_contain_text("not the same")
        page.get_by_label("Password", exact=True).fill(GOOD)
        page.get_by_label("Password again").fill(GOOD)
        page.get_by_role("button", name="Create my account").click()
        expect(page).to_have_url(base + "/setup/next")
        expect(page.get_by_role("heading", name=f"You're in, {OWNER}")).to_be_visible()
        shot(page, "setup-next")

        # --- the code app, from the security page
        page.get_by_role("link", name="Set up a second step").click()
        expect(page).to_have_url(base + "/security")
        shot(page, "security-before")
        page.get_by_role("link", name="Turn on the code app").click()
        expect(page.locator(".qr svg")).to_be_visible()
        shot(page, "totp")
        secret = page.locator("[data-secret]").inner_text().replace(" ", "")
        page.get_by_label("Code from the app").fill("000000")
        page.get_by_role("button", name="Turn on").click()
        expect(page.locator(".error")).to_contain_text("not right")
        page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Turn on").click()
        expect(page.get_by_text("shown only once")).to_be_visible()
        codes = page.locator("[data-codes] li").all_inner_texts()
        assert len(codes) == 10
        shot(page, "recovery-codes")

        # --- a passkey on this "device": Chromium's virtual authenticator
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True}})
        page.get_by_role("link", name="I have saved them").click()
        page.get_by_label("Name it").fill("test laptop")
        page.get_by_role("button", name="Add a passkey on this device").click()
        expect(page.locator("#passkeys .list")).to_contain_text("test laptop")
        creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]})["credentials"]
        assert len(creds) == 1 and creds[0]["rpId"] == "localhost" and creds[0]["isResidentCredential"]
        expect(page.locator("#code-app h2")).to_contain_text("On")
        shot(page, "security-after")
        page.goto(base + "/users")
        expect(page.locator("[data-users]")).to_contain_text(f"{OWNER} (you)")
        shot(page, "users")

        # --- signing in again: the password, then the second step
        sign_out(page)
        shot(page, "login")
        page.get_by_label("User name").fill(OWNER)
        page.get_by_label("Password").fill(GOOD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(base + "/login/verify")
        shot(page, "verify")
        page.get_by_label("The 6-digit code").fill(pyotp.TOTP(secret).at(time.time() + 30))
        page.get_by_role("button", name="Continue").click()
        expect(page).to_have_url(base + "/")
        sign_out(page)

        # --- the password, then the passkey as the second step
        page.get_by_label("User name").fill(OWNER)
        page.get_by_label("Password").fill(GOOD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.get_by_role("button", name="Use my passkey").click()
        expect(page).to_have_url(base + "/")
        sign_out(page)

        # --- the passkey alone (fingerprint / face: the virtual authenticator says yes)
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page).to_have_url(base + "/")
        expect(page.locator("#srv-one")).to_be_visible()
        sign_out(page)

        # --- with the passkey gone from the device, nothing signs in
        cdp.send("WebAuthn.clearCredentials", {"authenticatorId": added["authenticatorId"]})
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page.locator("[data-passkey-note]")).not_to_be_empty()
        expect(page).to_have_url(re.compile(r"/login"))

        # --- through the tunnel door: no setup, and the password alone is not enough
        tunnel = tunnel_of(gateway)
        page.goto(tunnel + "/setup")
        expect(page).to_have_url(tunnel + "/login")
        expect(page.get_by_text("signing in from outside the laptop")).to_be_visible()
        shot(page, "tunnel-login")
        page.get_by_label("User name").fill(OWNER)
        page.get_by_label("Password").fill(GOOD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(tunnel + "/login/verify")
        page.goto(tunnel + "/")
        expect(page).to_have_url(re.compile(r"/login\?next=/$"))  # not signed in without the second step
        page.go_back()
        page.get_by_label("The 6-digit code").fill(codes[0])
        page.get_by_role("button", name="Continue").click()
        expect(page).to_have_url(tunnel + "/")
        expect(page.locator("#srv-one")).to_be_visible()
        assert not [e for e in errors if "401" not in e and "Failed to load resource" not in e], errors
    finally:
        context.close()
