"""The double-click launcher (`python -m reconciler.launcher start|stop`, what the Windows zip's
"Start omen-gateway" and "Stop omen-gateway" run): a real gateway started in the background,
its page opened through the standard BROWSER variable (a recorder here), a second start that says
so, a stop that leaves nothing running, and a start that fails said in words."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from reconciler.client import Client
from reconciler.host.instance import holder
from tests.fix_gateway import _drop_schema, kill_group

SERVER = 'command = ["python", "-c", "import time\\nwhile True: time.sleep(1)"]\n'


def _recorder(folder: Path) -> tuple[str, Path]:
    """A BROWSER program that writes down the address it is asked to open."""
    record = folder / "opened.txt"
    if sys.platform == "win32":
        script = folder / "browser.cmd"
        script.write_text(f'@echo %1>> "{record}"\n', encoding="utf-8")
    else:
        script = folder / "browser.sh"
        script.write_text(f'#!/bin/sh\necho "$1" >> "{record}"\n', encoding="utf-8")
        script.chmod(0o755)
    return str(script), record


@pytest.fixture
def desk(tmp_path: Path, pg_dsn: str):
    browser, record = _recorder(tmp_path)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    env = dict(os.environ, GATEWAY_HOME=str(tmp_path / "data"), GATEWAY_CONFIG=str(tmp_path / "servers"),
               GATEWAY_DSN=pg_dsn, GATEWAY_DB_SCHEMA=schema, GATEWAY_LISTEN="127.0.0.1:0",
               GATEWAY_INTERNET_CHECK="off", BROWSER=browser, GATEWAY_NO_DIALOG="1")

    def launch(verb: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler.launcher", verb], env=env, capture_output=True,
                              text=True, timeout=240, check=False)

    seen: set[int] = set()
    yield launch, tmp_path, record, seen
    note = holder(tmp_path / "data")
    if note is not None:  # a test that failed half-way: end the gateway and its servers by pid
        for pid in {note.get("pid"), *seen} - {None}:
            kill_group(pid)  # type: ignore[arg-type]
    _drop_schema(pg_dsn, schema)


def test_a_double_click_starts_the_gateway_and_opens_its_page_a_second_says_it_runs(desk) -> None:
    launch, folder, record, seen = desk
    started = launch("start")
    assert started.returncode == 0, started.stdout + started.stderr
    servers = folder / "servers"
    assert servers.is_dir() and (servers / "README.txt").exists()  # made for a new owner
    (opened,) = record.read_text().split()
    with urllib.request.urlopen(opened, timeout=10) as answer:  # the first run's page: setup
        assert answer.status == 200 and "/setup" in answer.url
    note = holder(folder / "data")
    assert note is not None
    gateway = psutil.Process(note["pid"])
    seen.add(gateway.pid)
    assert gateway.is_running() and gateway.ppid() != os.getpid()  # outlives the launcher

    again = launch("start")
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert record.read_text().split() == [opened, opened]  # the page again
    assert holder(folder / "data")["pid"] == gateway.pid  # and no second gateway

    (servers / "web.toml").write_text(SERVER, encoding="utf-8")  # no port: no range to share
    client = Client(folder / "data")
    pid = _wait_running(client, "web")
    seen.add(pid)

    stopped = launch("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped" in stopped.stdout
    assert holder(folder / "data") is None
    assert not psutil.pid_exists(gateway.pid) or gateway.status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(pid)  # its servers with it
    assert "is not running" in launch("stop").stdout
    log = (folder / "data" / "launcher.log").read_text(encoding="utf-8")
    assert "start: omen-gateway is already running" in log and "stop: omen-gateway has stopped" in log


def test_a_gateway_that_cannot_start_is_said_in_words(desk) -> None:
    launch, folder, record, _ = desk
    servers = folder / "servers"
    servers.mkdir()
    (servers / "gateway.toml").write_text("[web\n", encoding="utf-8")  # a half-saved edit
    failed = launch("start")
    assert failed.returncode == 1
    assert "omen-gateway could not start." in failed.stdout
    assert "gateway.toml:1:5: TOML syntax: Expected ']'" in failed.stdout  # the gateway's own words
    assert not record.exists()  # no page to open
    assert holder(folder / "data") is None


def _wait_running(client: Client, name: str, timeout: float = 30.0) -> int:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = {s["name"]: s for s in client.status()["servers"]}
        if servers.get(name, {}).get("phase") == "running":
            return int(servers[name]["pid"])
        time.sleep(0.1)
    raise AssertionError(f"{name} did not run: {client.status()}")
