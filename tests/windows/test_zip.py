"""The owner's zip, end to end, on Windows (the Windows lane: a real Windows CPython under Wine).
Run by the zip's own Python with GATEWAY_ZIP_DIR set to the unzipped folder; skipped elsewhere.

Unzipped, double-clicked ("Start omen-gateway.exe"), on a copy of the example folder: the page
opens at first-run setup, every example server answers, `gateway.cmd stop hello` and `start`
work, a second double-click says it runs and opens the page again, the gateway ended by
TerminateProcess leaves its servers running and the next start adopts the same pids, "Start at
boot" writes a task whose command starts this zip's gateway, and "Stop omen-gateway.exe" leaves
nothing running. Each step's time is printed (-s)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from reconciler.host.instance import holder

ZIP = Path(os.environ.get("GATEWAY_ZIP_DIR", "")) if os.environ.get("GATEWAY_ZIP_DIR") else None
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform != "win32" or ZIP is None,
                                reason="the Windows zip's end-to-end run: the Windows lane sets GATEWAY_ZIP_DIR")
TASK = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Desk:
    """The owner's desk: the unzipped folder, a copy of the example servers, a browser that writes
    down what it is asked to open."""

    def __init__(self, zip_dir: Path, tmp: Path) -> None:
        self.zip, self.tmp = zip_dir, tmp
        shutil.copytree(REPO / "gateway.d", tmp / "gateway.d")
        shutil.copytree(REPO / "examples", tmp / "examples")
        api = tmp / "gateway.d" / "api.toml"
        api.write_text(api.read_text(encoding="utf-8").replace("port = 8081", f"port = {free_port()}"), encoding="utf-8")
        self.data = tmp / "data"
        self.opened = tmp / "opened.txt"
        browser = tmp / "browser.cmd"
        browser.write_text(f'@echo %1>> "{self.opened}"\n', encoding="utf-8")
        page = free_port()
        self.env = dict(os.environ, GATEWAY_HOME=str(self.data), GATEWAY_CONFIG=str(tmp / "gateway.d"),
                        GATEWAY_LISTEN=f"127.0.0.1:{page}", GATEWAY_TUNNEL_LISTEN=f"127.0.0.1:{free_port()}",
                        GATEWAY_INTERNET_CHECK="off", BROWSER=str(browser), GATEWAY_NO_DIALOG="1")
        self.env.pop("GATEWAY_DSN", None)  # the zip's own PostgreSQL
        self.seen: set[int] = set()
        self.clock = time.monotonic()

    def step(self, what: str) -> None:
        now = time.monotonic()
        print(f"  [{now - self.clock:6.1f} s] {what}", flush=True)
        self.clock = now

    def double_click(self, exe: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self.zip / exe)], env=self.env, cwd=str(self.zip), capture_output=True,
                              timeout=300, check=False)

    def gateway(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["cmd.exe", "/c", str(self.zip / "gateway.cmd"), *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)

    def status(self) -> dict[str, dict[str, Any]]:
        done = self.gateway("status", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        servers = {s["name"]: s for s in json.loads(done.stdout)["servers"]}
        self.seen.update(s["pid"] for s in servers.values() if s["pid"])
        return servers

    def wait_running(self, names: set[str], timeout: float = 90.0) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            servers = self.status()
            if all(servers.get(n, {}).get("phase") == "running" for n in names):
                return servers
            assert time.monotonic() < deadline, f"not all of {names} running: {servers}"
            time.sleep(0.5)

    def gateway_pid(self) -> int:
        note = holder(self.data)
        assert note is not None and isinstance(note.get("pid"), int), note
        self.seen.add(note["pid"])
        return int(note["pid"])


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    assert ZIP is not None
    desk = Desk(ZIP, tmp_path)
    yield desk
    if holder(desk.data) is not None:  # a failure half-way: end what is left, by pid
        desk.double_click("Stop omen-gateway.exe")
    for pid in desk.seen:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    from reconciler.store.embedded import EmbeddedPostgres

    if (desk.data / "postgres").exists():
        EmbeddedPostgres(desk.data).stop()


def answers(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return bytes(response.read())


def test_the_zip_runs_the_examples_from_a_double_click_to_a_clean_stop(desk: Desk) -> None:
    started = desk.double_click("Start omen-gateway.exe")
    assert started.returncode == 0, started
    desk.step("Start omen-gateway: the page answers")
    (url,) = desk.opened.read_text().split()
    with urllib.request.urlopen(url, timeout=10) as first:  # the first run opens at setup
        assert "/setup" in first.url and b"Welcome" in first.read()
    servers = desk.wait_running({"hello", "api", "ticker"})
    desk.step("every example server runs")
    assert answers(f"http://127.0.0.1:{servers['hello']['port']}/")
    assert json.loads(answers(f"http://127.0.0.1:{servers['api']['port']}/health"))["ok"] is True
    pids = {name: servers[name]["pid"] for name in ("hello", "api", "ticker")}
    desk.step("hello and api answer")

    stopped = desk.gateway("stop", "hello")
    assert stopped.returncode == 0 and "hello" in stopped.stdout, stopped
    assert desk.status()["hello"]["phase"] == "stopped" and not psutil.pid_exists(pids["hello"])
    said = (desk.data / "logs" / "hello.log").read_text(encoding="utf-8", errors="replace")
    assert "Keyboard interrupt received, exiting." in said  # http.server heard the Ctrl-C: no kill
    desk.step("gateway.cmd stop hello (Ctrl-C on its own console: it ends its own way)")
    assert desk.gateway("start", "hello").returncode == 0
    pids["hello"] = desk.wait_running({"hello"})["hello"]["pid"]
    desk.step("gateway.cmd start hello")

    gateway = desk.gateway_pid()
    again = desk.double_click("Start omen-gateway.exe")
    assert again.returncode == 0 and desk.opened.read_text().split() == [url, url]
    assert desk.gateway_pid() == gateway  # no second gateway
    assert "already running" in (desk.data / "launcher.log").read_text(encoding="utf-8")
    desk.step("a second double-click opens the page again")

    psutil.Process(gateway).kill()  # TerminateProcess: what the OS does to a program it ends
    psutil.Process(gateway).wait(30) if psutil.pid_exists(gateway) else None
    assert all(psutil.pid_exists(pid) for pid in pids.values())  # the servers keep running
    desk.step("the gateway ended by TerminateProcess; its servers still run")
    assert desk.double_click("Start omen-gateway.exe").returncode == 0
    adopted = desk.wait_running({"hello", "api", "ticker"})
    assert {name: adopted[name]["pid"] for name in pids} == pids  # adopted, not started again
    assert desk.gateway_pid() != gateway
    desk.step("started again: the same pids adopted")

    boot = desk.gateway("autostart", "install", "--kind", "logon-task")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    task = ET.fromstring((desk.data / "omen-gateway-logon-task.xml").read_bytes())
    command = task.findtext(f"{TASK}Actions/{TASK}Exec/{TASK}Command")
    arguments = task.findtext(f"{TASK}Actions/{TASK}Exec/{TASK}Arguments") or ""
    assert command is not None and Path(command.strip('"')) == desk.zip / "python" / "pythonw.exe"
    assert re.search(r"-m reconciler run --config .+ --data-dir ", arguments)
    desk.step("Start at boot: the task runs this zip's Python")

    assert desk.double_click("Stop omen-gateway.exe").returncode == 0
    assert holder(desk.data) is None
    desk.step("Stop omen-gateway: stopped")
    left = [pid for pid in [*pids.values(), gateway] if psutil.pid_exists(pid)]
    postgres = desk.data / "postgres" / "postmaster.pid"
    assert not left and not postgres.exists(), f"left running: {left}, postgres: {postgres.exists()}"

    task_run = subprocess.Popen(f'"{command}" {arguments}', env=desk.env, cwd=str(desk.data))  # what the task runs
    desk.seen.add(task_run.pid)
    deadline = time.monotonic() + 120
    while holder(desk.data) is None or not (desk.data / "gateway.url").exists():
        assert task_run.poll() is None and time.monotonic() < deadline, "the task's command did not start a gateway"
        time.sleep(0.5)
    desk.wait_running({"hello", "api", "ticker"})
    assert desk.double_click("Stop omen-gateway.exe").returncode == 0
    assert task_run.wait(60) == 0
    desk.step("the task's own command started the gateway, and it stopped cleanly")
