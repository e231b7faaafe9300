"""In headless Chromium, at a phone's and a desktop's size: add a server from a starting
point and see it run; save an alert address on the settings page and get a real alert at a
local receiver when a server goes down, without restarting the gateway. Screenshots of
every screen on the way are kept in test-artifacts/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import artifacts, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - a fixture
from tests.webview.test_settings import CRASHER, Receiver, gw, receiver  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def quick_alerts(gw: Gateway) -> None:  # noqa: F811
    """One message per second at most (the default 5 min would hold the second run's alert)."""
    from reconciler.ops import tomledit

    tomledit.edit(gw.config_dir / "gateway.toml", {"notify": {"min_interval": "1s"}})


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "my site"
    folder.mkdir()
    (folder / "index.html").write_text("<h1>hello from my site</h1>")
    return folder


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_add_from_a_starting_point_and_get_an_alert(gw: Gateway, browser: Browser, receiver: Receiver,  # noqa: F811
                                                    site: Path, width: int, height: int) -> None:
    base = url_of(gw)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    def shot(what: str) -> None:
        page.screenshot(path=str(artifacts() / f"{what}-{width}.png"), full_page=True)

    try:
        sign_in(page, base)
        # a server from a starting point: a folder of files as a website
        page.get_by_role("link", name="Add").click()
        page.get_by_role("link", name="Folder of files (a website)").click()
        expect(page.locator("[data-start-help]")).to_contain_text("folder")
        name = f"site-{width}"
        page.locator("input[name=name]").fill(name)
        page.locator("input[name=cwd]").fill(str(site) + "-typo")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#err-cwd")).to_contain_text("does not exist")  # checked before saving
        no_horizontal_scroll(page)
        shot("add-from-starter-error")
        page.locator("input[name=cwd]").fill(str(site))
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page).to_have_url(f"{base}/servers/{name}")
        expect(page.locator(f"#srv-{name} [data-status]")).to_have_text("Running", timeout=20000)
        link = page.locator(f"#srv-{name} [data-open]")
        served = context.request.get(link.get_attribute("href"))
        assert "hello from my site" in served.text()
        shot("added-server")

        # an alert address, saved on the page, in force at once
        page.get_by_role("link", name="Settings").click()
        expect(page).to_have_url(f"{base}/settings/alerts")
        page.locator("textarea[name=urls]").fill(receiver.url)
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".flash").first).to_contain_text("In force now")
        expect(page.locator("main")).to_contain_text("Alerts go to 1 address now")
        no_horizontal_scroll(page)
        shot("settings-alerts-saved")

        # a server goes down: the alert reaches the receiver, no restart of the gateway
        pid = gw.proc.pid if gw.proc else None
        bot = f"bot-{width}"
        gw.write(bot, CRASHER)
        got = receiver.wait_for(bot, 40)
        assert "down" in got["title"] and gw.proc is not None and gw.proc.pid == pid
        deadline = time.monotonic() + 10
        page.reload()
        while "reached you" not in page.locator("main").inner_text():
            assert time.monotonic() < deadline
            page.reload()
        shot("settings-alerts-delivered")
        page.goto(base + "/")
        expect(page.locator(f"#srv-{bot} [data-status]")).to_contain_text("trying again in", timeout=10000)
        shot("overview-with-a-crash")
        for section in ("ports", "backups", "boot"):
            page.goto(f"{base}/settings/{section}")
            no_horizontal_scroll(page)
            shot(f"settings-{section}")
        page.goto(f"{base}/servers/{bot}")
        shot("detail-crashing")
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()


def test_local_links_are_hidden_when_the_page_is_not_on_this_computer(gw: Gateway, browser: Browser) -> None:  # noqa: F811
    """A phone on the Wi-Fi reaches the page at the laptop's address: a link to 127.0.0.1 would
    open the phone itself, so the card does not offer it there (here 192.0.2.10 is mapped to
    127.0.0.1 inside Chromium, as the laptop's LAN address would be)."""
    from tests.webview.conftest import PASSWORD, USER
    from tests.webview.test_browser import CHROMIUM

    port = url_of(gw).rsplit(":", 1)[1]
    # a browser of its own: the address map is a launch option
    b = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--host-resolver-rules=MAP 192.0.2.10 127.0.0.1"])
    try:
        for base, links in ((f"http://192.0.2.10:{port}", 0), (url_of(gw), 1)):
            page = b.new_page(viewport={"width": 390, "height": 844})
            page.goto(base + "/login")
            page.get_by_label("User name").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#srv-web [data-status]")).to_have_text("Running")
            expect(page.locator("#srv-web [data-open]")).to_have_count(links)
            page.close()
    finally:
        b.close()
