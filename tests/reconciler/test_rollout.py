"""Changes without taking a server down (issue 13): health-gated changes with automatic
rollback, the last good version across a gateway restart, `gateway try`, and stops that
follow the server's own settings. A real gateway, real processes, the real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.fix_gateway import REPO, Gateway
from tests.reconciler.test_loop import answers, cli, free_port, gone, wait_until
from tests.fix_children import toml_str

BAD = ('command = ["python", "-c", "import sys; print(\'Error: TOKEN not set\', file=sys.stderr); sys.exit(2)"]\n')


def good(port: int, extra: str = "", probation: str = "1s") -> str:
    return (f'command = ["python", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"{extra}]\nport = {port}\n'
            f'[restart]\nprobation = "{probation}"\n')


def bad(port: int) -> str:
    return BAD + f'port = {port}\n[restart]\nprobation = "1s"\n[health]\ntype = "tcp"\nstart_period = "5s"\n'


def kinds(gw: Gateway, name: str) -> list[str]:
    return [e["kind"] for e in gw.events(name)]


def cmdline(pid: int) -> str:
    return " ".join(psutil.Process(pid).cmdline())


def healthy_and_good(gw: Gateway, name: str) -> dict:
    """Running, and past its probation: the version PostgreSQL now remembers as good."""
    web = gw.wait_phase(name, "running")
    wait_until(lambda: "good" in _rollout(gw, name), timeout=15, what="the last good version recorded")
    return web


def _rollout(gw: Gateway, name: str) -> dict:
    import psycopg

    gw.client.events(limit=1)  # flushes the gateway's writes
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
        row = conn.execute("SELECT good_hash, failed_hash, failed_reason FROM rollouts WHERE name = %s",
                           (name,)).fetchone()
    if row is None:
        return {}
    return {k: v for k, v in zip(("good", "failed", "why"), row) if v is not None}


def test_a_bad_edit_is_rolled_back_and_the_previous_version_answers_again(gateway: Gateway):
    port = free_port()
    gateway.write("web", good(port))
    gateway.start()
    before = healthy_and_good(gateway, "web")
    path = gateway.write("web", bad(port))  # a typo in the command, through the edit form or an editor
    wait_until(lambda: "rolled_back" in kinds(gateway, "web"), timeout=20, what="the rollback")
    web = gateway.wait_for(lambda s: s["web"]["phase"] == "running" and s["web"]["pid"] != before["pid"],
                           timeout=20, what="the previous version running again")["web"]
    assert answers(port) and "http.server" in cmdline(web["pid"])
    (event,) = [e for e in gateway.events("web") if e["kind"] == "rolled_back"]
    assert "exited with code 2" in event["reason"] and "the previous version runs again" in event["reason"]
    assert _rollout(gateway, "web")["failed"]
    assert path.read_text() == bad(port)  # the file stays as the owner wrote it
    time.sleep(2.0)  # ... and that exact version is not tried again by itself
    exits = [e for e in gateway.events("web") if e["to_phase"] == "exited"]
    assert len(exits) == 1, exits
    assert gateway.status()["web"]["pid"] == web["pid"]

    # a fixed edit is a new version: tried, and in force after its probation
    gateway.write("web", good(port, ', "--directory", "."'))
    wait_until(lambda: "change_applied" in kinds(gateway, "web"), timeout=20, what="the fix applied")
    fixed = gateway.status()["web"]
    assert fixed["phase"] == "running" and "--directory" in cmdline(fixed["pid"])
    assert "failed" not in _rollout(gateway, "web") or _rollout(gateway, "web")["failed"] != _rollout(
        gateway, "web")["good"]


def test_a_rollback_survives_a_gateway_restart_and_retry_tries_again(gateway: Gateway):
    port = free_port()
    gateway.write("web", good(port))
    gateway.start()
    healthy_and_good(gateway, "web")
    gateway.write("web", bad(port))
    wait_until(lambda: "rolled_back" in kinds(gateway, "web"), timeout=20, what="the rollback")
    gateway.wait_phase("web", "running")
    assert gateway.stop() == 0  # a reboot: the servers stop with the gateway
    gateway.start()
    web = gateway.wait_phase("web", "running")
    assert "http.server" in cmdline(web["pid"])  # the last good version, not the bad file
    time.sleep(1.5)
    assert len([e for e in gateway.events("web") if e["to_phase"] == "exited" and e["kind"] == "transition"
                and "code 2" in str(e["detail"])]) == 1, "the failed version was tried again after the restart"
    # the owner asks: the same version is tried once more, and rolled back once more
    out = cli(gateway, "retry", "web")
    assert out.returncode in (0, 1), out.stderr
    wait_until(lambda: kinds(gateway, "web").count("rolled_back") == 2, timeout=20, what="the second rollback")
    gateway.wait_phase("web", "running")
    assert "http.server" in cmdline(gateway.status()["web"]["pid"])


def test_a_broken_file_across_a_restart_keeps_its_server_on_the_last_good_version(gateway: Gateway):
    port = free_port()
    gateway.write("web", good(port))
    gateway.start()
    healthy_and_good(gateway, "web")
    assert gateway.stop() == 0
    (gateway.config_dir / "web.toml").write_text(good(port) + "<<<<<<< HEAD\n")  # a merge conflict
    gateway.start()
    web = gateway.wait_phase("web", "running")  # it was gone until the file was fixed, before
    assert answers(port) and "http.server" in cmdline(web["pid"])
    errors = gateway.client.status()["gateway"]["config_errors"]
    assert any("web.toml" in e for e in errors), errors


def test_a_revert_saved_while_the_gateway_was_off_clears_the_change_not_applied(gateway: Gateway):
    port = free_port()
    gateway.write("web", good(port))
    gateway.start()
    healthy_and_good(gateway, "web")
    gateway.write("web", bad(port))
    wait_until(lambda: "rolled_back" in kinds(gateway, "web"), timeout=20, what="the rollback")
    assert gateway.client.status()["servers"][0]["rolled_back"]
    assert gateway.stop() == 0
    gateway.write("web", good(port))  # reverted while the gateway was off
    gateway.start()
    gateway.wait_phase("web", "running")
    (web,) = gateway.client.status()["servers"]
    assert web["rolled_back"] is None, "'Your change was not applied' outlived the revert"
    assert "failed" not in _rollout(gateway, "web")


NEW = ', "--directory", "."'  # a second version of the same server, told apart by its command line


def test_a_new_server_that_answered_is_what_a_crashing_change_goes_back_to(gateway: Gateway):
    """Add a server, let it answer (well within its probation), save a command that crashes: it
    goes back to the version that was answering, instead of crash-looping."""
    port = free_port()
    gateway.write("web", good(port, probation="60s"))
    gateway.start()
    gateway.wait_phase("web", "running")
    gateway.write("web", bad(port))
    wait_until(lambda: "rolled_back" in kinds(gateway, "web"), timeout=20, what="the rollback")
    web = gateway.wait_phase("web", "running")
    assert answers(port) and "http.server" in cmdline(web["pid"])
    assert "escalated" not in kinds(gateway, "web")


def test_a_broken_file_across_a_restart_runs_the_version_that_was_running_on_probation(gateway: Gateway):
    """A good edit (still on its probation), then a broken file and a gateway restart: the edit
    runs again, not the older last good version."""
    port = free_port()
    gateway.write("web", good(port))
    gateway.start()
    healthy_and_good(gateway, "web")
    gateway.write("web", good(port, NEW, probation="60s"))
    gateway.wait_for(lambda s: s["web"]["phase"] == "running" and "--directory" in cmdline(s["web"]["pid"]),
                     timeout=20, what="the edit running")
    time.sleep(0.5)  # its first answer is recorded
    assert gateway.stop() == 0
    (gateway.config_dir / "web.toml").write_text(good(port, NEW) + "<<<<<<< HEAD\n")  # a merge conflict
    gateway.start()
    web = gateway.wait_phase("web", "running")
    assert "--directory" in cmdline(web["pid"]), "the older last good version runs, not the one that was running"


@pytest.mark.alone  # how long the stop took
def test_a_deleted_server_stops_with_its_own_timeout(gateway: Gateway, tmp_path: Path):
    script = tmp_path / "stubborn.py"
    # deaf to the stop the gateway sends: SIGTERM on POSIX, Ctrl-C on Windows (reconciler/platform/windows.py)
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(1)\n")
    gateway.write("slow", f'command = ["python", {toml_str(script)}]\n[stop]\ntimeout = "2s"\n')
    gateway.start()
    pid = gateway.wait_phase("slow", "running")["pid"]
    (gateway.config_dir / "slow.toml").unlink()
    started = time.monotonic()
    wait_until(lambda: gone(pid), timeout=9, what="the stubborn server gone")  # TERM and 10 s, before
    assert time.monotonic() - started < 8
    (escalated,) = [e for e in gateway.events("slow") if e["kind"] == "stop_escalated"]
    assert "within 2s" in escalated["reason"]


def run_try(path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "try", str(path), "--data-dir", str(data)],
                          cwd=REPO, capture_output=True, text=True, timeout=90)


def test_gateway_try_of_a_good_and_a_bad_candidate(tmp_path: Path, reap):
    port = free_port()
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    (folder / "web.toml").write_text(good(port))
    out = run_try(folder / "web.toml", tmp_path / "data")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: answered on port" in out.stdout and "| Serving HTTP" in out.stdout
    tried = int(out.stdout.split("ok: answered on port ")[1].split()[0])
    assert tried != port  # a scratch port: the running version's is never touched
    assert not answers(tried)  # and nothing is left running
    (folder / "bad.toml").write_text(bad(port))
    out = run_try(folder / "bad.toml", tmp_path / "data")
    assert out.returncode == 1
    assert "failed: exited with code 2: Error: TOKEN not set" in out.stdout
    assert "  | Error: TOKEN not set" in out.stdout  # its output, shown as it came


def test_gateway_try_of_a_program_that_never_answers(tmp_path: Path, reap):
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    (folder / "mute.toml").write_text('command = ["python", "-c", "import time; print(\'up\', flush=True); '
                                      'time.sleep(60)"]\nport = 8080\n[health]\ntype = "tcp"\nstart_period = "1s"\n')
    out = run_try(folder / "mute.toml", tmp_path / "data")
    assert out.returncode == 1 and "failed: did not answer within 1 s" in out.stdout
    assert "  | up" in out.stdout  # and `reap` finds nothing of it left at teardown


def test_a_spec_as_postgresql_keeps_it_loads_again_unchanged():
    # every duration key round-trips (a new one missing from the list made the memory unusable)
    from reconciler.core.spec import ServerSpec
    from reconciler.engine.config import format_durations

    spec = ServerSpec.model_validate({
        "name": "web", "command": ["x"], "port": "auto", "env": {"A": "1"},
        "health": {"type": "http", "interval": "5s", "timeout": "1500ms", "start_period": "1m", "path": "/h"},
        "restart": {"backoff_start": "2s", "backoff_max": "1h", "backoff_reset": "90s", "probation": "45s"},
        "stop": {"signal": "INT", "timeout": "3s"}})
    assert ServerSpec.model_validate(format_durations(spec.model_dump(mode="json"))) == spec


AUTO = 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"%s]\nport = "auto"\n' \
       '[restart]\nprobation = "1s"\n[health]\ntype = "http"\nstart_period = "5s"\n'


class Requests:
    """A request loop against wherever the gateway says the server is now (the tunnel's
    route follows the same record): counts answered and failed requests."""

    def __init__(self, gw: Gateway, name: str) -> None:
        import threading

        self.gw, self.name = gw, name
        self.ok = self.failed = 0
        self.ports: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        import urllib.request

        port = self.gw.status()[self.name]["port"]
        last = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last > 0.05:
                port, last = self.gw.status()[self.name]["port"] or port, time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    response.read()
                self.ok += 1
                self.ports.add(port)
            except OSError:
                self.failed += 1

    def done(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_change_with_an_automatic_port_has_no_gap(gateway: Gateway):
    gateway.write("web", AUTO % "")
    gateway.start()
    before = healthy_and_good(gateway, "web")
    loop = Requests(gateway, "web")
    try:
        wait_until(lambda: loop.ok > 5, what="requests answered before the change")
        gateway.write("web", AUTO % ', "--directory", "."')
        after = gateway.wait_for(lambda s: s["web"]["pid"] != before["pid"] and s["web"]["phase"] == "running",
                                 timeout=20, what="the new version")["web"]
        wait_until(lambda: gone(before["pid"]), timeout=20, what="the previous version stopped")
        time.sleep(0.3)
    finally:
        loop.done()
    assert after["port"] != before["port"] and "--directory" in cmdline(after["pid"])
    assert loop.failed == 0 and loop.ok > 10, (loop.ok, loop.failed)
    assert loop.ports == {before["port"], after["port"]}
    assert kinds(gateway, "web").count("switched") == 2


def test_a_failed_change_with_an_automatic_port_never_stops_the_running_version(gateway: Gateway):
    gateway.write("web", AUTO % "")
    gateway.start()
    before = healthy_and_good(gateway, "web")
    gateway.write("web", BAD + 'port = "auto"\n[health]\ntype = "tcp"\nstart_period = "5s"\n')
    wait_until(lambda: "rolled_back" in kinds(gateway, "web"), timeout=20, what="the failed change noted")
    web = gateway.status()["web"]
    assert web["pid"] == before["pid"] and web["port"] == before["port"] and web["phase"] == "running"
    (event,) = [e for e in gateway.events("web") if e["kind"] == "rolled_back"]
    assert "exited with code 2: Error: TOKEN not set" in event["reason"] and event["detail"]["gap"] is False
    assert not [e for e in gateway.events("web") if e["to_phase"] in ("stopping", "exited")]
