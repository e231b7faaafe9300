"""The month against the 99 % promise on the page, in a real Chromium at 390 and 1280 px: a
public server's card and page count the time the gateway was off, said apart ("the gateway was
off 6 s"); a local-only server's do not. Also the words for each case, without a browser."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, USER, artifacts, cli, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - fixture
from webview.infra.availability import availability_words, dark_words, pct

CHECKED = '[health]\ntype = "tcp"\ninterval = "1s"\n'  # a beat a second: checks to count before the stop
PUBLIC = HTTP + '[domain]\nhostname = "shop.example.com"\n' + CHECKED


def test_the_words_of_a_month() -> None:
    up = {"24h": 99.2, "7d": 99.97, "30d": 100.0, "month": 98.5, "promise": 99.0, "month_allowed_s": 26784.0,
          "down_s": {"month": 40000.0}, "dark": {"month": {"asleep": 2520.0, "off": 10800.0, "tunnel": 0.4}}}
    words = availability_words(up, public=True)
    assert words["line"] == "98.5 % this month: below the 99 % promise." and not words["kept"]
    assert words["dark"] == ["the gateway was off 3 h 0 min", "the laptop was asleep 42 min"]  # not 0.4 s
    assert words["budget"] == "Down 11 h 6 min of the 7 h 26 min the promise allows this month: all of it is used."
    assert words["windows"] == [("Last 24 h", "99.2 %"), ("Last 7 days", "99.97 %"), ("Last 30 days", "100 %")]
    kept = availability_words({**up, "month": 99.4, "down_s": {"month": 600.0}}, public=True)
    assert kept["kept"] and kept["budget"].endswith("(7 h 16 min left).")
    assert availability_words({}, public=False)["line"] == "Not measured yet this month."
    assert pct(None) == "-" and pct(99.951) == "99.95 %" and dark_words({}) == []


@pytest.fixture
def web(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    from tests.fix_gateway import finish, own_port_range
    import uuid

    base = tmp_path_factory.mktemp("availability")
    config = base / "gateway.d"
    config.mkdir()
    own_port_range(config)
    gw = Gateway(config, base / "data", pg_dsn, f"t_{uuid.uuid4().hex[:12]}")
    gw.write("shop", PUBLIC)
    gw.write("local", HTTP + CHECKED)
    try:
        yield gw
    finally:
        finish(gw, pg_dsn)


@pytest.mark.browser  # a real Chromium: not in a non-browser run (none for Windows under Wine)
def test_a_public_server_s_month_counts_the_time_the_gateway_was_off(web: Gateway, browser: Browser) -> None:  # noqa: F811
    from tests.webview.conftest import PASSWORD

    web.start()
    assert cli(web, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    web.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("shop", "local")))
    from tests.reconciler.test_dark_hours import checks_of
    from tests.reconciler.test_loop import wait_until

    wait_until(lambda: min(checks_of(web, "shop"), checks_of(web, "local")) >= 2, 20, "a few passed checks first")
    assert web.stop() == 0
    time.sleep(6)
    web.start()
    web.wait_for(lambda s: "off" in s.get("shop", {}).get("uptime_pct", {}).get("dark", {}).get("month", {}), 30,
                 "the month counting the time off")
    base = url_of(web)
    for width, height in ((390, 844), (1280, 800)):
        page = browser.new_page(viewport={"width": width, "height": height})
        sign_in(page, base)
        month = page.locator("#srv-shop [data-month]")
        expect(month).to_have_class("bad")  # six seconds off in a month of minutes: below 99 %
        expect(page.locator("#srv-local [data-month]")).to_have_text("100 %")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"availability-overview-{width}.png"), full_page=True)
        page.goto(base + "/servers/shop")
        section = page.locator("[data-availability]")
        expect(section.locator("[data-month-line]")).to_contain_text("this month: below the 99 % promise")
        expect(section.locator("[data-dark]")).to_contain_text(
            "Counted as down, as nobody could reach it: the gateway was off")
        expect(section.locator("[data-budget]")).to_contain_text("the promise allows this month")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"availability-public-{width}.png"), full_page=True)
        page.goto(base + "/servers/local")
        expect(page.locator("[data-availability]")).to_contain_text("not counted against it")
        expect(page.locator("[data-availability] [data-month-line]")).to_contain_text("promise is kept")
        page.screenshot(path=str(artifacts() / f"availability-local-{width}.png"), full_page=True)
        page.close()
