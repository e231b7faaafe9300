"""The add/edit form's "Try it first": the candidate runs once on a spare port with its own
settings, what it prints shows on the page as it prints it, then the verdict; nothing is saved
until "Save and start", and no process is left behind, also when the page is left mid-try
(a real gateway, real processes, a real Chromium)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fix_children import gone
from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, artifacts, signed_in, signed_up_gateway, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - the browser fixture

# A candidate that says something, then waits for the test's go-ahead (a file) before it listens:
# the test sees its first line on the page while the try is still waiting, with no sleeps. It
# starts a grandchild too, and writes both pids, so the test can check the whole tree is ended.
GATED = """\
import os, socket, subprocess, sys, time
from pathlib import Path
port, gate, pids = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pids.with_suffix(".tmp").write_text(f"{os.getpid()} {helper.pid}")
os.replace(pids.with_suffix(".tmp"), pids)
print("warming up the cache", flush=True)
print("a-very-long-line-without-spaces-" * 12, flush=True)
while not gate.exists():
    time.sleep(0.05)
sock = socket.socket()
sock.bind(("127.0.0.1", port))
sock.listen()
print(f"listening on {port}", flush=True)
while True:
    sock.accept()[0].close()
"""
BAD = "python -c \"import sys; print('loading'); print('Error: TOKEN not set', file=sys.stderr); sys.exit(2)\""


class Candidate:
    def __init__(self, folder: Path) -> None:
        self.script, self.gate, self.pidfile = folder / "gated.py", folder / "go", folder / "pids"
        self.script.write_text(GATED)

    @property
    def command(self) -> str:
        return f"{sys.executable} {self.script} {{port}} {self.gate} {self.pidfile}"

    def pids(self) -> list[int]:
        deadline = time.monotonic() + 20
        while not self.pidfile.exists():
            assert time.monotonic() < deadline, "the candidate never wrote its pids"
            time.sleep(0.05)
        return [int(p) for p in self.pidfile.read_text().split()]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    """One gateway for the module, with one running server to edit."""
    with signed_up_gateway(tmp_path_factory.mktemp("tryweb"), pg_dsn, {"alpha": HTTP}) as gw:
        yield gw


@pytest.fixture
def http(web: Gateway) -> Iterator[httpx.Client]:
    client = signed_in(web)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def candidate(tmp_path: Path) -> Candidate:
    return Candidate(tmp_path)


def all_gone(pids: list[int], within: float = 30.0) -> list[int]:
    """The pids still running after waiting up to `within` s (a deadline, not a measurement)."""
    deadline = time.monotonic() + within
    while any(not gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if not gone(pid)]


def form(http: httpx.Client, **values: str) -> dict[str, str]:
    base = {"name": "", "command": "", "port": "auto", "cwd": "", "description": "", "health_type": "",
            "health_path": "", "health_command": "", "domain": "", "group": "", "tags": "", "env": ""}
    return {**base, **values, "csrf": http.csrf}  # type: ignore[attr-defined]


def test_without_javascript_the_post_answers_with_the_verdict(web: Gateway, http: httpx.Client, reap) -> None:
    good = http.post("/new", data=form(http, name="nojs-good", action="try",
                                       command="python -m http.server {port} --bind 127.0.0.1"))
    assert good.status_code == 200
    assert "It works:" in good.text and re.search(r"answered on port \d+ in [\d.]+ s", good.text)
    assert "Serving HTTP on 127.0.0.1" in good.text  # what it printed
    assert "Save and start" in good.text
    bad = http.post("/new", data=form(http, name="nojs-bad", action="try", command=BAD))
    assert "It did not work:" in bad.text and "exited with code 2: Error: TOKEN not set" in bad.text
    assert "Save and start" not in bad.text
    assert not list(web.config_dir.glob("nojs-*"))
    assert not {"nojs-good", "nojs-bad"} & set(web.status())


def test_the_live_answer_is_one_json_object_a_line(web: Gateway, http: httpx.Client, candidate: Candidate,
                                                   reap) -> None:
    """What try.js reads: a note with the spare port, each printed line before the verdict, the
    verdict section last; the same CSRF check as the form (a missing token is refused)."""
    candidate.gate.touch()
    data = form(http, name="stream", action="try", command=candidate.command)
    refused = http.post("/new", data={**data, "csrf": "0" * 40}, headers={"accept": "application/x-ndjson"})
    assert refused.status_code == 403
    with http.stream("POST", "/new", data=data, headers={"accept": "application/x-ndjson"}) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        messages = [json.loads(line) for line in r.iter_lines() if line]
    assert re.fullmatch(r"waiting up to 30 s for it to answer on port \d+, a spare one", messages[0]["note"])
    printed = [m["line"] for m in messages if "line" in m]
    assert printed[0] == "warming up the cache" and re.fullmatch(r"listening on \d+", printed[-1])
    assert messages[-1]["done"] and messages[-1]["ok"] and "It works:" in messages[-1]["html"]
    assert all(gone(pid) for pid in candidate.pids())
    assert not (web.config_dir / "stream.toml").exists()


def test_a_second_try_of_the_same_server_ends_the_first(web: Gateway, http: httpx.Client, candidate: Candidate,
                                                        reap) -> None:
    """Two tabs: the second try ends the first one's process tree and says so on the first."""
    data = form(http, name="twice", action="try", command=candidate.command)
    live = {"accept": "application/x-ndjson"}
    with http.stream("POST", "/new", data=data, headers=live) as first:
        reading = first.iter_lines()
        assert "note" in json.loads(next(reading))
        assert json.loads(next(reading)) == {"line": "warming up the cache"}
        first_pids = candidate.pids()
        candidate.pidfile.unlink()
        with http.stream("POST", "/new", data=data, headers=live) as second:
            rest = [json.loads(line) for line in reading if line]
            assert rest[-1]["done"] and not rest[-1]["ok"] and "another try of this server began" in rest[-1]["html"]
            assert all(gone(pid) for pid in first_pids)
            second_pids = candidate.pids()
            candidate.gate.touch()
            answer = [json.loads(line) for line in second.iter_lines() if line]
    assert answer[-1]["ok"] and all(gone(pid) for pid in second_pids)


def start_try(page: Page, base: str, name: str, command: str) -> None:
    page.goto(base + "/new")
    page.locator("input[name=name]").fill(name)
    page.locator("input[name=command]").fill(command)
    page.get_by_role("button", name="Try it first").click()


@pytest.mark.browser
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_output_shows_live_then_the_verdict_then_save(web: Gateway, browser: Browser, candidate: Candidate,  # noqa: F811
                                                      width: int, height: int) -> None:
    name = f"live-{width}"
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    base = url_of(web)
    sign_in(page, base)
    start_try(page, base, name, candidate.command)
    box = page.locator("[data-tried]")
    expect(box.locator("[data-try-lines]")).to_contain_text("warming up the cache")  # printed, not yet listening
    expect(box).to_contain_text("Trying it…")
    expect(box).to_contain_text(re.compile(r"waiting up to 30 s for it to answer on port \d+"))
    assert "It works" not in box.inner_text()
    no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts() / f"try-live-during-{width}.png"), full_page=True)
    tried_pids = candidate.pids()
    assert not (web.config_dir / f"{name}.toml").exists()

    candidate.gate.touch()
    expect(box).to_contain_text(re.compile(r"It works: answered on port \d+ in [\d.]+ s"))
    expect(box.locator("[data-try-lines]")).to_contain_text("listening on")
    no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts() / f"try-live-after-{width}.png"), full_page=True)
    assert all_gone(tried_pids) == [], "the try left its processes running"
    assert not (web.config_dir / f"{name}.toml").exists() and name not in web.status()

    page.get_by_role("button", name="Save and start").click()
    expect(page).to_have_url(re.compile(rf"/servers/{name}$|/$"))
    assert (web.config_dir / f"{name}.toml").exists()
    web.wait_for(lambda s: s.get(name, {}).get("phase") == "running", 20, f"{name} running")
    context.close()
    (web.config_dir / f"{name}.toml").unlink()
    web.wait_for(lambda s: name not in s, 20, f"{name} removed")


BOT = """\
import time
print("logged in as omen-bot; waiting for messages", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.browser
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_a_bot_is_added_by_following_the_form(web: Gateway, browser: Browser, tmp_path: Path,  # noqa: F811
                                              width: int, height: int) -> None:
    """A program without a web page: its own kind presets no port and "it keeps running" as its
    check, so "Try it first" passes once it has kept running, and it is saved and runs (the
    Python kind presets a port check, which such a program never answers: 30 s, then a failure)."""
    (tmp_path / "bot.py").write_text(BOT)
    name = f"bot-{width}"
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    base = url_of(web)
    sign_in(page, base)
    page.goto(base + "/new")
    page.get_by_role("link", name="Bot or worker (no web page)").click()
    expect(page.locator("[data-start-help]")).to_contain_text("no port")
    expect(page.locator("input[name=port]")).to_have_value("")
    expect(page.locator("select[name=health_type]")).to_have_value("running")
    page.locator("input[name=name]").fill(name)
    page.locator("input[name=command]").fill("python bot.py")
    page.locator("input[name=cwd]").fill(str(tmp_path))
    page.get_by_role("button", name="Try it first").click()
    box = page.locator("[data-tried]")
    expect(box).to_contain_text("it must keep running for 5 s")
    expect(box.locator("[data-try-lines]")).to_contain_text("logged in as omen-bot")
    expect(box).to_contain_text("It works: kept running for 5 s (that is its check)",
                                timeout=20_000)
    no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts() / f"try-bot-{width}.png"), full_page=True)
    page.get_by_role("button", name="Save and start").click()
    expect(page).to_have_url(re.compile(rf"/servers/{name}$|/$"))
    saved = (web.config_dir / f"{name}.toml").read_text()
    assert "port" not in saved and 'type = "running"' in saved
    web.wait_for(lambda s: s.get(name, {}).get("phase") == "running", 30, f"{name} running")
    page.goto(base + f"/servers/{name}")
    expect(page.locator(f"#srv-{name} [data-status]")).to_contain_text("Running")
    page.screenshot(path=str(artifacts() / f"bot-card-{width}.png"), full_page=True)
    context.close()
    (web.config_dir / f"{name}.toml").unlink()
    web.wait_for(lambda s: name not in s, 20, f"{name} removed")


@pytest.mark.browser
def test_a_bad_candidate_says_its_last_line_and_a_form_mistake_shows_the_form(web: Gateway,
                                                                             browser: Browser) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 390, "height": 844})
    base = url_of(web)
    sign_in(page, base)
    start_try(page, base, "bot", BAD)
    box = page.locator("[data-tried]")
    expect(box).to_contain_text("It did not work: exited with code 2: Error: TOKEN not set.")
    expect(box.locator("[data-try-lines]")).to_contain_text("loading")
    expect(page.get_by_role("button", name="Save and start")).to_have_count(0)
    page.screenshot(path=str(artifacts() / "try-live-failed-390.png"), full_page=True)
    page.locator("input[name=command]").fill(BAD + " ")
    expect(box.locator("[data-stale]")).to_be_visible()  # the verdict is about the form as it was
    start_try(page, base, "Bad Name", "python app.py")  # the server's answer is the form with the mistake
    expect(page.locator("[data-errors]")).to_contain_text("Nothing was saved")
    assert not (web.config_dir / "bot.toml").exists() and "bot" not in web.status()
    page.close()


@pytest.mark.browser
@pytest.mark.parametrize("how", ["stop button", "another page", "closed tab"])
def test_leaving_mid_try_ends_the_whole_tree(web: Gateway, browser: Browser, candidate: Candidate,  # noqa: F811
                                             how: str) -> None:
    page = browser.new_page()
    base = url_of(web)
    sign_in(page, base)
    start_try(page, base, "slow", candidate.command)  # its gate is never opened: it would wait 30 s
    expect(page.locator("[data-try-lines]")).to_contain_text("warming up the cache")
    pids = candidate.pids()
    assert all(psutil.pid_exists(pid) for pid in pids)
    if how == "stop button":
        page.get_by_role("button", name="Stop the try").click()
        expect(page.locator("[data-tried]")).to_contain_text("You stopped the try")
        page.screenshot(path=str(artifacts() / "try-live-stopped.png"), full_page=True)
    elif how == "another page":
        page.goto(base + "/")
    else:
        page.close()
    assert all_gone(pids, within=15) == [], f"left running after the {how}"  # well before its 30 s
    assert not (web.config_dir / "slow.toml").exists()
    if not page.is_closed():
        page.close()


@pytest.mark.browser
def test_a_try_of_an_edit_leaves_the_running_version_alone(web: Gateway, browser: Browser,  # noqa: F811
                                                           candidate: Candidate) -> None:
    before = web.status()["alpha"]["pid"]
    text = (web.config_dir / "alpha.toml").read_text()
    page = browser.new_page()
    base = url_of(web)
    sign_in(page, base)
    page.goto(base + "/servers/alpha/edit")
    page.locator("input[name=command]").fill(candidate.command)
    candidate.gate.touch()
    page.get_by_role("button", name="Try it first").click()
    expect(page.locator("[data-tried]")).to_contain_text("It works: answered on port")
    expect(page.get_by_role("button", name="Save and restart with it")).to_be_visible()
    assert all_gone(candidate.pids()) == []
    assert web.status()["alpha"]["pid"] == before and (web.config_dir / "alpha.toml").read_text() == text
    page.close()


@pytest.mark.browser
def test_without_javascript_the_button_still_works(web: Gateway, browser: Browser) -> None:  # noqa: F811
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    base = url_of(web)
    sign_in(page, base)
    start_try(page, base, "plain", "python -m http.server {port} --bind 127.0.0.1")
    expect(page.locator("[data-tried]")).to_contain_text(re.compile(r"It works: answered on port \d+"))
    assert not (web.config_dir / "plain.toml").exists()
    context.close()


def server_trees(gw: Gateway) -> set[int]:
    pids: set[int] = set()
    for server in gw.status().values():
        if server["pid"]:
            root = psutil.Process(server["pid"])
            pids |= {root.pid, *(c.pid for c in root.children(recursive=True))}
    return pids


@pytest.fixture(autouse=True)
def no_try_left(web: Gateway) -> Iterator[None]:
    """After each test: nothing runs under the gateway but its servers' own trees (a try left
    behind would be a child of the gateway), and no server file was written but alpha's."""
    yield
    assert web.proc is not None
    gateway = psutil.Process(web.proc.pid)
    deadline = time.monotonic() + 20
    while True:
        extra = {c.pid for c in gateway.children(recursive=True) if not gone(c.pid)} - server_trees(web)
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, [" ".join(psutil.Process(pid).cmdline()) for pid in extra]
    leftovers = list(web.config_dir.glob("*.toml"))
    assert {p.stem for p in leftovers} <= {"alpha", "gateway"}, leftovers
