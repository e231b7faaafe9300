"""Autostart files by content, for every OS on every OS; the systemd unit for real only where
a user systemd answers."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reconciler.ops import autostart as a

TARGET = a.Target(Path("/opt/gw venv/bin/python"), Path("/home/ana/gateway.d"), Path("/home/ana/.local/gw"))
NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def test_windows_task_xml_logs_on_restarts_has_no_time_limit_and_hides(tmp_path: Path) -> None:
    python = tmp_path / "python.exe"
    python.write_text("")
    (tmp_path / "pythonw.exe").write_text("")
    target = a.Target(python, Path(r"C:\Users\Ana\gateway.d"), Path(r"C:\Users\Ana\My Data"))
    xml = a.windows_task_xml(target, user="LAPTOP\\ana")
    root = ET.fromstring(xml.split("\n", 1)[1])  # ElementTree refuses the UTF-16 declaration on a str
    assert root.find("t:Triggers/t:LogonTrigger/t:UserId", NS).text == "LAPTOP\\ana"
    settings = root.find("t:Settings", NS)
    assert settings.find("t:ExecutionTimeLimit", NS).text == "PT0S"
    assert settings.find("t:Hidden", NS).text == "true"
    assert settings.find("t:RestartOnFailure/t:Count", NS).text == "999"
    assert settings.find("t:DisallowStartIfOnBatteries", NS).text == "false"
    exec_ = root.find("t:Actions/t:Exec", NS)
    assert exec_.find("t:Command", NS).text == str(tmp_path / "pythonw.exe")
    assert exec_.find("t:Arguments", NS).text == \
        r'-m reconciler run --config C:\Users\Ana\gateway.d --data-dir "C:\Users\Ana\My Data"'
    assert a.schtasks_create_argv(Path("t.xml")) == ["schtasks", "/Create", "/TN", "omen-gateway", "/XML", "t.xml",
                                                     "/F"]


def test_windows_install_writes_utf16_xml_without_running_schtasks(tmp_path: Path) -> None:
    target = a.Target(Path(sys.executable), tmp_path / "gateway.d", tmp_path / "data")
    done = a.install(target, kind="windows", home=tmp_path, activate=False)
    assert done.path == tmp_path / "data" / "omen-gateway-task.xml"
    assert done.path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # BOM: schtasks wants UTF-16
    assert "<ExecutionTimeLimit>PT0S" in done.path.read_text(encoding="utf-16")
    assert done.commands == [a.schtasks_create_argv(done.path)]


def test_systemd_unit_restarts_on_failure_and_starts_with_the_user() -> None:
    unit = configparser.ConfigParser(interpolation=None)
    unit.read_string(a.systemd_unit(TARGET))
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"
    assert unit["Service"]["ExecStart"] == ('"/opt/gw venv/bin/python" -m reconciler run --config /home/ana/gateway.d'
                                            " --data-dir /home/ana/.local/gw")
    assert "enable-linger" in a.linger_hint()


def test_launchd_plist_keeps_alive_after_a_crash() -> None:
    plist = plistlib.loads(a.launchd_plist(TARGET))
    assert plist["Label"] == "io.omen.gateway" and plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProgramArguments"] == TARGET.argv()


@pytest.mark.parametrize("kind", ["linux", "macos", "windows"])
def test_install_then_remove_leaves_nothing(tmp_path: Path, kind: str) -> None:
    target = a.Target(Path(sys.executable), tmp_path / "gateway.d", tmp_path / "data")
    done = a.install(target, kind=kind, home=tmp_path, activate=False)
    assert done.path.exists() and str(tmp_path) in str(done.path)
    assert "installed" in a.status(target, kind=kind, home=tmp_path, activate=False)
    a.remove(target, kind=kind, home=tmp_path, activate=False)
    assert not done.path.exists()
    if kind != "windows":
        assert a.status(target, kind=kind, home=tmp_path, activate=False).startswith("not installed")


def test_cli_print_writes_the_file_for_this_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    run = [sys.executable, "-m", "reconciler", "autostart"]
    common = ["--config", str(tmp_path / "gateway.d"), "--data-dir", str(tmp_path / "data")]
    out = subprocess.run([*run, "install", "--print", *common], capture_output=True, text=True, check=True)
    assert "wrote" in out.stdout and "to activate, run:" in out.stdout
    path = a.unit_path(a.os_kind(), tmp_path, tmp_path / "data")
    assert path.exists()
    subprocess.run([*run, "remove", "--print", *common], capture_output=True, text=True, check=True)
    assert not path.exists()


def _user_systemd_works() -> bool:
    if a.os_kind() != "linux" or shutil.which("systemctl") is None:
        return False
    done = subprocess.run(["systemctl", "--user", "is-system-running"], capture_output=True, text=True, check=False)
    return done.stdout.strip() in ("running", "degraded")


@pytest.mark.skipif(not _user_systemd_works(), reason="no working `systemctl --user` here (no user systemd "
                    "instance, e.g. a container without systemd as PID 1): the unit is tested by content only")
def test_systemd_unit_is_accepted_by_systemd(tmp_path: Path) -> None:  # pragma: no cover - needs systemd
    unit = tmp_path / "omen-gateway.service"
    unit.write_text(a.systemd_unit(a.Target(Path(sys.executable), tmp_path, tmp_path)))
    done = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
