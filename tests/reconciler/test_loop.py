"""The reconciler end to end: a real daemon, real files, real child processes, real
PostgreSQL. Each test leaves no process behind (the `gateway` fixture checks by pid)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import psutil
import pytest

from tests.fix_gateway import REPO, Gateway
from tests.fix_children import toml_str

POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM ignored and a fork: POSIX (Windows' "
                                   "stop is tests/reconciler/test_windows_stop.py and tests/windows/test_zip.py)")

HTTP = 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'

STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(sys.argv[1], "w").write(str(os.getpid()))
    while True:
        time.sleep(1)
print("stubborn parent", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""


def gone(pid: int) -> bool:
    """Not running: no such pid, or a zombie (an orphan's zombie waits for PID 1 to reap
    it, and PID 1 in a container may never do so)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def wait_until(check, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "--data-dir", str(gw.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )


def test_folder_to_processes_add_edit_delete(gateway: Gateway):
    p1, p2 = free_port(), free_port()
    gateway.write("alpha", HTTP + f"port = {p1}\n")
    gateway.write("beta", HTTP + 'port = "auto"\n')
    gateway.start()
    servers = gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("alpha", "beta")))
    assert answers(p1) and answers(servers["beta"]["port"])
    low, high = map(int, (gateway.config_dir / "gateway.toml").read_text().split('"')[1].split("-"))
    assert low <= servers["beta"]["port"] <= high
    alpha_pid = servers["alpha"]["pid"]
    assert psutil.Process(alpha_pid).cmdline()[-3] == str(p1)

    # description/tags/group only: nothing restarts
    gateway.write("alpha", HTTP + f'port = {p1}\ndescription = "the first"\ntags = ["x"]\ngroup = "g"\n')
    s = gateway.wait_for(lambda s: s["alpha"]["description"] == "the first")
    assert s["alpha"]["pid"] == alpha_pid and s["alpha"]["restarts"] == 0

    # port change: restarted on the new port, old process gone
    gateway.write("alpha", HTTP + f"port = {p2}\n")
    s = gateway.wait_for(lambda s: s["alpha"]["port"] == p2 and s["alpha"]["phase"] == "running")
    assert s["alpha"]["pid"] != alpha_pid and gone(alpha_pid)
    assert answers(p2) and not answers(p1)

    # a new file starts with no command at all
    gateway.write("gamma", HTTP + 'port = "auto"\n')
    gamma = gateway.wait_phase("gamma", "running")
    assert answers(gamma["port"])

    # delete: stopped and forgotten, its history stays
    gamma_pid = gamma["pid"]
    (gateway.config_dir / "gamma.toml").unlink()
    gateway.wait_for(lambda s: "gamma" not in s, what="gamma forgotten")
    assert gone(gamma_pid)
    kinds = [(e["from_phase"], e["to_phase"]) for e in gateway.events("gamma") if e["kind"] == "transition"]
    assert kinds == [("stopped", "starting"), ("starting", "running"), ("running", "stopping"),
                     ("stopping", "stopped")]
    assert [e["kind"] for e in gateway.events("gamma")][-1] == "forgotten"
    changed = [e for e in gateway.events("alpha") if e["reason"] == "settings changed"]
    assert changed and changed[0]["to_phase"] == "stopping"


def test_rename_and_batch_of_files(gateway: Gateway):
    gateway.start()
    for n in ("b1", "b2", "b3", "b4", "b5"):
        (gateway.config_dir / f"{n}.toml").write_text(HTTP + 'port = "auto"\n')
    s = gateway.wait_for(lambda s: all(s.get(f"b{i}", {}).get("phase") == "running" for i in range(1, 6)))
    assert len({v["port"] for v in s.values()}) == 5
    old_pid = s["b1"]["pid"]
    os.rename(gateway.config_dir / "b1.toml", gateway.config_dir / "renamed.toml")
    s = gateway.wait_for(lambda s: "b1" not in s and s.get("renamed", {}).get("phase") == "running")
    assert gone(old_pid)


def test_broken_file_keeps_last_good_running(gateway: Gateway):
    port = free_port()
    gateway.write("web", HTTP + f"port = {port}\n")
    gateway.start()
    pid = gateway.wait_phase("web", "running")["pid"]
    gateway.write("web", HTTP + "port = 70000\n")
    wait_until(lambda: gateway.client.status()["gateway"]["config_errors"], what="config error shown")
    status = gateway.client.status()
    assert status["gateway"]["config_errors"] == [
        f"{gateway.config_dir / 'web.toml'}:2: port: 70000 is not a port (1-65535)"]
    web = status["servers"][0]
    assert web["pid"] == pid and web["config_stale"] and answers(port)
    errors = [e for e in gateway.events("web") if e["kind"] == "config_error"]
    assert errors and errors[0]["detail"]["key"] == "port" and errors[0]["detail"]["line"] == 2
    # `gateway check` says the same offline and exits non-zero
    check = cli(gateway, "check", str(gateway.config_dir))
    assert check.returncode == 1 and "port: 70000 is not a port (1-65535)" in check.stdout
    # fixing the file clears the error without a restart
    gateway.write("web", HTTP + f"port = {port}\n")
    wait_until(lambda: not gateway.client.status()["gateway"]["config_errors"], what="error cleared")
    assert gateway.status()["web"]["pid"] == pid


def test_crashed_child_is_restarted_and_answers_again(gateway: Gateway):
    gateway.write("web", HTTP + 'port = "auto"\n')
    gateway.start()
    web = gateway.wait_phase("web", "running")
    psutil.Process(web["pid"]).kill()  # SIGKILL; on Windows TerminateProcess, whose exit code psutil makes 15
    said = "exited with code 15" if sys.platform == "win32" else "killed by signal 9 (SIGKILL)"
    again = gateway.wait_for(lambda s: s["web"]["pid"] not in (None, web["pid"]) and s["web"]["phase"] == "running")
    assert again["web"]["restarts"] == 1 and answers(again["web"]["port"])
    assert again["web"]["last_exit"] == said
    exits = [e for e in gateway.events("web") if e["to_phase"] == "exited"]
    assert exits and exits[0]["detail"]["detail"] == said


def start_stubborn(gateway: Gateway, tmp_path: Path, stop_timeout: str) -> tuple[int, int]:
    """Run STUBBORN (ignores SIGTERM, forks a grandchild that does too); its pid and the grandchild's."""
    program = tmp_path / "stubborn.py"
    program.write_text(STUBBORN)
    marker = tmp_path / "grandchild.pid"
    gateway.write("stubborn", f'command = ["python", {toml_str(program)}, {toml_str(marker)}]\n[stop]\ntimeout = "{stop_timeout}"\n')
    gateway.start()
    pid = gateway.wait_phase("stubborn", "running")["pid"]
    wait_until(marker.exists, what="grandchild started")
    return pid, int(marker.read_text())


@pytest.mark.alone  # how long the stop took
@POSIX_SIGNALS
def test_stubborn_tree_is_killed_after_the_stop_timeout(gateway: Gateway, tmp_path: Path):
    pid, grandchild = start_stubborn(gateway, tmp_path, "500ms")
    started = time.monotonic()
    result = cli(gateway, "stop", "stubborn")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "stubborn: stopped by operator" in result.stdout
    assert gone(pid) and gone(grandchild)
    assert took < 5.0
    escalated = [e for e in gateway.events("stubborn") if e["kind"] == "stop_escalated"]
    assert escalated and "did not stop within 0.5s of SIGTERM" in escalated[0]["reason"]
    log = (gateway.data_dir / "logs" / "stubborn.log").read_text()
    assert "stubborn parent" in log


def test_operator_stop_survives_a_gateway_restart(gateway: Gateway):
    gateway.write("one", HTTP + 'port = "auto"\n')
    gateway.write("two", HTTP + 'port = "auto"\ngroup = "g"\n')
    gateway.start()
    gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("one", "two")))
    stopped = cli(gateway, "stop", "--group", "g")
    assert stopped.returncode == 0 and "two: stopped by operator" in stopped.stdout
    assert gateway.stop() == 0
    gateway.start()
    s = gateway.wait_phase("one", "running")
    time.sleep(0.5)
    s = gateway.status()
    assert s["two"]["status"] == "stopped by operator" and s["two"]["pid"] is None
    status = cli(gateway, "status")
    assert "stopped by operator" in status.stdout
    started = cli(gateway, "start", "two")
    assert started.returncode == 0, started.stdout + started.stderr
    assert gateway.status()["two"]["phase"] in ("running", "starting")
    intents = [e for e in gateway.events("two") if e["kind"] == "intent"]
    assert [e["reason"] for e in intents] == ["stop requested", "start requested"]
    assert all(e["actor"] == "operator:cli" for e in intents)


def test_restart_all_and_events_command(gateway: Gateway):
    gateway.write("one", HTTP + 'port = "auto"\n')
    gateway.start()
    pid = gateway.wait_phase("one", "running")["pid"]
    result = cli(gateway, "restart", "--all")
    assert result.returncode == 0, result.stderr
    new = gateway.wait_phase("one", "running")
    assert new["pid"] != pid and gone(pid)
    events = cli(gateway, "events", "one", "--json")
    import json

    rows = json.loads(events.stdout)
    assert any(r["reason"] == "restarted by operator" and r["to_phase"] == "stopping" for r in rows)
    text = cli(gateway, "events", "one")
    assert "running -> stopping" in text.stdout
    unknown = cli(gateway, "stop", "nope")
    assert unknown.returncode == 1 and "no server named nope" in unknown.stderr


def test_children_survive_a_gateway_kill_and_are_adopted(gateway: Gateway):
    names = [f"a{i}" for i in range(10)]
    for n in names:
        gateway.write(n, HTTP + 'port = "auto"\n')
    gateway.start()
    before = gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in names))
    gateway.events()  # flushes: the state rows are in
    gateway.kill9()
    for n in names:
        assert not gone(before[n]["pid"]) and answers(before[n]["port"])
    if sys.platform.startswith("linux"):  # the clock was set while no gateway ran: half the records are an hour off
        with psycopg.connect(gateway.read_dsn(), options=f"-c search_path={gateway.schema}") as conn:
            moved = conn.execute("UPDATE state SET create_time = create_time + 3600"
                                 " WHERE name = ANY(%s) AND start_mark IS NOT NULL", (names[::2],)).rowcount
        assert moved == len(names[::2])
    gateway.start()
    after = gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in names))
    assert {n: after[n]["pid"] for n in after} == {n: before[n]["pid"] for n in before}
    # no duplicate was spawned: each server's last transition is its adoption, once
    for n in names:
        phases = [(e["to_phase"], e["reason"]) for e in gateway.events(n) if e["kind"] == "transition"]
        adoption = ("running", "adopted after a gateway restart")
        assert phases.count(adoption) == 1 and phases[-1] == adoption, (n, phases)
        assert phases[-2][0] == "running", (n, phases)
    # exits of adopted children are still seen
    psutil.Process(after["a1"]["pid"]).kill()
    again = gateway.wait_for(lambda s: s["a1"]["pid"] not in (None, after["a1"]["pid"]) and
                             s["a1"]["phase"] == "running")
    assert answers(again["a1"]["port"])


def test_status_when_no_gateway_runs(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "reconciler", "status", "--data-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "no gateway is running" in result.stderr


@pytest.mark.parametrize("verb", ["start", "stop", "restart"])
def test_control_needs_a_target(tmp_path: Path, verb: str):
    result = subprocess.run([sys.executable, "-m", "reconciler", verb, "--data-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "name a server, or use --group G or --all" in result.stderr


@pytest.mark.alone  # how long the stop took
@POSIX_SIGNALS
def test_force_kill_skips_the_graceful_stop(gateway: Gateway, tmp_path: Path):
    pid, grandchild = start_stubborn(gateway, tmp_path, "5s")
    started = time.monotonic()
    result = cli(gateway, "kill", "stubborn")
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 3.0  # not the 5 s stop timeout (the CLI itself takes ~0.5 s)
    assert gone(pid) and gone(grandchild)
    s = gateway.status()["stubborn"]
    assert s["status"] == "stopped by operator"
    stop = [e for e in gateway.events("stubborn") if e["to_phase"] == "stopping"]
    assert stop[-1]["reason"] == "force-killed by operator"
    assert cli(gateway, "start", "stubborn").returncode == 0  # and it can be started again


@pytest.mark.alone  # how long the stop took
def test_force_kill_ends_a_graceful_stop_under_way(gateway: Gateway, tmp_path: Path):
    """`gateway kill` while a stop waits out its timeout: the plan's Kill ends it now (the
    tree killed off the event loop), not after the 20 s of the stop's timeout."""
    pid, grandchild = start_stubborn(gateway, tmp_path, "20s")
    stopping = subprocess.Popen([sys.executable, "-m", "reconciler", "stop", "stubborn", "--data-dir",
                                 str(gateway.data_dir)], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        gateway.wait_phase("stubborn", "stopping")
        started = time.monotonic()
        result = cli(gateway, "kill", "stubborn")
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started < 5.0  # not the 20 s stop timeout
        assert gone(pid) and gone(grandchild)
        assert stopping.wait(timeout=10) == 0  # the stop that was under way ends with it
    finally:
        if stopping.poll() is None:
            stopping.kill()
            stopping.wait()
    assert gateway.status()["stubborn"]["status"] == "stopped by operator"
    escalated = [e for e in gateway.events("stubborn") if e["kind"] == "stop_escalated"]
    assert not escalated  # the kill was the owner's, not the stop timeout's
