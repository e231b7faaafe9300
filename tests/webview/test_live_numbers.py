"""The figures on a live page are the figures of now: a page that opens its live stream does not
get back cards cached seconds ago (an uptime of "1 s" put over the page's "6 s" for a moment),
and "This computer: CPU" moves while the page stays open. A real gateway, real processes, a
real Chromium."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, artifacts, signed_up_gateway, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.browser

# Every uptime text a [data-uptime] element shows, in order, from the first paint on.
WATCH_UPTIMES = """
window.seenUptimes = [];
function look() {
  document.querySelectorAll("#srv-alpha [data-uptime]").forEach(function (el) {
    const last = window.seenUptimes[window.seenUptimes.length - 1];
    if (el.textContent !== last) window.seenUptimes.push(el.textContent);
  });
}
new MutationObserver(look).observe(document, { childList: true, subtree: true, characterData: true });
document.addEventListener("DOMContentLoaded", look);
"""


def seconds(text: str) -> int:
    """'6 s' -> 6, '2 min' -> 120, '1 h 3 min' -> 3780 (what the page writes)."""
    total = 0
    for number, unit in re.findall(r"(\d+) (d|h|min|s)\b", text):
        total += int(number) * {"d": 86400, "h": 3600, "min": 60, "s": 1}[unit]
    return total


@pytest.fixture(scope="module")
def internet() -> int:
    """The port the gateway's internet check connects to: closed until a test listens on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, internet: int) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GATEWAY_INTERNET_CHECK", f"127.0.0.1:{internet}")
        with signed_up_gateway(tmp_path_factory.mktemp("live"), pg_dsn, {"alpha": HTTP}) as gw:
            toml = gw.config_dir / "gateway.toml"
            toml.write_text(toml.read_text() + '[host]\nsample_every = "1s"\n')
            yield gw


def test_a_page_that_opens_does_not_get_cards_from_seconds_ago(web: Gateway, browser: Browser) -> None:  # noqa: F811
    base = url_of(web)
    first = browser.new_page()
    sign_in(first, base)  # its stream renders alpha's card now, and keeps it for every later stream
    expect(first.locator("[data-live-hint]")).to_contain_text("Live")
    time.sleep(5)  # the cached card's uptime is 5 s behind by now
    context = browser.new_context(storage_state=first.context.storage_state())
    page = context.new_page()
    page.add_init_script(WATCH_UPTIMES)
    page.goto(base + "/")
    expect(page.locator("[data-live-hint]")).to_contain_text("Live")  # the stream sent its first cards
    time.sleep(2.5)
    seen = [seconds(text) for text in page.evaluate("window.seenUptimes")]
    assert seen and seen[0] >= 5, seen
    assert all(b >= a for a, b in zip(seen, seen[1:])), f"the uptime went back in time: {seen}"
    context.close()
    first.close()


# How often the stream wrote the host's CPU figure into the page.
COUNT_CPU_WRITES = """
window.cpuWrites = 0;
new MutationObserver(function (records) {
  records.forEach(function (r) { if (r.target.closest && r.target.closest('[data-host="cpu"]')) window.cpuWrites++; });
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_this_computers_figures_move_while_the_page_is_open(web: Gateway, browser: Browser,  # noqa: F811
                                                            internet: int, width: int, height: int) -> None:
    """The host line was rendered once, at the page's load, and never moved. The internet check
    is the figure a test can move at will (a port that starts to listen); the CPU, which the
    machine's load moves, is written by the same message."""
    base = url_of(web)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(COUNT_CPU_WRITES)
    sign_in(page, base)
    host = page.locator("section.host")
    expect(host).to_contain_text("No internet")
    expect(host).to_contain_text(re.compile(r"This computer: CPU \d+ %"))
    writes = page.evaluate("window.cpuWrites")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", internet))
        listener.listen(16)
        expect(host).to_contain_text("Internet OK", timeout=15_000)
        expect(page.locator('[data-host="internet"]')).to_have_class(re.compile(r"\bok\b"))
        assert page.evaluate("window.cpuWrites") > writes  # the CPU figure came with it
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"overview-host-{width}.png"), full_page=True)
    expect(host).to_contain_text("No internet", timeout=15_000)
    page.close()
