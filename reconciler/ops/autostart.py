"""`gateway autostart install | remove | status`: start the gateway when the user logs on.

- Windows: a Task Scheduler task from generated XML (`schtasks /Create /XML FILE /TN NAME /F`):
  at log-on of this user, restart on failure, no time limit, hidden (pythonw.exe: no window).
- Linux: a systemd user unit (Restart=on-failure, WantedBy=default.target), enabled and
  started with `systemctl --user`; `loginctl enable-linger USER` makes it start at boot
  without a log-on (printed as a hint: it needs the user's consent).
- macOS: a launchd agent plist (RunAtLoad, KeepAlive on a failed exit), `launchctl bootstrap`.

The file contents are pure functions of (python, config, data dir), tested on every OS;
`install` writes them and runs the OS's command unless `activate=False`.
"""

from __future__ import annotations

import getpass
import os
import plistlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from reconciler.platform import SYSTEM

NAME = "omen-gateway"
LABEL = "io.omen.gateway"


@dataclass(frozen=True)
class Target:
    """What autostart runs: `python -m reconciler run --config C --data-dir D`."""

    python: Path
    config_dir: Path
    data_dir: Path

    def argv(self, python: Path | None = None) -> list[str]:
        return [str(python or self.python), "-m", "reconciler", "run", "--config", str(self.config_dir),
                "--data-dir", str(self.data_dir)]


def os_kind() -> str:
    """windows, macos or linux (any other POSIX is treated like Linux), from the platform module."""
    return SYSTEM


# --- Windows --------------------------------------------------------------------------
def windowless_python(python: Path) -> Path:
    """pythonw.exe next to python.exe (no console window), when there is one."""
    candidate = python.with_name(python.name.lower().replace("python", "pythonw", 1))
    return candidate if python.name.lower().startswith("python") and not python.name.lower().startswith(
        "pythonw") and candidate.exists() else python


def windows_task_xml(target: Target, user: str | None = None) -> str:
    user = user or _windows_user()
    python = windowless_python(target.python)
    args = subprocess.list2cmdline(target.argv(python)[1:])
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>omen-gateway: runs the servers in {escape(str(target.config_dir))}</Description>
    <URI>\\{NAME}</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>{escape(user)}</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{escape(user)}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>true</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(str(python))}</Command>
      <Arguments>{escape(args)}</Arguments>
      <WorkingDirectory>{escape(str(target.data_dir))}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""


def schtasks_create_argv(xml_path: Path) -> list[str]:
    return ["schtasks", "/Create", "/TN", NAME, "/XML", str(xml_path), "/F"]


def _windows_user() -> str:
    domain = os.environ.get("USERDOMAIN")
    return f"{domain}\\{getpass.getuser()}" if domain else getpass.getuser()


# --- Linux ----------------------------------------------------------------------------
def systemd_unit(target: Target) -> str:
    exec_start = " ".join(_systemd_quote(a) for a in target.argv())
    return f"""[Unit]
Description=omen-gateway: runs the servers in {target.config_dir}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
WorkingDirectory={_systemd_quote(str(target.data_dir))}
Restart=on-failure
RestartSec=5s
# the gateway stops its servers itself (process groups): let it, then clean up
KillMode=mixed
TimeoutStopSec=90s

[Install]
WantedBy=default.target
"""


def _systemd_quote(arg: str) -> str:
    if arg and not any(c in arg for c in ' \t"\'\\$%;'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%") + '"'


def linger_hint() -> str:
    return (f"to start the gateway at boot before you log in, run once: loginctl enable-linger {getpass.getuser()}")


# --- macOS ----------------------------------------------------------------------------
def launchd_plist(target: Target) -> bytes:
    return plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": target.argv(),
        "WorkingDirectory": str(target.data_dir),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after a clean stop
        "ProcessType": "Background",
        "StandardOutPath": str(target.data_dir / "autostart.log"),
        "StandardErrorPath": str(target.data_dir / "autostart.log"),
    })


# --- install / remove / status ---------------------------------------------------------
def unit_path(kind: str, home: Path, data_dir: Path) -> Path:
    if kind == "linux":
        return home / ".config" / "systemd" / "user" / f"{NAME}.service"
    if kind == "macos":
        return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    return data_dir / f"{NAME}-task.xml"


@dataclass(frozen=True)
class Outcome:
    path: Path
    commands: list[list[str]]  # what was (or, with activate=False, would be) run
    notes: list[str]


def _commands(kind: str, verb: str, path: Path) -> list[list[str]]:
    unit = f"{NAME}.service"
    uid = str(os.getuid()) if hasattr(os, "getuid") else ""
    table = {
        ("linux", "install"): [["systemctl", "--user", "daemon-reload"],
                               ["systemctl", "--user", "enable", "--now", unit]],
        ("linux", "remove"): [["systemctl", "--user", "disable", "--now", unit],
                              ["systemctl", "--user", "daemon-reload"]],
        ("linux", "status"): [["systemctl", "--user", "status", "--no-pager", unit]],
        ("macos", "install"): [["launchctl", "bootstrap", f"gui/{uid}", str(path)]],
        ("macos", "remove"): [["launchctl", "bootout", f"gui/{uid}", str(path)]],
        ("macos", "status"): [["launchctl", "print", f"gui/{uid}/{LABEL}"]],
        ("windows", "install"): [schtasks_create_argv(path)],
        ("windows", "remove"): [["schtasks", "/Delete", "/TN", NAME, "/F"]],
        ("windows", "status"): [["schtasks", "/Query", "/TN", NAME, "/V", "/FO", "LIST"]],
    }
    return table[(kind, verb)]


class AutostartError(Exception):
    pass


def _run(commands: list[list[str]], check: bool) -> list[str]:
    out = []
    for argv in commands:
        if shutil.which(argv[0]) is None:
            raise AutostartError(f"{argv[0]} is not available here; run by hand: {subprocess.list2cmdline(argv)}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        out.append((done.stdout + done.stderr).strip())
        if check and done.returncode != 0:
            raise AutostartError(f"{subprocess.list2cmdline(argv)} failed ({done.returncode}): {out[-1]}")
    return out


def install(target: Target, *, kind: str | None = None, home: Path | None = None,
            activate: bool = True) -> Outcome:
    kind = kind or os_kind()
    path = unit_path(kind, home or Path.home(), target.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "windows":
        path.write_text(windows_task_xml(target), encoding="utf-16")  # schtasks reads UTF-16 XML
    elif kind == "macos":
        path.write_bytes(launchd_plist(target))
    else:
        path.write_text(systemd_unit(target), encoding="utf-8")
    commands = _commands(kind, "install", path)
    notes = [linger_hint()] if kind == "linux" else []
    if activate:
        _run(commands, check=True)
    return Outcome(path, commands, notes)


def remove(target: Target, *, kind: str | None = None, home: Path | None = None, activate: bool = True) -> Outcome:
    kind = kind or os_kind()
    path = unit_path(kind, home or Path.home(), target.data_dir)
    commands = _commands(kind, "remove", path)
    if activate and path.exists():
        _run(commands[:1], check=False)
    path.unlink(missing_ok=True)
    if activate and kind == "linux":
        _run(commands[1:], check=False)
    return Outcome(path, commands, [])


def status(target: Target, *, kind: str | None = None, home: Path | None = None, activate: bool = True) -> str:
    kind = kind or os_kind()
    path = unit_path(kind, home or Path.home(), target.data_dir)
    if kind != "windows" and not path.exists():
        return f"not installed ({path} does not exist)"
    lines = [f"installed: {path}" if path.exists() else f"task file {path} missing"]
    if activate:
        try:
            lines += _run(_commands(kind, "status", path), check=False)
        except AutostartError as exc:
            lines.append(str(exc))
    return "\n".join(lines)
