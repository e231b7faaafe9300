"""The overview and detail screens against a real gateway: a crashing server's card says why
(its exit in words and the last line it printed) and when it tries again, the servers that
need attention come first with a count, a broken file is named and nothing is stopped, and
the live stream keeps counts, CPU and memory moving."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway, finish
from tests.webview.conftest import HTTP, PASSWORD, USER, artifacts, cli, signed_in, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - a fixture

CRASHER = ('command = ["python", "-c", "import sys; print(\'starting up\'); '
           'print(\'Error: TOKEN not set\', file=sys.stderr); sys.exit(3)"]\n'
           '[restart]\nbackoff_start = "60s"\nbackoff_max = "60s"\n')


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("screens")
    (base / "gateway.d").mkdir()
    (base / "gateway.d" / "gateway.toml").write_text('[host]\nsample_every = "1s"\n')
    g = Gateway(base / "gateway.d", base / "data", pg_dsn, f"t_{uuid.uuid4().hex[:12]}")
    g.write("aaa-web", HTTP)
    g.write("zzz-bot", CRASHER)
    g.start()
    try:
        assert cli(g, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
        g.wait_for(lambda s: s.get("aaa-web", {}).get("phase") == "running"
                   and s.get("zzz-bot", {}).get("phase") == "backoff", 30)
        yield g
    finally:
        finish(g, pg_dsn)


@pytest.fixture
def http(gw: Gateway) -> Iterator[httpx.Client]:
    client = signed_in(gw)
    try:
        yield client
    finally:
        client.close()


def card(page: str, name: str) -> str:
    start = page.index(f'id="srv-{name}"')
    return page[start:page.index("</article>", start)]


def test_crashing_card_says_why_and_when(gw: Gateway, http: httpx.Client) -> None:
    page = http.get("/").text
    bot = card(page, "zzz-bot")
    assert "Crashed — trying again in <span data-until=" in bot
    assert "It stopped with an error." in bot and "exit code 3" in bot
    assert "Error: TOKEN not set" in bot and "starting up" in bot
    assert "backoff" not in re.sub(r'(class|data-phase)="[^"]*"', "", bot)
    # one countdown: the badge's first frame is the same number the API's status gives
    wait = int(re.search(r'data-until="[\d.]+">(\d+) s<', bot).group(1))
    status = gw.status()["zzz-bot"]
    api_wait = int(re.search(r"next try in (\d+)s", status["status"]).group(1))
    assert abs(wait - api_wait) <= 1 and "next try in" not in status["reason"]
    # it needs attention: counted, named, and first although its name sorts last
    assert "1 needs attention: zzz-bot" in page
    assert page.index('id="srv-zzz-bot"') < page.index('id="srv-aaa-web"')
    assert re.search(r"data-count-running>1</span> of <span data-count-total>2<", page)
    web = card(page, "aaa-web")
    port = gw.status()["aaa-web"]["port"]
    assert f'href="http://127.0.0.1:{port}/"' in web and "Open on this computer" in web


def test_a_broken_file_is_named_and_nothing_stops(gw: Gateway, http: httpx.Client) -> None:
    pid = gw.status()["aaa-web"]["pid"]
    good = (gw.config_dir / "aaa-web.toml").read_text()
    gw.write("aaa-web", good + "port = 70000\n")
    try:
        deadline = time.monotonic() + 15
        while "has a mistake" not in (page := http.get("/").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.1)
        banner = page[page.index('data-problem="aaa-web"'):]
        assert "Your change to aaa-web.toml has a mistake" in banner[:400]
        assert "Nothing was stopped: the previous version of" in banner[:500]
        assert "Your change to aaa-web.toml has a mistake" in card(page, "aaa-web")
        assert gw.status()["aaa-web"]["pid"] == pid
        detail = http.get("/servers/aaa-web").text
        assert 'data-problem="aaa-web"' in detail and "Nothing was stopped" in detail
    finally:
        gw.write("aaa-web", good)


def test_detail_log_search_without_match_says_so(gw: Gateway, http: httpx.Client) -> None:
    page = http.get("/servers/zzz-bot", params={"q": "no-such-words-here"}).text
    assert "Nothing in the log matches “no-such-words-here”" in page
    found = http.get("/servers/zzz-bot", params={"q": "TOKEN"}).text
    assert "Error: TOKEN not set" in found and "data-no-match" not in found
    events = http.get("/servers/zzz-bot").text
    assert "It ended by itself" in events or "it ended by itself" in events


GROWER = ('command = ["python", "-c", "import time\\na = []\\nwhile True:\\n    a.append(bytearray(2**20))\\n'
          '    time.sleep(0.2)"]\n[health]\ntype = "none"\n')


def test_stream_sends_counts_and_usage_without_a_change(gw: Gateway, http: httpx.Client) -> None:
    path = gw.write("grower", GROWER)  # its memory grows; its state stays "running"
    try:
        gw.wait_phase("grower", "running")
        stats: list[dict] = []
        grower_cards = 0
        with http.stream("GET", "/stream", params={"back": "/"}, timeout=30) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "server":
                    grower_cards += 'id="srv-grower"' in line
                elif line.startswith("data: ") and event == "stats":
                    stats.append(json.loads(line[6:]))
                    mems = {s["servers"]["grower"]["mem"] for s in stats} - {"-"}
                    if len(mems) >= 2:  # the figure moved, and the stream said so by itself
                        break
        assert stats[-1]["running"] == 2 and stats[-1]["total"] == 3 and stats[-1]["attention_names"] == ["zzz-bot"]
        assert stats[-1]["servers"]["aaa-web"]["mem"].endswith("MB")
        assert grower_cards == 1  # its card came once, at the start: only its figures moved
        with http.stream("GET", "/stream", params={"back": "/"}, timeout=30) as r:
            lines = r.iter_lines()
            for line in lines:  # the first message: every card, then the figures
                if line == "event: stats":
                    break
            path.unlink()  # then its file goes: the open page is told to drop its card
            for line in lines:
                if line == "event: gone":
                    assert next(lines) == "data: grower"
                    break
    finally:
        path.unlink(missing_ok=True)
        gw.wait_for(lambda s: "grower" not in s, what="grower gone")


def test_an_open_live_page_keeps_the_figures_at_the_full_rate(gw: Gateway, http: httpx.Client) -> None:
    """Figures come every sample_every (1 s here) while someone looks, else once a minute. A look
    lasts LOOKING_FOR after a request; a live page left open with no request at all goes on
    being a look for as long as it is open."""
    from reconciler.host.sampler import LOOKING_FOR

    with http.stream("GET", "/stream", params={"back": "/"}, timeout=30):  # the last request
        time.sleep(LOOKING_FOR + 12)  # the page sits open; nothing else asks
        with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
            recent = conn.execute("SELECT count(*) FROM host_samples WHERE at > now() - interval '9 seconds'"
                                  ).fetchone()
    assert recent is not None and recent[0] >= 4, recent  # not the 0 or 1 of once a minute


@pytest.mark.browser
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_screens_look_right(gw: Gateway, browser: Browser, width: int, height: int) -> None:  # noqa: F811
    """Each screen at a phone's and a desktop's width: no sideways scroll, the countdown
    ticks in the badge, the log opens at its newest line; screenshots kept as artifacts."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        sign_in(page, url_of(gw))
        badge = page.locator("#srv-zzz-bot [data-until]")
        first = badge.inner_text()
        expect(badge).not_to_have_text(first, timeout=5000)  # it counts down by itself
        expect(page.locator("[data-count-attention]")).to_have_text("1 needs attention: zzz-bot")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"screens-overview-{width}.png"), full_page=True)
        page.goto(url_of(gw) + "/servers/zzz-bot")
        log = page.locator("#log")
        expect(log).to_contain_text("TOKEN")
        assert page.evaluate("(() => { const l = document.getElementById('log');"
                             " return l.scrollHeight <= l.clientHeight || l.scrollTop > 0; })()")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"screens-detail-{width}.png"), full_page=True)
        page.goto(url_of(gw) + "/servers/aaa-web?range=24h")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"screens-detail-web-{width}.png"), full_page=True)
        for path, what in (("/events", "events"), ("/new?start=python", "add-python"), ("/servers/aaa-web/edit", "edit")):
            page.goto(url_of(gw) + path)
            no_horizontal_scroll(page)
            page.screenshot(path=str(artifacts() / f"screens-{what}-{width}.png"), full_page=True)
        expect(page.locator("textarea[name=env]")).to_be_hidden()  # under "More settings" until opened
    finally:
        context.close()


def test_a_new_file_with_a_mistake_gets_a_card_that_says_so(gw: Gateway, http: httpx.Client) -> None:
    path = gw.write("new-one", 'command = ["python", "-m", "http.server"]\nport = 70000\n')
    try:
        deadline = time.monotonic() + 15
        while 'id="srv-new-one"' not in (page := http.get("/").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.1)
        new = card(page, "new-one")
        assert "Not started: its file has a mistake" in new and "new-one.toml has a mistake; nothing was started" in new
        assert "data-control" not in new and 'href="#problem-new-one"' in new and 'id="problem-new-one"' in page
        assert re.search(r"data-count-total>3<", page) and "2 need attention" in page
    finally:
        path.unlink()
