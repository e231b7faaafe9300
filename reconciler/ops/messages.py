"""An alert message: what is said (`Alert`), one message for a flurry (`compose`), and its
delivery through apprise (`deliver`, blocking: the dispatcher calls it in a thread)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any

TITLES = {"down": "down", "back_up": "back up", "health": "not answering", "port_held": "cannot start",
          "database": "database unreachable", "disk": "disk almost full", "tunnel": "tunnel offline",
          "sync": "git pull failed", "battery": "battery low", "rollback": "change not applied", "test": "test alert"}


@dataclass(frozen=True)
class Alert:
    kind: str
    server: str | None
    text: str
    what: str = "opened"  # "opened" | "reminder" | "resolved" | "note"


def compose(alerts: list[Alert]) -> tuple[str, str]:
    """One message for a flurry: a title that names what happened, a line per alert."""
    summary: dict[tuple[str, str], list[str]] = {}
    for a in alerts:
        summary.setdefault((a.kind, a.what), []).append(a.server or "gateway")
    heads = [f"{', '.join(dict.fromkeys(names))} {'still ' if what == 'reminder' else ''}{TITLES.get(kind, kind)}"
             for (kind, what), names in summary.items()]
    title = "omen-gateway: " + ("; ".join(heads) if len(heads) <= 3 else f"{len(alerts)} alerts")
    body = "\n".join(f"[{TITLES.get(a.kind, a.kind)}] {a.server or 'gateway'}: {a.text}" for a in alerts)
    return title, body


def severity(alerts: list[Alert] | tuple[Alert, ...]) -> str:
    """apprise's notify type for a message: "failure" when anything in it went wrong,
    "success" when it only says things are back, "info" otherwise (a test)."""
    if any(a.kind != "back_up" for a in alerts):
        return "failure"
    return "success" if alerts else "info"


def load_apprise() -> Any:
    """apprise, imported once; its import warns about the `imghdr` module Python 3.13 drops."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ImportError):  # apprise's PGP support imports it when sending
            import imghdr  # noqa: F401
        import apprise
    return apprise


def deliver(urls: tuple[str, ...] | list[str], title: str, body: str,
            notify_type: str = "info") -> tuple[bool, str | None]:
    """Send through apprise (blocking: call it in a thread). (ok, why not)."""
    if not urls:
        return False, "no [notify] urls configured"
    apprise = load_apprise()
    box = apprise.Apprise()
    bad = [u for u in urls if not box.add(u)]
    if bad:
        return False, f"not an apprise URL: {', '.join(bad)}"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = box.notify(title=title, body=body, notify_type=notify_type)
        text = captured.getvalue().strip() if hasattr(captured, "getvalue") else ""
    return bool(ok), None if ok else (text.splitlines()[-1] if text else "delivery failed")
