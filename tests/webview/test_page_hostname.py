"""The security page sets `[web] hostname` (comments kept), and the tunnel then routes that
name to the page's tunnel door."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import artifacts, signed_in, signed_up_gateway, url_of
from tests.webview.test_browser import browser, sign_in  # noqa: F401 - the module's browser fixture


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    """One gateway for the module: each test starts from no `[web] hostname` (see `no_hostname`)."""
    with signed_up_gateway(tmp_path_factory.mktemp("hostname"), pg_dsn, {}) as gw:
        yield gw


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    """Signed in, with no hostname saved (whatever the test before saved)."""
    client = signed_in(gateway)
    client.post("/security/hostname", data={"hostname": "", "csrf": client.csrf})  # type: ignore[attr-defined]
    assert "hostname" not in (gateway.config_dir / "gateway.toml").read_text()
    try:
        yield client
    finally:
        client.close()


def test_the_security_page_publishes_the_page_at_a_hostname(gateway: Gateway, http: httpx.Client):
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text("# my settings\n" + toml.read_text())
    done = http.post("/security/hostname", data={"hostname": "https://Gateway.Example.com/", "csrf": http.csrf})  # type: ignore[attr-defined]
    assert done.status_code in (200, 303)
    text = toml.read_text()
    assert text.startswith("# my settings\n") and 'hostname = "gateway.example.com"' in text
    page = http.get("/security").text
    assert "https://gateway.example.com" in page
    refused = http.post("/security/hostname", data={"hostname": "not a name!", "csrf": http.csrf},  # type: ignore[attr-defined]
                        follow_redirects=True)
    assert "Not saved" in refused.text and 'hostname = "gateway.example.com"' in toml.read_text()
    http.post("/security/hostname", data={"hostname": "", "csrf": http.csrf})  # type: ignore[attr-defined]
    assert "hostname" not in toml.read_text()


@pytest.mark.browser
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_the_web_address_form_on_a_phone_and_a_desktop(gateway: Gateway, http: httpx.Client, browser: Browser,  # noqa: F811
                                                       width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    sign_in(page, url_of(gateway))
    page.goto(url_of(gateway) + "/security")
    expect(page.locator("#outside")).not_to_contain_text("https://gateway.example.com")  # not yet saved
    page.get_by_label("Web address of this page").fill("gateway.example.com")
    page.locator("#outside").get_by_role("button", name="Save").click()
    expect(page.locator("#outside")).to_contain_text("https://gateway.example.com")
    page.locator("#outside").screenshot(path=str(artifacts() / f"page-hostname-{width}.png"))
    context.close()
