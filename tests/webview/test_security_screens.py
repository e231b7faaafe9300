"""The pages issue 25 added or changed, in headless Chromium at a phone's and a desktop's width:
Settings -> API tokens (make one, see it once, revoke it) and a restore that must first say
whose code app stays behind. Screenshots go to test-artifacts/ to be looked at."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from reconciler.ops.backup import read_archive
from reconciler.store import secretbox
from tests.fix_gateway import Gateway
from tests.ops.test_backup_secrets import with_member
from tests.webview.conftest import USER, artifacts, signed_in, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, sign_in  # noqa: F401 - a fixture

pytestmark = pytest.mark.browser
SIZES = [(390, 844), (1280, 800)]


@pytest.mark.parametrize("width,height", SIZES)
def test_api_tokens_page(web: Gateway, browser: Browser, width: int, height: int) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        sign_in(page, url_of(web))
        page.goto(url_of(web) + "/settings/tokens")
        expect(page.get_by_role("link", name="API tokens")).to_have_attribute("aria-current", "page")
        page.get_by_label("What will use it").fill(f"prometheus {width}")
        page.get_by_role("button", name="Make a read-only token").click()
        expect(page.locator("[data-token-made]")).to_contain_text("shown only this once")
        expect(page.locator("[data-token]")).to_have_text(__import__("re").compile(r"^gwr_"))
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"tokens-made-{width}.png"), full_page=True)
        page.goto(url_of(web) + "/settings/tokens")
        item = page.locator("[data-tokens] li", has_text=f"prometheus {width}")
        item.get_by_text("Revoke", exact=True).click()
        page.screenshot(path=str(artifacts() / f"tokens-revoke-{width}.png"), full_page=True)
        item.get_by_role("button", name=f"Revoke prometheus {width}").click()
        expect(page.locator("p.flash")).to_contain_text(f"“prometheus {width}” no longer works.")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"tokens-revoked-{width}.png"), full_page=True)
    finally:
        context.close()


def other_computers_backup(web: Gateway, out: Path) -> Path:
    """This gateway's backup, as if made on another computer: USER's code app sealed with a
    key this data folder does not have."""
    http = signed_in(web)
    try:
        archive = out / "mine.tar.gz"
        archive.write_bytes(http.get("/settings/backups/download").content)
    finally:
        http.close()
    rows = list(csv.DictReader(io.StringIO(read_archive(archive)["db/users.csv"].decode())))
    other = secretbox.Box(os.urandom(32))
    for row in rows:
        if row["name"] == USER:
            row["totp_secret"] = other.seal("ELSEWHEREELSEWHE", secretbox.context(USER, "totp_secret"))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return with_member(archive, out / "from-the-old-laptop.tar.gz", "db/users.csv", text.getvalue().encode())


@pytest.mark.parametrize("width,height", SIZES)
def test_a_restore_from_another_computer_says_so_first(web: Gateway, browser: Browser, tmp_path: Path,  # noqa: F811
                                                        width: int, height: int) -> None:
    archive = other_computers_backup(web, tmp_path)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        sign_in(page, url_of(web))
        page.goto(url_of(web) + "/settings/backups")
        page.screenshot(path=str(artifacts() / f"backups-{width}.png"), full_page=True)
        page.locator("input[type=file]").set_input_files(str(archive))
        page.get_by_text("Yes, replace the history").click()
        page.get_by_role("button", name="Restore", exact=True).click()
        waiting = page.locator("[data-restore-waiting]")
        expect(waiting).to_contain_text("Nothing is restored yet.")
        expect(waiting).to_contain_text(f"The code app of {USER} cannot come along")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"backups-restore-elsewhere-{width}.png"), full_page=True)
        waiting.get_by_role("link", name="Don't restore").click()
        expect(page.locator("[data-restore-waiting]")).to_have_count(0)
    finally:
        context.close()
