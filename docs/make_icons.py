"""How the page's PNG and ICO icons were made from the two SVGs in webview/static/icons/: run once
after changing a drawing (`python docs/make_icons.py`, with playwright and a Chromium), then commit
the files. The gateway serves them as they are: there is no build step.

- icon.svg: the favicon (browsers that take SVG), drawn on transparency with rounded corners;
  icon-192.png, icon-512.png and favicon.ico (16, 32, 48 px) from it.
- maskable.svg: full-bleed, the drawing inside the middle 80 % that Android and iOS keep when they
  cut their own shape: maskable-512.png (the web app manifest) and apple-touch-icon.png (180 px).
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
from pathlib import Path

from playwright.sync_api import sync_playwright

ICONS = Path(__file__).resolve().parents[1] / "webview" / "static" / "icons"
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PNGS = {"icon-192.png": ("icon.svg", 192), "icon-512.png": ("icon.svg", 512),
        "maskable-512.png": ("maskable.svg", 512), "apple-touch-icon.png": ("maskable.svg", 180)}
ICO_SIZES = (16, 32, 48)


def render(page, svg: str, size: int) -> bytes:  # type: ignore[no-untyped-def]
    data = base64.b64encode((ICONS / svg).read_bytes()).decode()
    page.set_viewport_size({"width": size, "height": size})
    page.set_content(f'<html><body style="margin:0;background:transparent">'
                     f'<img src="data:image/svg+xml;base64,{data}" width="{size}" height="{size}"></body></html>')
    return page.screenshot(omit_background=True, clip={"x": 0, "y": 0, "width": size, "height": size})


def ico(images: list[tuple[int, bytes]]) -> bytes:
    """An ICO file holding PNG images (read by every browser since Internet Explorer 9)."""
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, png in images:
        out += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
    return out + b"".join(png for _, png in images)


def main() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        for name, (svg, size) in PNGS.items():
            (ICONS / name).write_bytes(render(page, svg, size))
        (ICONS / "favicon.ico").write_bytes(ico([(size, render(page, "icon.svg", size)) for size in ICO_SIZES]))
        browser.close()


if __name__ == "__main__":
    main()
