"""Linux and macOS power settings that put a plugged-in laptop to sleep (see windows_power.py
for Windows): said in words with the command that fixes it.

- Linux: systemd-logind suspends on a closed lid, on power too, unless told otherwise
  (`HandleLidSwitchExternalPower`, which defaults to `HandleLidSwitch`, which defaults to
  suspend); `IdleAction` can suspend an idle machine. Read from logind itself (busctl) when it
  answers, else from its configuration files in logind's order. Only on a machine with a lid.
- macOS: `pmset -g custom`'s "AC Power" section: `sleep N` minutes (0 = never).

Parsing is pure and tested on recorded output; `read_warnings` runs the programs.
"""

from __future__ import annotations

import configparser
import glob
import shutil
import subprocess
from pathlib import Path

SLEEPS = {"suspend": "goes to sleep", "hibernate": "hibernates", "hybrid-sleep": "goes to sleep",
          "suspend-then-hibernate": "goes to sleep", "poweroff": "shuts down", "halt": "shuts down"}
KNOWN = {*SLEEPS, "ignore", "lock", "reboot", "kexec", "sleep", "factory-reset"}  # logind's HandleAction names
LOGIND_FILES = ("/usr/lib/systemd/logind.conf.d/*.conf", "/etc/systemd/logind.conf", "/etc/systemd/logind.conf.d/*.conf",
                "/run/systemd/logind.conf.d/*.conf")
LID_FIX = ("sudo mkdir -p /etc/systemd/logind.conf.d && printf '[Login]\\nHandleLidSwitchExternalPower=ignore\\n' | "
           "sudo tee /etc/systemd/logind.conf.d/omen-gateway.conf && sudo systemctl kill -s HUP systemd-logind")


def logind_settings(texts: list[str]) -> dict[str, str]:
    """The [Login] keys of logind.conf and its drop-ins, later files winning (pass them in order)."""
    found: dict[str, str] = {}
    for text in texts:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
        try:
            parser.read_string(text)
        except configparser.Error:
            continue
        if parser.has_section("Login"):
            found.update({k: v.strip() for k, v in parser["Login"].items()})
    return found


def lid_on_power(settings: dict[str, str]) -> str:
    """What a closed lid does while plugged in (logind's defaults applied)."""
    return settings.get("HandleLidSwitchExternalPower") or settings.get("HandleLidSwitch") or "suspend"


def linux_warnings(settings: dict[str, str], has_lid: bool) -> list[tuple[str, str]]:
    out = []
    lid = lid_on_power(settings)
    if has_lid and lid in SLEEPS:
        out.append(((f"this laptop {SLEEPS[lid]} when its lid is closed, on power too: your servers will be "
                     "unreachable with the lid closed"), LID_FIX))
    idle = settings.get("IdleAction", "ignore")
    if idle in SLEEPS:
        after = settings.get("IdleActionSec", "30min")
        out.append((f"this computer {SLEEPS[idle]} after {after} without use: your servers will be unreachable",
                    ("set IdleAction=ignore in /etc/systemd/logind.conf, then: sudo systemctl kill -s HUP "
                     "systemd-logind")))
    return out


def busctl_value(output: str) -> str | None:
    """`busctl get-property ...` prints `s "suspend"`."""
    parts = output.strip().split(" ", 1)
    return parts[1].strip().strip('"') if len(parts) == 2 and parts[0] == "s" else None


def pmset_ac(output: str) -> dict[str, str]:
    """The "AC Power:" section of `pmset -g custom`: {setting: value}."""
    found: dict[str, str] = {}
    section = ""
    for line in output.splitlines():
        if line.strip().endswith("Power:") and not line.startswith(" "):
            section = line.strip()
        elif section == "AC Power:" and line.strip():
            key, _, value = line.strip().partition(" ")
            found[key] = value.strip()
    return found


def macos_warnings(ac: dict[str, str]) -> list[tuple[str, str]]:
    minutes = ac.get("sleep", "0").split()[0]
    if minutes.isdigit() and int(minutes) > 0:
        return [(f"this Mac goes to sleep after {minutes} min on power: your servers will be unreachable",
                 "sudo pmset -c sleep 0")]
    return []


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_warnings(macos: bool) -> list[tuple[str, str]]:
    """Blocking (runs busctl or pmset): call it from a thread."""
    if macos:
        out = _run(["pmset", "-g", "custom"])
        return macos_warnings(pmset_ac(out)) if out else []
    texts = []
    for pattern in LOGIND_FILES:
        for name in sorted(glob.glob(pattern)):
            try:
                texts.append(Path(name).read_text(errors="replace"))
            except OSError:
                continue
    settings = logind_settings(texts)
    manager = ["busctl", "get-property", "org.freedesktop.login1", "/org/freedesktop/login1",
               "org.freedesktop.login1.Manager"]
    for key in ("HandleLidSwitchExternalPower", "IdleAction"):
        said = _run([*manager, key])  # logind's own view wins over our reading of its files
        value = busctl_value(said) if said else None
        if value in KNOWN:
            settings[key] = value
    return linux_warnings(settings, has_lid=bool(glob.glob("/proc/acpi/button/lid/*/state")))
