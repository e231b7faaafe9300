"""Autostart: the files for every OS on every OS (the Windows task against what Task Scheduler
requires: namespace, UTF-16 with a byte-order mark, the schtasks argv, the schema's limits);
`--print` writes nothing; `status` asks the real systemd where there is one."""

from __future__ import annotations

import configparser
import os
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest

from reconciler.host.instance import InstanceLock
from reconciler.ops import autostart as a

# a Linux or macOS target, written the same from any OS (its paths stay POSIX paths on Windows too)
TARGET = a.Target(PurePosixPath("/opt/gw venv/bin/python"), PurePosixPath("/home/ana/gateway.d"),  # type: ignore[arg-type]
                  PurePosixPath("/home/ana/.local/gw"))
NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
REPO = Path(__file__).resolve().parents[2]


def _task(tmp_path: Path, kind: str) -> ET.Element:
    python = tmp_path / "python.exe"
    python.write_text("")
    (tmp_path / "pythonw.exe").write_text("")
    target = a.Target(python, Path(r"C:\Users\Ana\gateway.d"), Path(r"C:\Users\Ana\My Data"))
    data = a.file_bytes(kind, target, "LAPTOP\\ana")
    assert data[:2] == b"\xff\xfe"  # UTF-16 LE with its byte-order mark: what schtasks /XML reads
    text = data.decode("utf-16")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\r\n') and "\n" not in text.replace("\r\n", "")
    root = ET.fromstring(data)  # expat reads the declared UTF-16 itself
    assert root.tag == f"{{{NS['t']}}}Task" and root.get("version") == "1.2"
    exec_ = root.find("t:Actions/t:Exec", NS)
    assert exec_.find("t:Command", NS).text == str(tmp_path / "pythonw.exe")  # no console window
    assert exec_.find("t:Arguments", NS).text == \
        r'-m reconciler run --config C:\Users\Ana\gateway.d --data-dir "C:\Users\Ana\My Data"'
    return root


def test_windows_boot_task_needs_no_log_on_and_stores_no_password(tmp_path: Path) -> None:
    root = _task(tmp_path, "boot-task")
    boot = root.find("t:Triggers/t:BootTrigger", NS)
    assert boot is not None and boot.find("t:Enabled", NS).text == "true" and boot.find("t:Delay", NS).text == "PT30S"
    assert root.find("t:Triggers/t:LogonTrigger", NS) is None
    principal = root.find("t:Principals/t:Principal", NS)
    assert principal.find("t:UserId", NS).text == "LAPTOP\\ana"
    assert principal.find("t:LogonType", NS).text == "S4U"  # "whether the user is logged on or not", no password
    assert principal.find("t:RunLevel", NS).text == "LeastPrivilege"
    assert root.find(".//t:Password", NS) is None


def test_windows_logon_task_is_kept_as_an_option(tmp_path: Path) -> None:
    root = _task(tmp_path, "logon-task")
    assert root.find("t:Triggers/t:LogonTrigger/t:UserId", NS).text == "LAPTOP\\ana"
    assert root.find("t:Triggers/t:BootTrigger", NS) is None
    assert root.find("t:Principals/t:Principal/t:LogonType", NS).text == "InteractiveToken"


@pytest.mark.parametrize("kind", ["boot-task", "logon-task"])
def test_windows_task_settings_are_within_the_schema(tmp_path: Path, kind: str) -> None:
    settings = _task(tmp_path, kind).find("t:Settings", NS)
    value = {child.tag.split("}")[1]: (child.text or "").strip() for child in settings}
    assert value["ExecutionTimeLimit"] == "PT0S"  # no time limit
    assert value["DisallowStartIfOnBatteries"] == value["StopIfGoingOnBatteries"] == "false"
    assert value["Hidden"] == value["Enabled"] == value["StartWhenAvailable"] == "true"
    assert value["MultipleInstancesPolicy"] == "IgnoreNew"
    restart = settings.find("t:RestartOnFailure", NS)
    count = int(restart.find("t:Count", NS).text)
    assert 1 <= count <= 255  # restartType/Count is an unsignedByte, at least 1
    assert restart.find("t:Interval", NS).text == "PT1M"  # between PT1M and P31D
    assert 0 <= int(value["Priority"]) <= 10


def test_schtasks_argv_is_exact() -> None:
    assert a.schtasks_create_argv(Path(r"C:\d\t.xml")) == ["schtasks", "/Create", "/TN", "omen-gateway", "/XML",
                                                          r"C:\d\t.xml", "/F"]
    assert a.commands("boot-task", "remove", Path("x")) == [["schtasks", "/Delete", "/TN", "omen-gateway", "/F"]]


def test_only_the_boot_task_refused_for_rights_asks_the_person_at_the_screen() -> None:
    refused = "schtasks /Create /TN omen-gateway /XML task.xml /F failed (1): ERROR: Access is denied."
    assert a.asks_permission("boot-task", refused, elevate=True)
    assert not a.asks_permission("boot-task", refused, elevate=False)  # through the tunnel: nobody is there
    assert not a.asks_permission("logon-task", refused, elevate=True)  # a log-on task needs no rights
    assert not a.asks_permission("boot-task", "ERROR: The task XML is malformed.", elevate=True)


@pytest.mark.skipif(sys.platform != "win32", reason="Windows' permission prompt (the Windows lane runs it; Wine "
                                                    "runs the program without asking)")
def test_a_program_run_through_the_permission_prompt_gives_its_exit_code() -> None:
    from reconciler.platform import current

    assert current().run_elevated(["cmd.exe", "/d", "/c", "exit 3"], 60) == 3


def test_the_registered_task_is_read_from_schtasks_query_xml(tmp_path: Path) -> None:
    windows = a.Target(tmp_path / "python.exe", Path(r"C:\Users\Ana\gateway.d"), Path(r"C:\Users\Ana\data"))
    said = a.windows_task_xml(windows, "LAPTOP\\ana", "boot-task")  # /Query /XML prints the task back
    assert a.parse_task_query(said) == a.TaskFacts(True, "boot-task")
    disabled = a.windows_task_xml(windows, "LAPTOP\\ana", "logon-task").replace(
        "<Enabled>true</Enabled>\n    <Hidden>", "<Enabled>false</Enabled>\n    <Hidden>")
    assert a.parse_task_query(disabled) == a.TaskFacts(False, "logon-task")


def test_systemd_units_user_and_system() -> None:
    for kind, wanted in (("user-unit", "default.target"), ("system-unit", "multi-user.target")):
        unit = configparser.ConfigParser(interpolation=None)
        unit.read_string(a.systemd_unit(TARGET, kind, "ana"))
        assert unit["Service"]["Restart"] == "on-failure" and unit["Install"]["WantedBy"] == wanted
        assert unit["Service"]["ExecStart"] == ('"/opt/gw venv/bin/python" -m reconciler run --config '
                                                "/home/ana/gateway.d --data-dir /home/ana/.local/gw")
        assert unit["Service"].get("User") == ("ana" if kind == "system-unit" else None)
    assert "enable-linger ana" in a.linger_hint("ana")


def test_launchd_agent_and_daemon() -> None:
    agent = plistlib.loads(a.launchd_plist(TARGET, "agent", "ana"))
    daemon = plistlib.loads(a.launchd_plist(TARGET, "daemon", "ana"))
    assert agent["Label"] == daemon["Label"] == "io.omen.gateway" and agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["ProgramArguments"] == TARGET.argv()
    assert "UserName" not in agent and daemon["UserName"] == "ana"
    assert a.commands("daemon", "install", Path("/Library/LaunchDaemons/x.plist"))[0][:3] == [
        "launchctl", "bootstrap", "system"]


def test_next_boot_in_words() -> None:
    assert a.next_boot("boot-task", True, None).startswith("yes")
    assert a.next_boot("logon-task", True, None) == "only once you log on"
    assert a.next_boot("user-unit", True, False).startswith("only once you log in (no linger")
    assert a.next_boot("user-unit", True, True).startswith("yes")
    assert a.next_boot("system-unit", False, None).startswith("no")
    assert a.next_boot("agent", None, None).startswith("unknown")


@pytest.mark.parametrize("kind", ["user-unit", "system-unit", "agent", "daemon", "boot-task", "logon-task"])
def test_install_then_remove_leaves_nothing(tmp_path: Path, kind: str) -> None:
    target = a.Target(Path(sys.executable), tmp_path / "gateway.d", tmp_path / "data")
    done = a.install(target, kind=kind, home=tmp_path / "home", root=tmp_path / "root", activate=False, user="ana")
    assert done.path.exists() and str(tmp_path) in str(done.path)
    assert done.path.read_bytes() == a.file_bytes(kind, target, "ana")
    a.remove(target, kind=kind, home=tmp_path / "home", root=tmp_path / "root", activate=False)
    assert not done.path.exists()


def test_cli_print_writes_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    common = ["--config", str(tmp_path / "gateway.d"), "--data-dir", str(tmp_path / "data")]
    for verb in ("install", "remove", "status"):
        out = subprocess.run([sys.executable, "-m", "reconciler", "autostart", verb, "--print", *common], cwd=REPO,
                             env=env, capture_output=True, text=True, check=True)
        assert "Traceback" not in out.stderr
        if verb == "install":
            assert "nothing was written" in out.stdout and "# then run:" in out.stdout
            assert "-m reconciler run --config" in out.stdout  # the file itself is shown
    assert not (tmp_path / "home").exists() and not (tmp_path / "data").exists()


def test_a_kind_of_another_os_is_refused_unless_printed(tmp_path: Path) -> None:
    other = next(kind for system, kinds in a.KINDS.items() if system != a.os_kind() for kind in kinds)
    target = a.Target(Path(sys.executable), tmp_path / "gateway.d", tmp_path / "data")
    with pytest.raises(a.AutostartError, match=f"--kind {other} is for"):
        a.install(target, kind=other, home=tmp_path)
    assert not (tmp_path / "data").exists() and a.install(target, kind=other, write=False).content
    with pytest.raises(a.AutostartError, match="not a kind on"):
        a.check_kind(a.os_kind(), "nonsense")


def test_status_says_when_a_gateway_runs_on_the_folder(tmp_path: Path) -> None:
    target = a.Target(Path(sys.executable), tmp_path / "gateway.d", tmp_path / "data")
    assert a.status(target, home=tmp_path, root=tmp_path, ask=False)[-1].startswith("gateway running now: no")
    lock = InstanceLock(target.data_dir).acquire()
    try:
        assert a.status(target, home=tmp_path, root=tmp_path, ask=False)[-1] == \
            f"gateway running now: yes, pid {os.getpid()}"
    finally:
        lock.release(ran=True)


# --- the real systemd, where there is one ---------------------------------------------------
needs_systemctl = pytest.mark.skipif(a.os_kind() != "linux" or shutil.which("systemctl") is None,
                                     reason="no systemctl here: the units are checked by content only")


@needs_systemctl
def test_status_asks_systemd_whether_the_user_unit_is_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))  # systemctl --user reads ~/.config/systemd/user: no bus needed
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    target = a.Target(Path(sys.executable), tmp_path / "gateway.d", tmp_path / "data")
    a.install(target, kind="user-unit", home=home, activate=False, user="ana")
    lines = a.status(target, home=home, root=tmp_path, system="linux", user="ana")
    assert lines[0] == "autostart in force: none"
    assert "  enabled: no (is-enabled: disabled)" in lines
    subprocess.run(["systemctl", "--user", "enable", "omen-gateway.service"], check=True, capture_output=True)
    lines = a.status(target, home=home, root=tmp_path, system="linux", user="ana")
    assert lines[0] == "autostart in force: user-unit" and "  enabled: yes (is-enabled: enabled)" in lines
    assert any(line.startswith("  at the next boot: only once you log in (no linger") for line in lines)
    (tmp_path / "var" / "lib" / "systemd" / "linger").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "systemd" / "linger" / "ana").touch()
    lines = a.status(target, home=home, root=tmp_path, system="linux", user="ana")
    assert "  at the next boot: yes, before anyone logs on" in lines
    target2 = a.Target(Path(sys.executable), tmp_path / "other.d", tmp_path / "data")
    assert any("differs from what install writes now" in line for line in a.status(
        target2, home=home, root=tmp_path, system="linux", user="ana"))


@needs_systemctl
@pytest.mark.parametrize("kind", ["user-unit", "system-unit"])
def test_systemd_accepts_the_unit(tmp_path: Path, kind: str) -> None:
    unit = tmp_path / "omen-gateway.service"
    unit.write_text(a.systemd_unit(a.Target(Path(sys.executable), tmp_path, tmp_path), kind, a.current_user()))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    argv = ["systemd-analyze", *(["--user"] if kind == "user-unit" else []), "verify", str(unit)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
    if "Failed to initialize manager" in done.stderr:  # pragma: no cover - a systemd that cannot run here
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace(f"ExecStart={sys.executable}", "ExecStart=not-a-path"))
    assert subprocess.run([*argv[:-1], str(bad)], capture_output=True, env=env, cwd=tmp_path,
                          check=False).returncode != 0
