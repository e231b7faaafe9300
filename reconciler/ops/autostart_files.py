"""What `gateway autostart` writes: pure functions of (python, config, data dir, user), tested on
every OS. Two kinds per OS, one that needs no log-on (the default where it needs no password):

- Windows `boot-task` (default): a Task Scheduler task with a boot trigger, run as the user with
  an S4U log-on ("run whether the user is logged on or not", "do not store password"): no
  password is kept; it runs non-interactively in session 0 and reaches the internet, but not
  the user's network shares or EFS-encrypted files (the S4U token has no network credentials).
  Registering a boot trigger needs an elevated prompt once. The user's profile folders still
  resolve, and every path is passed explicitly anyway (--config, --data-dir).
  A Windows service would need a wrapper program and either LocalSystem (another profile, a
  PostgreSQL that refuses admin rights) or a stored password: the task is the smaller thing.
  `logon-task`: the old one, at the user's log-on, in their session.
- Linux `user-unit` (default): a systemd user unit; at boot only with linger
  (`loginctl enable-linger USER`). `system-unit`: /etc/systemd/system with `User=`, at boot
  (written by root).
- macOS `agent` (default): a LaunchAgent, at log-on. `daemon`: a LaunchDaemon with `UserName`,
  at boot (written by root).

Every kind restarts the gateway when it fails, is not stopped on battery and has no time limit.
"""

from __future__ import annotations

import plistlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

NAME = "omen-gateway"
LABEL = "io.omen.gateway"
TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
KINDS = {"windows": ("boot-task", "logon-task"), "linux": ("user-unit", "system-unit"), "macos": ("agent", "daemon")}
AT_BOOT = {"boot-task", "system-unit", "daemon"}  # run before anyone logs on (user-unit: with linger)
BOOT_DELAY = "PT30S"  # after boot: let the network come up first
RESTART_COUNT = 255  # the schema's maximum (unsignedByte)


@dataclass(frozen=True)
class Target:
    """What autostart runs: `python -m reconciler run --config C --data-dir D`."""

    python: Path
    config_dir: Path
    data_dir: Path

    def argv(self, python: Path | None = None) -> list[str]:
        return [str(python or self.python), "-m", "reconciler", "run", "--config", str(self.config_dir),
                "--data-dir", str(self.data_dir)]


def unit_path(kind: str, home: Path, data_dir: Path, root: Path = Path("/")) -> Path:
    """Where the kind's file lives (`home`, `root`: the user's home and the system root)."""
    return {
        "user-unit": home / ".config" / "systemd" / "user" / f"{NAME}.service",
        "system-unit": root / "etc" / "systemd" / "system" / f"{NAME}.service",
        "agent": home / "Library" / "LaunchAgents" / f"{LABEL}.plist",
        "daemon": root / "Library" / "LaunchDaemons" / f"{LABEL}.plist",
    }.get(kind, data_dir / f"{NAME}-{kind}.xml")  # Windows: what schtasks registered from


# --- Windows --------------------------------------------------------------------------
def windowless_python(python: Path) -> Path:
    """pythonw.exe next to python.exe (no console window), when there is one."""
    candidate = python.with_name(python.name.lower().replace("python", "pythonw", 1))
    return candidate if python.name.lower().startswith("python") and not python.name.lower().startswith(
        "pythonw") and candidate.exists() else python


def windows_task_xml(target: Target, user: str, kind: str = "boot-task") -> str:
    python = windowless_python(target.python)
    args = subprocess.list2cmdline(target.argv(python)[1:])
    if kind == "boot-task":
        trigger = f"<BootTrigger>\n      <Enabled>true</Enabled>\n      <Delay>{BOOT_DELAY}</Delay>\n    </BootTrigger>"
        logon = "S4U"  # no password stored; runs whether the user is logged on or not
    else:
        trigger = (f"<LogonTrigger>\n      <Enabled>true</Enabled>\n      <UserId>{escape(user)}</UserId>\n"
                   "    </LogonTrigger>")
        logon = "InteractiveToken"
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="{TASK_NS}">
  <RegistrationInfo>
    <Description>omen-gateway: runs the servers in {escape(str(target.config_dir))}</Description>
    <URI>\\{NAME}</URI>
  </RegistrationInfo>
  <Triggers>
    {trigger}
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{escape(user)}</UserId>
      <LogonType>{logon}</LogonType>
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
      <Count>{RESTART_COUNT}</Count>
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


def windows_task_bytes(target: Target, user: str, kind: str = "boot-task") -> bytes:
    """The file schtasks reads: UTF-16 little-endian with a byte-order mark, CRLF lines."""
    return windows_task_xml(target, user, kind).replace("\n", "\r\n").encode("utf-16")


def schtasks_create_argv(xml_path: Path) -> list[str]:
    return ["schtasks", "/Create", "/TN", NAME, "/XML", str(xml_path), "/F"]


# --- Linux ----------------------------------------------------------------------------
def systemd_unit(target: Target, kind: str = "user-unit", user: str | None = None) -> str:
    exec_start = " ".join(_systemd_quote(a) for a in target.argv())
    as_user = f"User={user}\n" if kind == "system-unit" and user else ""
    wanted = "multi-user.target" if kind == "system-unit" else "default.target"
    return f"""[Unit]
Description=omen-gateway: runs the servers in {target.config_dir}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
{as_user}ExecStart={exec_start}
WorkingDirectory={_systemd_quote(str(target.data_dir))}
Restart=on-failure
RestartSec=5s
# the gateway stops its servers itself (process groups): let it, then clean up
KillMode=mixed
TimeoutStopSec=90s

[Install]
WantedBy={wanted}
"""


def _systemd_quote(arg: str) -> str:
    if arg and not any(c in arg for c in ' \t"\'\\$%;'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%") + '"'


# --- macOS ----------------------------------------------------------------------------
def launchd_plist(target: Target, kind: str = "agent", user: str | None = None) -> bytes:
    plist: dict[str, object] = {
        "Label": LABEL,
        "ProgramArguments": target.argv(),
        "WorkingDirectory": str(target.data_dir),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after a clean stop
        "ProcessType": "Background",
        "StandardOutPath": str(target.data_dir / "autostart.log"),
        "StandardErrorPath": str(target.data_dir / "autostart.log"),
    }
    if kind == "daemon" and user:
        plist["UserName"] = user  # a LaunchDaemon runs as root unless told
    return plistlib.dumps(plist)


def file_bytes(kind: str, target: Target, user: str) -> bytes:
    if kind in ("boot-task", "logon-task"):
        return windows_task_bytes(target, user, kind)
    if kind in ("agent", "daemon"):
        return launchd_plist(target, kind, user)
    return systemd_unit(target, kind, user).encode()
