"""The failure moment on a phone (390 px), in a real Chromium against a real gateway: a running
server stops answering its check (its program moved its check to another path, outside its file);
the card says so with the cause within one check interval, and keeps saying it through the
restarts it causes (not "Starting… waiting for the first answer", not a stale "Answers in"); the
header counts it; the owner saves the fix from the form; the server runs; the notice is gone.
Screenshots of each moment at 390 and 1280 px go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import artifacts, signed_up_gateway, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - the fixture

pytestmark = pytest.mark.browser
CHILD = Path(__file__).resolve().parent.parent / "children" / "moving_health.py"
INTERVAL = 2.0  # the server's check interval, seconds


def api_file(health_at: Path, path: str = "/health") -> str:
    return (f'command = ["python", "{CHILD.as_posix()}", "{{port}}"]\nport = "auto"\n'
            f'env = {{ HEALTH_AT = "{health_at.as_posix()}" }}\n'
            f'[health]\ntype = "http"\npath = "{path}"\ninterval = "{INTERVAL:g}s"\nfailures = 3\n'
            'start_period = "3s"\n[restart]\nbackoff_start = "1s"\nbackoff_max = "4s"\nprobation = "1s"\n')


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[tuple[Gateway, Path]]:
    base = tmp_path_factory.mktemp("walk")
    health_at = base / "health-at"
    health_at.write_text("/health", encoding="utf-8")
    calm = 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\nport = "auto"\n'
    with signed_up_gateway(base, pg_dsn, {"api": api_file(health_at), "calm": calm}) as gw:
        yield gw, health_at


def look(browser: Browser, base: str, name: str, path: str = "/") -> None:  # noqa: F811
    """The same moment at 1280 px, for the eye."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, base)
        page.goto(base + path)
        page.screenshot(path=str(artifacts() / f"{name}-1280.png"), full_page=True)
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts() / f"{name}-390.png"), full_page=True)


def test_a_server_that_stops_answering_is_shown_with_its_cause_then_fixed_from_the_form(
        failing: tuple[Gateway, Path], browser: Browser) -> None:  # noqa: F811
    gw, health_at = failing
    base = url_of(gw)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, base)
        card = page.locator("#srv-api")
        expect(card.locator("[data-status]")).to_have_text("Running")
        gw.wait_for(lambda s: s["api"]["health"] == "ok", what="api's first check")

        health_at.write_text("/healthz", encoding="utf-8")  # the program moved its check
        # within one check interval (and the stream's update), with the check's result as the cause
        expect(card.locator("[data-status]")).to_contain_text("not answering", ignore_case=True,
                                                              timeout=(INTERVAL + 1.5) * 1000)
        expect(card.locator("[data-reason]")).to_contain_text("HTTP 404")
        expect(page.locator("[data-count-attention]")).to_contain_text("1 needs attention: api")
        shot(page, "walk-not-answering")
        look(browser, base, "walk-not-answering")

        # restarted because it did not answer: still the same cause, not "Starting…"
        gw.wait_for(lambda s: s["api"]["restarts"] >= 1, timeout=30, what="a restart of api")
        page.wait_for_timeout(1500)
        expect(card.locator("[data-status]")).to_contain_text("Not answering")
        expect(card).to_contain_text("HTTP 404")
        expect(card).not_to_contain_text("Starting…")
        expect(card).not_to_contain_text("Crashed")
        expect(page.locator("[data-count-attention]")).to_contain_text("1 needs attention: api")
        shot(page, "walk-restarted")
        look(browser, base, "walk-restarted")

        # the fix, saved from the form: the check's path follows the program
        page.goto(base + "/servers/api/edit")
        if not page.locator("details.more").first.evaluate("d => d.open"):
            page.locator("details.more summary").first.click()
        page.locator("input[name=health_path]").fill("/healthz")
        shot(page, "walk-fix-form")
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(f"{base}/servers/api")
        single = page.locator("#srv-api")
        expect(single.locator("[data-status]")).to_have_text("Running", timeout=15000)
        expect(single.locator("[data-reason]")).to_have_count(0)
        page.goto(base + "/")
        expect(page.locator("#srv-api [data-status]")).to_have_text("Running")
        expect(page.locator("[data-count-attention]")).to_have_text("Nothing needs your attention.")
        shot(page, "walk-fixed")
        look(browser, base, "walk-fixed", "/servers/api")
    finally:
        context.close()
