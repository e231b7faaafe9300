"""Power: Windows' power plan read from `powercfg /query` output (recorded format, English and a
localized one: only GUIDs and hex values are read), the battery alarm once per discharge, and
what the watch records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.engine.runtime import Runtime
from reconciler.host.power import Battery, BatteryAlarm, PowerWatch
from reconciler.ops.notify import Classifier
from reconciler.platform.windows_power import (
    HIBERNATEIDLE,
    LIDACTION,
    STANDBYIDLE,
    PowerSetting,
    PowerWarning,
    parse_query,
    warnings,
)

RECORDED = Path(__file__).parent / "powercfg"


def _read(name: str) -> dict[str, PowerSetting]:
    return parse_query((RECORDED / name).read_text(encoding="utf-8"))


def test_powercfg_query_is_read_by_guid_and_hex_in_any_language() -> None:
    assert _read("standbyidle_en.txt") == {STANDBYIDLE: PowerSetting(ac=1800, dc=900)}
    assert _read("standbyidle_de.txt") == {STANDBYIDLE: PowerSetting(ac=0, dc=900)}
    assert _read("lidaction_en.txt") == {LIDACTION: PowerSetting(ac=1, dc=1)}
    assert _read("hibernateidle_en.txt") == {HIBERNATEIDLE: PowerSetting(ac=0, dc=10800)}
    assert parse_query("") == {} and parse_query("Invalid Parameters -- try \"/?\" for help") == {}


def test_power_plan_warnings_say_what_happens_and_the_fix() -> None:
    found = warnings({**_read("standbyidle_en.txt"), **_read("lidaction_en.txt"), **_read("hibernateidle_en.txt")})
    assert found == [
        PowerWarning("this laptop goes to sleep after 30 min on power: your servers will be unreachable",
                     "powercfg /change standby-timeout-ac 0"),
        PowerWarning("this laptop goes to sleep when its lid is closed on power: your servers will be unreachable "
                     "with the lid closed",
                     "powercfg /setacvalueindex SCHEME_CURRENT SUB_BUTTONS LIDACTION 0, then powercfg /setactive "
                     "SCHEME_CURRENT"),
    ]
    assert warnings(_read("standbyidle_de.txt")) == []  # never sleeps on power: nothing to say
    assert "after 2 h on power" in warnings({STANDBYIDLE: PowerSetting(7200, 0)})[0].text


def test_battery_alarm_once_per_discharge() -> None:
    alarm = BatteryAlarm(threshold=20)
    steps = [Battery(50, True, None), Battery(25, False, 5400), Battery(19, False, 1500), Battery(18, False, 1400),
             Battery(30, True, None), Battery(19.5, False, None)]
    said = [alarm.step(b) for b in steps]
    assert said[:2] == [None, None] and said[3] is None and said[4] is None
    assert said[2] == ("the battery is at 19 % and the laptop is not plugged in: the laptop will shut down in about "
                       "25 min. Plug it in to keep your servers running")
    assert said[5] is not None and "when it runs out" in said[5]  # plugged in meanwhile: armed again
    assert BatteryAlarm(threshold=0).step(Battery(3, False, 60)) is None  # battery_alert = 0: off
    assert alarm.step(None) is None  # no battery at all


def test_the_watch_records_each_finding_once(tmp_path: Path) -> None:
    recorded: list[dict[str, Any]] = []
    rt = Runtime(tmp_path, tmp_path, recorded.append)
    watch = PowerWatch(rt, lambda: 20.0)
    watch.battery(Battery(10, False, 600))
    watch.battery(Battery(9, False, 540))
    plan = [("this laptop goes to sleep after 30 min on power: ...", "powercfg /change standby-timeout-ac 0")]
    watch.settings(plan)
    watch.settings(plan)
    events = [op for op in recorded if op.get("op") == "event"]
    assert [e["kind"] for e in events] == ["battery_low", "power_settings"]
    assert events[0]["detail"] == {"percent": 10, "secs_left": 600, "threshold": 20.0}
    assert events[1]["reason"].endswith("to fix it, run: powercfg /change standby-timeout-ac 0")
    assert watch.warnings == [{"text": plan[0][0], "fix": plan[0][1]}]
    alert = Classifier()(events[0])
    assert alert is not None and alert.kind == "battery" and "about 10 min" in alert.text


def test_logind_lid_and_idle_actions() -> None:
    from reconciler.platform.posix_power import LID_FIX, busctl_value, linux_warnings, logind_settings

    shipped = (RECORDED / "logind.conf").read_text()  # everything commented out: the defaults
    found = linux_warnings(logind_settings([shipped]), has_lid=True)
    assert found == [(("this laptop goes to sleep when its lid is closed, on power too: your servers will be "
                       "unreachable with the lid closed"), LID_FIX)]
    assert linux_warnings(logind_settings([shipped]), has_lid=False) == []  # a desktop: no lid to close
    fixed = logind_settings([shipped, "[Login]\nHandleLidSwitchExternalPower=ignore\n"])  # our drop-in, later
    assert linux_warnings(fixed, has_lid=True) == []
    idle = linux_warnings(logind_settings(["[Login]\nHandleLidSwitch=ignore\nIdleAction=suspend\n"]), True)
    assert [text for text, _ in idle] == [("this computer goes to sleep after 30min without use: your servers "
                                           "will be unreachable")]
    assert busctl_value('s "suspend"\n') == "suspend" and busctl_value("Failed to connect to bus") is None


def test_pmset_ac_sleep() -> None:
    from reconciler.platform.posix_power import macos_warnings, pmset_ac

    ac = pmset_ac((RECORDED / "pmset_custom.txt").read_text())
    assert ac["sleep"].startswith("10") and ac["displaysleep"] == "10"
    assert macos_warnings(ac) == [("this Mac goes to sleep after 10 min on power: your servers will be unreachable",
                                   "sudo pmset -c sleep 0")]
    assert macos_warnings({"sleep": "0"}) == []
