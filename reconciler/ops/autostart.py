"""`gateway autostart install | remove | status [--kind K] [--print]`: start the gateway at boot
(or at log-on), and say truthfully what is in force.

The files are in `autostart_files` (pure). Here: writing them, running the OS's commands, and
`status`, which asks the OS rather than trusting the file: written (and as install would write
it now?), enabled, will it run at the next boot, is a gateway running on the data folder now
(its lock, whoever started it). `--print` writes nothing and runs nothing: it shows the file
and the commands.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.host.instance import holder, page_url
from reconciler.ops.autostart_files import (  # noqa: F401 - re-exported: the public names of autostart
    AT_BOOT,
    KINDS,
    LABEL,
    NAME,
    TASK_NS,
    Target,
    file_bytes,
    launchd_plist,
    schtasks_create_argv,
    systemd_unit,
    unit_path,
    windowless_python,
    windows_task_xml,
)
from reconciler.platform import SYSTEM, current


class AutostartError(Exception):
    pass


def os_kind() -> str:
    """windows, macos or linux (any other POSIX is treated like Linux), from the platform module."""
    return SYSTEM


def default_kind(system: str) -> str:
    return KINDS[system][0]


def check_kind(system: str, kind: str | None) -> str:
    kind = kind or default_kind(system)
    if kind not in KINDS[system]:
        raise AutostartError(f"--kind {kind}: not a kind on {system} (one of {', '.join(KINDS[system])})")
    return kind


ACCESS_DENIED = "access is denied"  # what schtasks says without administrator rights
ELEVATED_WAIT = 180.0  # seconds the permission prompt may wait for the person at the screen


def asks_permission(kind: str, refusal: str, elevate: bool) -> bool:
    """Whether a refused install is retried through Windows' permission prompt: only the boot task,
    refused for want of rights, with the owner at this computer's screen to answer."""
    return elevate and kind == "boot-task" and ACCESS_DENIED in refusal.lower()


def current_user() -> str:
    if os_kind() == "windows":
        domain = os.environ.get("USERDOMAIN")
        return f"{domain}\\{getpass.getuser()}" if domain else getpass.getuser()
    return os.environ.get("SUDO_USER") or getpass.getuser()  # under sudo: the user who asked


def linger_hint(user: str | None = None) -> str:
    return f"to start the gateway at boot before you log in, run once: loginctl enable-linger {user or current_user()}"


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else ""


def commands(kind: str, verb: str, path: Path) -> list[list[str]]:
    unit = f"{NAME}.service"
    user = ["--user"] if kind == "user-unit" else []
    domain = f"gui/{_uid()}" if kind == "agent" else "system"
    if kind in ("user-unit", "system-unit"):
        return {"install": [["systemctl", *user, "daemon-reload"], ["systemctl", *user, "enable", "--now", unit]],
                "remove": [["systemctl", *user, "disable", "--now", unit], ["systemctl", *user, "daemon-reload"]],
                "enabled": [["systemctl", *user, "is-enabled", unit]],
                "active": [["systemctl", *user, "is-active", unit]]}[verb]
    if kind in ("agent", "daemon"):
        return {"install": [["launchctl", "bootstrap", domain, str(path)]],
                "remove": [["launchctl", "bootout", domain, str(path)]],
                "enabled": [["launchctl", "print", f"{domain}/{LABEL}"]],
                "active": [["launchctl", "print", f"{domain}/{LABEL}"]]}[verb]
    return {"install": [schtasks_create_argv(path)], "remove": [["schtasks", "/Delete", "/TN", NAME, "/F"]],
            "enabled": [["schtasks", "/Query", "/TN", NAME, "/XML"]],
            "active": [["schtasks", "/Query", "/TN", NAME, "/XML"]]}[verb]


def needs_root(kind: str) -> bool:
    return kind in ("system-unit", "daemon")


@dataclass(frozen=True)
class Outcome:
    path: Path
    commands: list[list[str]]  # what was (or, with activate=False, would be) run
    notes: list[str]
    content: bytes = b""


def _run(argvs: list[list[str]], check: bool) -> list[tuple[int, str]]:
    out = []
    for argv in argvs:
        if shutil.which(argv[0]) is None:
            raise AutostartError(f"{argv[0]} is not available here; run by hand: {subprocess.list2cmdline(argv)}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, **current().quiet_kwargs())
        out.append((done.returncode, (done.stdout + done.stderr).strip()))
        if check and done.returncode != 0:
            raise AutostartError(f"{subprocess.list2cmdline(argv)} failed ({done.returncode}): {out[-1][1]}")
    return out


def install(target: Target, *, kind: str | None = None, home: Path | None = None, root: Path = Path("/"),
            activate: bool = True, write: bool = True, user: str | None = None, elevate: bool = False) -> Outcome:
    """Write the file and run the OS's commands; `write=False` (--print) does neither. `elevate`: the
    owner is at this computer's screen, so a task Windows registers only with administrator rights
    (the boot task) is registered through its permission prompt, as an installer would."""
    system = _system_of(kind)
    kind = check_kind(system, kind)
    user = user or current_user()
    path = unit_path(kind, home or Path.home(), target.data_dir, root)
    content = file_bytes(kind, target, user)
    argvs = commands(kind, "install", path)
    notes = [linger_hint(user)] if kind == "user-unit" and not linger_enabled(user) else []
    if kind == "boot-task":
        notes.append("run this from an elevated prompt (Run as administrator) once: Windows asks for it to "
                     "register a task that starts at boot; no password is stored")
    if not write:
        return Outcome(path, argvs, notes, content)
    if activate and system != os_kind():
        raise AutostartError(f"--kind {kind} is for {system}; this is {os_kind()} (one of "
                             f"{', '.join(KINDS[os_kind()])}; --print shows any kind's file)")
    if needs_root(kind) and hasattr(os, "geteuid") and os.geteuid() != 0 and root == Path("/"):
        raise AutostartError(f"--kind {kind} writes {path}: run it as root, e.g. sudo {target.python} -m reconciler "
                             f"autostart install --kind {kind} --config {target.config_dir} --data-dir {target.data_dir}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if activate:
        try:
            _run(argvs, check=True)
        except AutostartError as exc:
            if not asks_permission(kind, str(exc), elevate):
                raise
            code = current().run_elevated(argvs[0], ELEVATED_WAIT)
            if code != 0:
                raise AutostartError("Windows asks for an administrator's permission to start the gateway at boot, "
                                     "and it was not given" + ("" if code is None else f" (schtasks exited {code})")
                                     + "; turn it on again and choose Yes") from None
        notes = [note for note in notes if "elevated prompt" not in note] if elevate else notes
    return Outcome(path, argvs, notes, content)


def remove(target: Target, *, kind: str | None = None, home: Path | None = None, root: Path = Path("/"),
           activate: bool = True, write: bool = True) -> Outcome:
    system = _system_of(kind)
    kind = check_kind(system, kind)
    path = unit_path(kind, home or Path.home(), target.data_dir, root)
    argvs = commands(kind, "remove", path)
    if not write:
        return Outcome(path, argvs, [])
    if activate and system != os_kind():
        raise AutostartError(f"--kind {kind} is for {system}; this is {os_kind()}")
    if activate and path.exists():
        _run(argvs[:1], check=False)
    path.unlink(missing_ok=True)
    if activate and len(argvs) > 1:
        _run(argvs[1:], check=False)
    return Outcome(path, argvs, [])


def _system_of(kind: str | None) -> str:
    return next((s for s, kinds in KINDS.items() if kind in kinds), os_kind())


# --- status: what is really in force ------------------------------------------------------
def linger_enabled(user: str, root: Path = Path("/")) -> bool:
    """systemd-logind keeps this user's manager running from boot (`loginctl enable-linger`)."""
    return (root / "var" / "lib" / "systemd" / "linger" / user).exists()


@dataclass(frozen=True)
class TaskFacts:
    """What the registered Windows task says (from `schtasks /Query /XML`)."""

    enabled: bool
    kind: str  # boot-task / logon-task / other


def parse_task_query(xml: str) -> TaskFacts:
    root = ET.fromstring(xml.split("?>", 1)[1] if xml.lstrip().startswith("<?xml") else xml)
    ns = {"t": TASK_NS}
    enabled_el = root.find("t:Settings/t:Enabled", ns)
    enabled = enabled_el is None or (enabled_el.text or "").strip().lower() == "true"
    kind = "boot-task" if root.find("t:Triggers/t:BootTrigger", ns) is not None else \
        "logon-task" if root.find("t:Triggers/t:LogonTrigger", ns) is not None else "other"
    return TaskFacts(enabled, kind)


@dataclass
class KindStatus:
    kind: str
    path: Path
    written: bool
    current: bool  # the file is what install would write now
    enabled: bool | None  # None: the OS could not be asked
    said: str = ""  # what the OS said, for the details line
    at_boot: str = ""
    notes: list[str] = field(default_factory=list)


def next_boot(kind: str, enabled: bool | None, linger: bool | None) -> str:
    """Will the gateway start at the next boot, in words."""
    if enabled is None:
        return "unknown (the system could not be asked)"
    if not enabled:
        return "no (written but not enabled)"
    if kind in AT_BOOT or (kind == "user-unit" and linger):
        return "yes, before anyone logs on"
    if kind == "user-unit":
        return "only once you log in (no linger: run `loginctl enable-linger USER` to start at boot)"
    return "only once you log on"


def probe_kind(kind: str, target: Target, home: Path, root: Path = Path("/"), user: str | None = None,
               ask: bool = True) -> KindStatus:
    user = user or current_user()
    path = unit_path(kind, home, target.data_dir, root)
    written = path.exists()
    current = written and path.read_bytes() == file_bytes(kind, target, user)
    enabled, said = None, "not asked"
    if ask:
        enabled, said = _ask_enabled(kind, path)
    if not written and kind not in ("boot-task", "logon-task"):
        enabled = False if enabled is None else enabled
    st = KindStatus(kind, path, written, current, enabled, said)
    st.at_boot = next_boot(kind, enabled, linger_enabled(user, root) if kind == "user-unit" else None)
    return st


def _ask_enabled(kind: str, path: Path) -> tuple[bool | None, str]:
    try:
        code, out = _run(commands(kind, "enabled", path), check=False)[0]
    except (AutostartError, OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    if kind in ("user-unit", "system-unit"):
        word = out.splitlines()[0].strip() if out else ""
        if word in ("enabled", "enabled-runtime", "linked", "alias", "static", "disabled", "masked", "not-found"):
            return word.startswith("enabled") or word in ("linked", "alias", "static"), f"is-enabled: {word}"
        return None, out or f"exit {code}"  # e.g. no user systemd: "Failed to connect to bus"
    if kind in ("agent", "daemon"):
        return code == 0, "loaded in launchd" if code == 0 else "not loaded in launchd"
    if code != 0:
        return False, "no task registered"
    facts = parse_task_query(out)
    if facts.kind != kind:
        return False, f"the registered task is a {facts.kind}"
    return facts.enabled, "task enabled" if facts.enabled else "task disabled"


def status(target: Target, *, home: Path | None = None, root: Path = Path("/"), ask: bool = True,
           system: str | None = None, user: str | None = None) -> list[str]:
    """Lines for `gateway autostart status`: every kind of this OS, and which one is in force."""
    system = system or os_kind()
    kinds = [probe_kind(k, target, home or Path.home(), root, user, ask) for k in KINDS[system]]
    in_force = [k for k in kinds if k.written and k.enabled]
    lines = [f"autostart in force: {', '.join(k.kind for k in in_force) if in_force else 'none'}"]
    for k in kinds:
        lines.append(f"{k.kind}:")
        lines.append(f"  file: {'written' if k.written else 'not written'} {k.path}" +
                     ("" if not k.written else " (as install writes it now)" if k.current
                      else " (differs from what install writes now: install again)"))
        lines.append(f"  enabled: {'unknown' if k.enabled is None else 'yes' if k.enabled else 'no'} ({k.said})")
        if k.written:
            lines.append(f"  at the next boot: {k.at_boot}")
    note = holder(target.data_dir)
    url = page_url(target.data_dir)
    lines.append("gateway running now: " + (f"yes, pid {note.get('pid')}" + (f", page at {url}/" if url else "")
                                            if note is not None else f"no (data folder {target.data_dir})"))
    return lines
