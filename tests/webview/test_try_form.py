"""The add form's "Try it first": the candidate runs once on a spare port with its own settings,
the verdict and its output are shown, and nothing is saved (a real gateway and processes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import PASSWORD, USER, artifacts, cli, signed_in, url_of
from tests.webview.test_browser import browser, sign_in  # noqa: F401 - the module's browser fixture


@pytest.fixture
def page_gateway(gateway: Gateway) -> Gateway:
    gateway.start()
    assert cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    return gateway


def form(http, **values: str) -> dict[str, str]:
    base = {"name": "", "command": "", "port": "auto", "cwd": "", "description": "", "health_type": "",
            "health_path": "", "health_command": "", "domain": "", "group": "", "tags": "", "env": ""}
    return {**base, **values, "csrf": http.csrf}


def test_try_a_good_and_a_bad_candidate_saves_nothing(page_gateway: Gateway, reap):
    http = signed_in(page_gateway)
    good = http.post("/new", data=form(http, name="blog", command="python -m http.server {port} --bind 127.0.0.1",
                                       action="try"))
    assert good.status_code == 200
    assert "It works:" in good.text and re.search(r"answered on port \d+ in [\d.]+ s", good.text)
    assert "Serving HTTP on 127.0.0.1" in good.text  # what it printed
    bad = http.post("/new", data=form(http, name="bot", action="try",
                                      command="python -c \"import sys; print('Error: TOKEN not set', file=sys.stderr); sys.exit(2)\""))
    assert "It did not work:" in bad.text and "exited with code 2: Error: TOKEN not set" in bad.text
    assert not (page_gateway.config_dir / "blog.toml").exists() and not (page_gateway.config_dir / "bot.toml").exists()
    assert "blog" not in page_gateway.status()
    http.close()


@pytest.mark.browser
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_try_it_first_on_a_phone_and_a_desktop(page_gateway: Gateway, browser: Browser, width: int,  # noqa: F811
                                              height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    sign_in(page, url_of(page_gateway))
    page.goto(url_of(page_gateway) + "/new")
    page.get_by_label("Name", exact=False).first.fill("blog")
    page.locator("input[name=command]").fill("python -m http.server {port} --bind 127.0.0.1")
    page.get_by_role("button", name="Try it first").click()
    expect(page.locator("[data-tried]")).to_contain_text("It works:")
    page.screenshot(path=str(artifacts() / f"try-first-{width}.png"), full_page=True)
    assert not Path(page_gateway.config_dir / "blog.toml").exists()
    context.close()
