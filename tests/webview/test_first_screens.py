"""The first screens a new owner sees, in a real headless Chromium at 390 px (and 1280 px for the
screenshots): a real name is accepted as "Your name", and a mistake in the name leaves the two
passwords as typed; the checklist after setup shows what is done and its main button shows the
servers; the recovery codes stand apart at 390 px and can be downloaded; the page has a favicon
and a home-screen icon. Screenshots go to test-artifacts/ (first-*.png)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import httpx
import pyotp
from playwright.sync_api import Browser, Page, expect

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, artifacts, url_of
from tests.webview.test_browser import browser, no_horizontal_scroll, pytestmark  # noqa: F401 - fixture

NAME, GOOD = "Ada Lovelace", "plum kettle orbit 42"


def shot(page: Page, name: str) -> None:
    for width, height in ((390, 844), (1280, 800)):
        page.set_viewport_size({"width": width, "height": height})
        if width == 390:
            no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts() / f"first-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})


def overlapping(boxes: list[dict[str, float]]) -> list[tuple[int, int]]:
    """Pairs of boxes that overlap (by more than a pixel: borders may touch)."""
    pairs = []
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[i + 1:], i + 1):
            if (min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"]) > 1 and
                    min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"]) > 1):
                pairs.append((i, j))
    return pairs


# Where each code's own text is drawn (not its number): a Range over its text node.
TEXT_BOXES = """els => els.map(e => {
  const range = document.createRange(); range.selectNodeContents(e);
  const r = range.getBoundingClientRect();
  return {text: e.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
})"""


def crowded(texts: list[dict[str, float | str]]) -> list[tuple[str, str, float]]:
    """Codes side by side with less than 5 characters between them: the room for the next one's
    number ("10.") and a clear space. At 390 px the list's numbers ran into the codes before them."""
    found = []
    for a in texts:
        char = (float(a["right"]) - float(a["left"])) / len(str(a["text"]))
        for b in texts:
            same_line = min(float(a["bottom"]), float(b["bottom"])) - max(float(a["top"]), float(b["top"])) > 1
            if a is not b and same_line and float(b["left"]) >= float(a["right"]):
                gap = (float(b["left"]) - float(a["right"])) / char
                if gap < 5:
                    found.append((str(a["text"]), str(b["text"]), round(gap, 1)))
    return found


def test_a_new_owner_with_a_real_name_through_the_first_screens(gateway: Gateway, browser: Browser) -> None:  # noqa: F811
    gateway.write("one", HTTP)
    gateway.start()
    base = url_of(gateway)
    context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
    page = context.new_page()
    try:
        # --- a mistake in the name: said, and the passwords stay as typed
        page.goto(base + "/")
        expect(page).to_have_url(base + "/setup")
        page.get_by_label("Your name").fill("Ada/Lovelace")
        page.get_by_label("Password", exact=True).fill(GOOD)
        page.get_by_label("Password again").fill(GOOD)
        page.get_by_role("button", name="Create my account").click()
        expect(page.locator(".error")).to_contain_text("is not a user name: use letters, digits, spaces")
        expect(page.get_by_label("Password", exact=True)).to_have_value(GOOD)
        expect(page.get_by_label("Password again")).to_have_value(GOOD)
        shot(page, "setup-name-mistake")

        # --- a real name is a name
        page.get_by_label("Your name").fill(f"  {NAME} ")
        page.get_by_role("button", name="Create my account").click()
        expect(page).to_have_url(base + "/setup/next")
        expect(page.get_by_role("heading", name=f"You're in, {NAME}")).to_be_visible()
        expect(page.locator("[data-progress]")).to_contain_text("0 of 4 done")
        expect(page.get_by_role("link", name="Show my servers")).to_be_visible()
        expect(page.get_by_text("Skip")).to_have_count(0)
        shot(page, "checklist-none")

        # --- alerts set up: the checklist shows it
        page.get_by_role("link", name="Set up alerts").click()
        page.locator("textarea[name=urls]").fill("json://127.0.0.1:9/hook")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("p.flash")).to_contain_text("Alert settings saved")
        page.get_by_role("link", name="First steps").click()
        expect(page.locator("[data-progress]")).to_contain_text("1 of 4 done")
        expect(page.locator('[data-step="alerts"] [data-state]')).to_have_text("On: alerts go to 1 address.")

        # --- the code app: the recovery codes stand apart at 390 px and download as a file
        page.get_by_role("link", name="Set up a second step").click()
        page.get_by_role("link", name="Turn on the code app").click()
        secret = page.locator("[data-secret]").inner_text().replace(" ", "")
        page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Turn on").click()
        expect(page.get_by_text("shown only once")).to_be_visible()
        codes = page.locator("[data-codes] li").all_inner_texts()
        assert len(codes) == 10 and all(re.fullmatch(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", c) for c in codes)
        boxes = [box for box in (li.bounding_box() for li in page.locator("[data-codes] li").all()) if box]
        assert len(boxes) == 10 and not overlapping(boxes), boxes
        assert all(box["x"] >= 0 and box["x"] + box["width"] <= 390 for box in boxes), boxes
        spill = page.eval_on_selector_all("[data-codes] li", "els => els.filter(e => e.scrollWidth > e.clientWidth)"
                                                              ".map(e => e.textContent)")
        assert spill == [], f"codes wider than their place: {spill}"
        assert crowded(page.eval_on_selector_all("[data-codes] li", TEXT_BOXES)) == []
        with page.expect_download() as download:
            page.get_by_role("link", name="Download them (a text file)").click()
        assert download.value.suggested_filename == "omen-gateway-recovery-codes.txt"
        saved = Path(download.value.path()).read_text(encoding="utf-8")
        assert f"recovery codes for {NAME}" in saved and all(code in saved for code in codes)
        shot(page, "recovery-codes")
        page.get_by_role("link", name="I have saved them").click()

        page.goto(base + "/setup/next")
        expect(page.locator("[data-progress]")).to_contain_text("2 of 4 done")
        expect(page.locator('[data-step="second"] [data-state]')).to_have_text("On: a code app.")
        shot(page, "checklist-two")
        page.get_by_role("link", name="Show my servers").click()
        expect(page).to_have_url(base + "/")
        expect(page.locator("#srv-one")).to_be_visible()

        # --- a file that is not a backup: said in words, naming the file chosen
        page.goto(base + "/settings/backups")
        page.locator("input[name=file]").set_input_files(
            {"name": "holiday.tar.gz", "mimeType": "application/gzip", "buffer": b"a photo, not a backup"})
        page.get_by_label("Yes, replace the history").check()
        page.get_by_role("button", name="Restore").click()
        expect(page.locator(".error")).to_contain_text(
            "Nothing was restored: holiday.tar.gz: this is not a gateway backup")
        assert "ReadError" not in page.content()
        shot(page, "restore-not-a-backup")
    finally:
        context.close()


def test_the_page_has_a_favicon_and_a_home_screen_icon(gateway: Gateway, browser: Browser) -> None:  # noqa: F811
    gateway.write("one", HTTP)
    gateway.start()
    base = url_of(gateway)
    page = browser.new_page()
    page.goto(base + "/login")
    links = page.eval_on_selector_all("link[rel~=icon], link[rel=apple-touch-icon], link[rel=manifest]",
                                      "els => els.map(e => [e.rel, e.getAttribute('href')])")
    found = dict((rel, href) for rel, href in links)
    assert {"icon", "apple-touch-icon", "manifest"} <= set(found), links
    page.close()
    with httpx.Client(base_url=base, trust_env=False) as http:  # none of them needs a sign-in
        ico = http.get("/favicon.ico")
        assert ico.status_code == 200 and ico.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
        for rel, href in links:
            assert http.get(href).status_code == 200, (rel, href)
        touch = http.get(found["apple-touch-icon"]).content
        assert png_size(touch) == (180, 180)
        manifest = json.loads(http.get(found["manifest"]).text)
        assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
        for icon in manifest["icons"]:
            body = http.get(icon["src"])
            assert body.status_code == 200, icon
            if icon["type"] == "image/png":
                width, height = png_size(body.content)
                assert icon["sizes"] == f"{width}x{height}", icon
        assert any(i.get("purpose") == "maskable" for i in manifest["icons"])
        assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
