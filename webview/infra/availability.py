"""Availability in words (reconciler/store/availability.py gives the figures): this month against
the 99 % promise, what the promise allows and how much of it is used, and the dark hours counted
apart ("the laptop was asleep 42 min", "the gateway was off 3 h"). Pure: view dicts in, words out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webview.infra.words import duration

# each kind of dark period as the owner reads it, then its length
DARK_WORDS = {"asleep": "the laptop was asleep", "off": "the gateway was off",
              "power": "the gateway stopped without warning (a power cut or a crash)",
              "tunnel": "the tunnel was offline (as Cloudflare saw it)"}
WINDOWS = (("24h", "Last 24 h"), ("7d", "Last 7 days"), ("30d", "Last 30 days"))


def pct(value: float | None) -> str:
    """'99.6 %', '99.96 %' (close to 100 a tenth is not enough), '100 %', '-'."""
    if value is None:
        return "-"
    if value >= 100.0:
        return "100 %"
    return f"{value:.2f} %" if value >= 99.9 else f"{value:.1f} %"


def dark_words(dark: Mapping[str, float]) -> list[str]:
    """['the laptop was asleep 42 min', 'the gateway was off 3 h 0 min'], longest first."""
    return [f"{DARK_WORDS.get(cause, cause)} {duration(seconds)}"
            for cause, seconds in sorted(dark.items(), key=lambda kv: -kv[1]) if seconds >= 1]


def availability_words(up: Mapping[str, Any], public: bool) -> dict[str, Any]:
    """The month's line, its tone, the allowance, the dark hours and the three windows."""
    month = up.get("month")
    promise = float(up.get("promise") or 99.0)
    allowed = up.get("month_allowed_s")
    down = (up.get("down_s") or {}).get("month")
    out: dict[str, Any] = {
        "month": pct(month), "promise": f"{promise:g} %", "known": month is not None,
        "kept": month is None or month >= promise,
        "windows": [(label, pct(up.get(key))) for key, label in WINDOWS],
        "dark": dark_words((up.get("dark") or {}).get("month") or {}), "public": public,
    }
    if month is None:
        out["line"] = "Not measured yet this month."
    elif out["kept"]:
        out["line"] = f"{pct(month)} this month: the {promise:g} % promise is kept."
    else:
        out["line"] = f"{pct(month)} this month: below the {promise:g} % promise."
    if allowed is not None and down is not None:
        left = float(allowed) - float(down)
        out["budget"] = (f"Down {duration(down)} of the {duration(allowed)} the promise allows this month"
                         + (f" ({duration(left)} left)." if left > 0 else ": all of it is used."))
    return out
