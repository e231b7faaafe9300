"""Windows' power plan, as `powercfg /query` prints it: does this laptop go to sleep (or hibernate,
or act on a closed lid) while plugged in? Then the servers are unreachable, and the owner is
told in words with the command that fixes it.

The output is localized ("Current AC Power Setting Index" is "Index der aktuellen
Wechselstromeinstellung" in German) but its GUIDs and hex values are not: a setting's block
starts at its GUID, and its last two hex values are the AC index, then the DC index. Parsing is
pure and contract-tested on recorded output; only `read_warnings` runs powercfg (on Windows).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

STANDBYIDLE = "29f6c1db-86da-48c5-9fdb-f2b67b1f44da"  # SUB_SLEEP: sleep after (seconds, 0 = never)
HIBERNATEIDLE = "9d7815a6-7ee4-497e-8888-515a05f02364"  # SUB_SLEEP: hibernate after (seconds)
LIDACTION = "5ca83367-6e45-459f-a27b-476b1d01c936"  # SUB_BUTTONS: 0 nothing, 1 sleep, 2 hibernate, 3 shut down
QUERIES = (["powercfg", "/query", "SCHEME_CURRENT", "SUB_SLEEP", "STANDBYIDLE"],
           ["powercfg", "/query", "SCHEME_CURRENT", "SUB_SLEEP", "HIBERNATEIDLE"],
           ["powercfg", "/query", "SCHEME_CURRENT", "SUB_BUTTONS", "LIDACTION"])
LID_ACTIONS = {1: "goes to sleep", 2: "hibernates", 3: "shuts down"}

_SETTING = re.compile(r"\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", re.IGNORECASE)
_HEX = re.compile(r":\s*0x([0-9a-f]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class PowerSetting:
    ac: int
    dc: int


@dataclass(frozen=True)
class PowerWarning:
    text: str  # in the page's words
    fix: str  # the command that fixes it (from a normal prompt)


def parse_query(output: str) -> dict[str, PowerSetting]:
    """`powercfg /query ...` -> {setting GUID: (AC index, DC index)}. Scheme and subgroup GUIDs
    have no index lines and are left out."""
    found: dict[str, PowerSetting] = {}
    guid: str | None = None
    values: list[int] = []

    def close() -> None:
        if guid is not None and len(values) >= 2:
            found[guid] = PowerSetting(values[-2], values[-1])

    for line in output.splitlines():
        match = _SETTING.search(line)
        if match and not _HEX.search(line):
            close()
            guid, values = match.group(1).lower(), []
        elif (hexed := _HEX.search(line)) and guid is not None:
            values.append(int(hexed.group(1), 16))
    close()
    return found


def _after(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 and seconds >= 3600 else \
        f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def warnings(settings: dict[str, PowerSetting]) -> list[PowerWarning]:
    """What in the plan makes the servers unreachable while the laptop is plugged in."""
    out = []
    sleep = settings.get(STANDBYIDLE)
    if sleep is not None and sleep.ac:
        out.append(PowerWarning(f"this laptop goes to sleep after {_after(sleep.ac)} on power: your servers will "
                                "be unreachable", "powercfg /change standby-timeout-ac 0"))
    hibernate = settings.get(HIBERNATEIDLE)
    if hibernate is not None and hibernate.ac:
        out.append(PowerWarning(f"this laptop hibernates after {_after(hibernate.ac)} on power: your servers will "
                                "be unreachable", "powercfg /change hibernate-timeout-ac 0"))
    lid = settings.get(LIDACTION)
    if lid is not None and lid.ac in LID_ACTIONS:
        out.append(PowerWarning(f"this laptop {LID_ACTIONS[lid.ac]} when its lid is closed on power: your servers "
                                "will be unreachable with the lid closed",
                                "powercfg /setacvalueindex SCHEME_CURRENT SUB_BUTTONS LIDACTION 0, then "
                                "powercfg /setactive SCHEME_CURRENT"))
    return out


def read_warnings() -> list[PowerWarning]:
    """Run powercfg (Windows only; blocking, call it from a thread)."""
    settings: dict[str, PowerSetting] = {}
    for argv in QUERIES:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=20, check=False,
                                  creationflags=0x08000000)  # CREATE_NO_WINDOW
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            settings.update(parse_query(done.stdout))
    return warnings(settings)
