"""Power: a laptop on battery, and power settings that put it to sleep.

- The battery: read every CHECK_EVERY seconds; below `[host] battery_alert` percent (default 20,
  0 = never) while unplugged, one `battery_low` event (and the "battery" alert) that says what
  will happen: "the laptop will shut down in about N min". Armed again once it is plugged in or
  back above the threshold by REARM points.
- The power plan (Windows: sleep / hibernate after N minutes on power, the lid's action; read by
  `platform.power_warnings`): each new finding is one `power_settings` event naming the one
  command that fixes it, and stays in the watch's `warnings` while it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

from reconciler.core.events import EventKind
from reconciler.platform import current

if TYPE_CHECKING:
    from reconciler.engine.config import LoadResult
    from reconciler.engine.runtime import Runtime

log = logging.getLogger("gateway")
CHECK_EVERY = 60.0  # seconds between two battery readings
SETTINGS_EVERY = 3600.0  # seconds between two looks at the power plan
DEFAULT_ALERT = 20.0  # percent
REARM = 5.0  # percent points above the threshold that count as "charged again"


@dataclass(frozen=True)
class Battery:
    percent: float
    plugged: bool | None  # None: the OS does not say
    secs_left: int | None  # None: unknown (or unlimited: plugged in)


def read_battery() -> Battery | None:
    """The battery now, or None when there is none (a desktop, a VM). Blocking (reads /sys, WMI)."""
    try:
        raw = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError):
        return None
    if raw is None:
        return None
    secs = raw.secsleft if isinstance(raw.secsleft, int) and raw.secsleft >= 0 else None  # psutil: -1, -2
    return Battery(round(float(raw.percent), 1), raw.power_plugged, secs)


def battery_words(battery: Battery) -> str:
    if battery.secs_left is not None:
        minutes = max(1, round(battery.secs_left / 60))
        when = f"the laptop will shut down in about {minutes} min"
    else:
        when = "the laptop will shut down when it runs out"
    return f"the battery is at {battery.percent:.0f} % and the laptop is not plugged in: {when}. Plug it in to " \
           "keep your servers running"


@dataclass
class BatteryAlarm:
    """Once per discharge below the threshold (pure: fed readings)."""

    threshold: float = DEFAULT_ALERT
    armed: bool = True

    def step(self, battery: Battery | None) -> str | None:
        if battery is None or self.threshold <= 0:
            return None
        if battery.plugged or battery.percent >= self.threshold + REARM:
            self.armed = True
            return None
        if self.armed and battery.plugged is False and battery.percent < self.threshold:
            self.armed = False
            return battery_words(battery)
        return None


def battery_alert(result: LoadResult | None) -> float:
    """`[host] battery_alert` of the loaded folder (the default before the first load)."""
    return float(result.settings.host.battery_alert) if result is not None else DEFAULT_ALERT


class PowerWatch:
    def __init__(self, rt: Runtime, threshold: Callable[[], float] = lambda: DEFAULT_ALERT) -> None:
        self.rt = rt
        self.threshold = threshold
        self.alarm = BatteryAlarm()
        self.shown: list[tuple[str, str]] = []
        self.warnings: list[dict[str, str]] = []  # the power settings that would stop the servers, now

    def battery(self, reading: Battery | None) -> None:
        self.alarm.threshold = self.threshold()
        text = self.alarm.step(reading)
        if text is not None and reading is not None:
            self.rt.event(EventKind.BATTERY_LOW, None, text,
                          detail={"percent": reading.percent, "secs_left": reading.secs_left,
                                  "threshold": self.alarm.threshold})

    def settings(self, found: list[tuple[str, str]]) -> None:
        for text, fix in found:
            if (text, fix) not in self.shown:
                self.rt.event(EventKind.POWER_SETTINGS, None, f"{text}; to fix it, run: {fix}", detail={"fix": fix})
        self.shown = list(found)
        self.warnings = [{"text": text, "fix": fix} for text, fix in found]

    async def run(self) -> None:
        next_settings = 0.0
        while True:
            try:
                self.battery(await asyncio.to_thread(read_battery))
                if time.monotonic() >= next_settings:
                    next_settings = time.monotonic() + SETTINGS_EVERY
                    self.settings(await asyncio.to_thread(current().power_warnings))
            except Exception:  # a reading we cannot take is skipped; the watch never ends
                log.exception("reading the battery or the power settings failed")
            await asyncio.sleep(CHECK_EVERY)
