"""Whether a person is sitting at this machine's screen, and opening the page for them on
first run. Never in CI, never without a display, never over SSH, never when asked not to
(`gateway run --no-browser`, which sets GATEWAY_NO_BROWSER)."""

from __future__ import annotations

import os
import threading

NO_BROWSER = "GATEWAY_NO_BROWSER"


def has_desktop() -> bool:
    env = os.environ
    if env.get(NO_BROWSER) or env.get("CI") or env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
        return False
    from reconciler.platform import SYSTEM  # the one place that asks which OS this is

    if SYSTEM == "windows":
        # a service or a boot task runs in session 0 (no desktop); a logged-on user's console has one
        return env.get("SESSIONNAME", "").lower().startswith(("console", "rdp"))
    if SYSTEM == "macos":
        return True  # (SSH excluded above; launchd agents run in the user's GUI session)
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_page(url: str) -> bool:
    """Open `url` in the default browser, without waiting for it; False when not at a desktop."""
    if not has_desktop():
        return False
    import webbrowser

    threading.Thread(target=webbrowser.open, args=(url,), name="open-browser", daemon=True).start()
    return True
