"""One gateway per data folder: the lock itself, and real gateways (a second `gateway run` on the
same port and on another port touches nothing; a killed gateway's lock never blocks; a taken
page port is said in words)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from reconciler.host.instance import LOCK_FILE, AlreadyRunning, InstanceLock, listen_problem
from reconciler.store.embedded import EmbeddedPostgres
from tests.fix_gateway import REPO, Gateway
from tests.wine import NO_OWNER_PID

HTTP = 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\nport = "auto"\n'


# --- the lock on its own ----------------------------------------------------------------------
def test_a_second_lock_on_the_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path).acquire()
    (tmp_path / "gateway.url").write_text("http://127.0.0.1:8765\n")
    with pytest.raises(AlreadyRunning) as refused:
        InstanceLock(tmp_path).acquire()
    text = str(refused.value)
    assert f"pid {os.getpid()}" in text and "page at http://127.0.0.1:8765/" in text and str(tmp_path) in text
    assert (tmp_path / "gateway.url").exists()  # the refused one touched nothing
    first.release(ran=True)
    InstanceLock(tmp_path).acquire().release(ran=True)  # free again once released


@pytest.mark.parametrize("note", ['{"pid": 999999999, "state": "running"}', "garbage{", ""])
def test_a_lock_file_left_by_a_dead_gateway_never_blocks(tmp_path: Path, note: str) -> None:
    (tmp_path / LOCK_FILE).write_text(note)
    (tmp_path / "gateway.url").write_text("http://127.0.0.1:1\n")  # its address: nobody answers there
    lock = InstanceLock(tmp_path).acquire()
    assert (lock.unclean is not None) == ("running" in note)
    assert not (tmp_path / "gateway.url").exists()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release(ran=True)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["state"] == "stopped"


def test_an_unclean_stop_is_still_reported_after_a_start_that_never_ran(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text('{"pid": 999999999, "state": "running"}')
    InstanceLock(tmp_path).acquire().release(ran=False)  # e.g. the page's port was taken
    again = InstanceLock(tmp_path).acquire()
    assert again.unclean is not None and again.unclean.pid == 999999999
    again.release(ran=True)
    assert InstanceLock(tmp_path).acquire().unclean is None


@NO_OWNER_PID
def test_listen_problem_names_the_program_holding_the_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        problem = listen_problem("127.0.0.1", port)
        assert problem is not None and f"127.0.0.1:{port}" in problem and "--listen" in problem
        assert f"pid {os.getpid()}" in problem
    assert listen_problem("127.0.0.1", port) is None
    assert listen_problem("127.0.0.1", 0) is None


def test_a_refused_bind_is_said_in_words_even_where_the_holder_cannot_be_named() -> None:
    import errno

    from reconciler.host.instance import bind_refusal

    assert bind_refusal(OSError(errno.EADDRINUSE, "Address already in use")) == "another program is listening there"
    windows = OSError(10048, "windows error 0x2740")  # Winsock's number, as Wine words it
    assert bind_refusal(windows) == "another program is listening there"
    assert "Hyper-V" in bind_refusal(OSError(errno.EACCES, "Permission denied"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        problem = listen_problem("127.0.0.1", sock.getsockname()[1])
    assert problem is not None and "windows error" not in problem and ("another program" in problem)


# --- real gateways ----------------------------------------------------------------------------
def run_second(gw: Gateway, listen: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GATEWAY_DB_SCHEMA=gw.schema, GATEWAY_INTERNET_CHECK="off")
    env.pop("GATEWAY_DSN", None)
    return subprocess.run([sys.executable, "-m", "reconciler", "run", "--config", str(gw.config_dir),
                           "--data-dir", str(gw.data_dir), "--listen", listen],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_second_gateway_on_the_same_folder_touches_nothing(own_db_gateway: Gateway) -> None:
    gw = own_db_gateway
    gw.write("web", HTTP)
    gw.start()
    first = gw.wait_phase("web", "running")
    url = (gw.data_dir / "gateway.url").read_text()
    postmaster = EmbeddedPostgres(gw.data_dir).pid
    assert postmaster is not None and gw.proc is not None
    same_port = url.strip().rsplit(":", 1)[1]
    for listen in (f"127.0.0.1:{same_port}", "127.0.0.1:0"):
        second = run_second(gw, listen)
        assert second.returncode == 4, second.stderr
        assert "a gateway is already running" in second.stderr and f"pid {gw.proc.pid}" in second.stderr
        assert f"page at {url.strip()}/" in second.stderr and "Traceback" not in second.stderr
    assert (gw.data_dir / "gateway.url").read_text() == url
    assert EmbeddedPostgres(gw.data_dir).pid == postmaster
    now = gw.status()["web"]  # `gateway status` still reaches the first one
    assert now["phase"] == "running" and now["pid"] == first["pid"] and now["restarts"] == first["restarts"], (
        now, [(e["kind"], e["to_phase"], e["reason"]) for e in gw.events()])
    assert psutil.pid_exists(first["pid"])
    kinds = [e["kind"] for e in gw.events()]
    assert kinds.count("gateway_started") == 1 and "gateway_stopped" not in kinds


def test_a_killed_gateways_lock_does_not_block_and_the_start_says_it_recovered(gateway: Gateway) -> None:
    gateway.write("web", HTTP)
    gateway.start()
    pid = gateway.wait_phase("web", "running")["pid"]
    gateway.events()
    killed = gateway.proc.pid if gateway.proc else 0
    gateway.kill9()
    gateway.start()
    assert gateway.wait_phase("web", "running")["pid"] == pid  # adopted, not started twice
    recovered = [e for e in gateway.events() if e["kind"] == "gateway_recovered"]
    assert len(recovered) == 1 and f"pid {killed}" in recovered[0]["reason"]
    assert "recovered after an unclean stop" in gateway.output.read_text()
    gateway.stop()
    gateway.start()  # after a clean stop: no recovery to report
    assert [e["kind"] for e in gateway.events()].count("gateway_recovered") == 1


@NO_OWNER_PID
def test_a_taken_page_port_is_said_in_words(gateway: Gateway) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_second(gateway, f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"cannot serve the page on 127.0.0.1:{port}: another program (pid {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (gateway.data_dir / "postgres").exists() and not (gateway.data_dir / "gateway.url").exists()
