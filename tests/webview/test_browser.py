"""End to end in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright's
Python package): sign in, see the servers running, stop one and see it stopped without a
reload, add a server through the form and see its process start, edit its port, delete it;
at 390 px (a phone) and 1280 px. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fix_gateway import Gateway
from tests.webview.conftest import PASSWORD, USER, artifacts, url_of

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def sign_in(page: Page, base: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login?next=/")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/")


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide"


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_phone_and_desktop(web: Gateway, browser: Browser, width: int, height: int) -> None:
    base = url_of(web)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        sign_in(page, base)
        alpha, beta = page.locator("#srv-alpha"), page.locator("#srv-beta")
        expect(alpha.locator("[data-status]")).to_have_text("Running")
        expect(page.locator("[data-live-hint]")).to_contain_text("Live")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"overview-{width}.png"), full_page=True)

        # stop beta: the card changes without a reload (the stream swaps it in)
        page.evaluate("window.__noReload = true")
        beta.get_by_role("button", name="Stop").click()
        expect(page.locator("#srv-beta [data-status]")).to_have_text("Stopped by you", timeout=15000)
        assert page.evaluate("window.__noReload") is True
        expect(page.locator("[data-count-off]")).to_have_text(" · 1 stopped on purpose")  # the count follows live
        expect(page.locator("[data-count-running]")).to_have_text("1")
        assert web.status()["beta"]["phase"] == "stopped"
        page.screenshot(path=str(artifacts() / f"stopped-{width}.png"), full_page=True)
        page.locator("#srv-beta").get_by_role("button", name="Start").click()
        expect(page.locator("#srv-beta [data-status]")).to_have_text("Running", timeout=15000)

        # add a server through the form; its process starts
        name = f"page-{width}"
        port = free_port()
        page.get_by_role("link", name="Add").click()
        page.locator("input[name=name]").fill(name)
        page.locator("input[name=command]").fill("python -m http.server {port} --bind 127.0.0.1")
        page.locator("input[name=port]").fill(str(port))
        page.get_by_role("button", name="Check port").click()
        expect(page.locator("#port-note")).to_have_text(f"Port {port} is free.")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"form-{width}.png"), full_page=True)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page).to_have_url(f"{base}/servers/{name}")
        expect(page.locator(f"#srv-{name} [data-status]")).to_have_text("Running", timeout=15000)
        assert web.status()[name]["port"] == port
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"detail-{width}.png"), full_page=True)

        # edit its port; a bad one first shows the error by the field
        page.get_by_role("link", name="Edit").click()
        page.locator("input[name=port]").fill("70000")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#err-port")).to_contain_text("70000 is not a port")
        port2 = free_port()
        page.locator("input[name=port]").fill(str(port2))
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(f"{base}/servers/{name}")
        web.wait_for(lambda s: s[name]["port"] == port2 and s[name]["phase"] == "running", what=f"{name} moved")
        expect(page.locator(f"#srv-{name} [data-status]")).to_have_text("Running", timeout=15000)

        # delete it, with the confirmation
        page.get_by_role("link", name="Delete…").click()
        page.get_by_role("button", name=f"Yes, delete {name}").click()
        expect(page).to_have_url(base + "/")
        expect(page.locator(".flash").first).to_contain_text(f"{name} deleted")
        web.wait_for(lambda s: name not in s, what=f"{name} gone")
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()


def test_dark_mode_follows_the_system(web: Gateway, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    try:
        sign_in(page, url_of(web))
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(16, 18, 21)"
        page.screenshot(path=str(artifacts() / "overview-390-dark.png"), full_page=True)
    finally:
        context.close()
