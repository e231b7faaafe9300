"""The card of a server whose change was rolled back: what happened in words, that the
previous version runs, and Retry / Edit (a real gateway, a real Chromium for the screenshots)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway
from tests.reconciler.test_loop import free_port, wait_until
from tests.reconciler.test_rollout import bad, good, healthy_and_good, kinds
from tests.webview.conftest import PASSWORD, USER, artifacts, cli, signed_in, signed_up_gateway, url_of
from tests.webview.test_browser import browser, sign_in  # noqa: F401 - the module's browser fixture


def roll_back(gateway: Gateway, port: int) -> Gateway:
    """`web` healthy at `port`, then a bad edit of it rolled back: the previous version runs."""
    healthy_and_good(gateway, "web")
    gateway.write("web", bad(port))
    wait_until(lambda: "rolled_back" in kinds(gateway, "web"), timeout=20, what="the rollback")
    gateway.wait_phase("web", "running")
    return gateway


@pytest.fixture
def rolled_back(gateway: Gateway) -> Gateway:
    port = free_port()
    gateway.write("web", good(port))
    gateway.start()
    assert cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    return roll_back(gateway, port)


@pytest.fixture(scope="module")
def rolled_back_to_look_at(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    """The same, once for the screenshots, which only look (the retry test has its own)."""
    port = free_port()
    with signed_up_gateway(tmp_path_factory.mktemp("rolled"), pg_dsn, {"web": good(port)}) as gw:
        yield roll_back(gw, port)


def test_the_card_says_the_change_was_not_applied_and_retry_tries_it_again(rolled_back: Gateway):
    http = signed_in(rolled_back)
    page = http.get("/").text
    assert "Your change was not applied: it stopped with an error (exit code 2)" in page
    assert "The previous version is running." in page and "Retry my change" in page
    assert 'href="/servers/web/edit"' in page
    # its settings as in force: the version that runs, not the file's rejected one
    detail = http.get("/servers/web").text
    settings = detail[detail.index("Its settings, as in force"):]
    assert "data-not-the-file" in settings and "http.server" in settings and "TOKEN" not in settings
    done = http.post("/servers/web/control", data={"verb": "retry", "csrf": http.csrf, "back": "/"})  # type: ignore[attr-defined]
    assert done.status_code in (200, 303)
    # the answer comes once the loop acted (it waited for the whole try before): the card shows it under way
    card = http.get("/").text
    card = card[card.index('id="srv-web"'):]
    card = card[:card.index("</article>")]
    assert "Your change was not applied" not in card
    assert any(w in card for w in ("Stopping…", "Starting…", "Trying your change")), card
    wait_until(lambda: kinds(rolled_back, "web").count("rolled_back") == 2, timeout=20, what="tried again")
    http.close()


@pytest.mark.browser
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_the_rolled_back_card_on_a_phone_and_a_desktop(rolled_back_to_look_at: Gateway, browser: Browser,  # noqa: F811
                                                       width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    sign_in(page, url_of(rolled_back_to_look_at))
    card = page.locator("#srv-web")
    expect(card.locator("[data-change]")).to_contain_text("Your change was not applied")
    expect(card.get_by_role("button", name="Retry my change")).to_be_visible()
    page.screenshot(path=str(artifacts() / f"rolled-back-{width}.png"), full_page=True)
    context.close()
