"""cloudflared on a laptop that loses its internet: the stand-in behaves like the real one
where it matters (validates first, exits 1 about 0.7 s after start with no edge, refuses a
missing credentials file, drains for its grace period once connected), and the gateway does
not restart it in a loop while the internet check fails (one "waiting for the internet"
event, no escalation), starts it again as soon as the internet is back, and raises the
`tunnel` alert when it stays offline although the internet is up."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reconciler.tunnel.ingress import Rule, render
from tests.fix_gateway import Gateway
from tests.ops.test_notify import Receiver
from tests.tunnel.test_connector import TUNNEL_ID, fake_cloudflared, wait, with_tunnel

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Edge:
    """A TCP listener on 127.0.0.1 standing in for "the internet" (and Cloudflare's edge)."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.sock: socket.socket | None = None
        self.address = f"127.0.0.1:{self.port}"

    def up(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.sock = sock

    def down(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def edge():
    e = Edge()
    yield e
    e.down()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, creds: Path | None = None, hostname: str = "a.example.com") -> Path:
    path = tmp_path / "config.yml"
    path.write_text(render(TUNNEL_ID, str(creds) if creds else None,
                           [Rule(hostname, "", "http://127.0.0.1:1", server="a"), Rule()]))
    return path


def _ready(port: int) -> int | None:
    try:
        with NO_PROXY.open(f"http://127.0.0.1:{port}/ready", timeout=1) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_the_stand_in_behaves_like_cloudflared(tmp_path, edge, monkeypatch):
    exe = fake_cloudflared(tmp_path / "bin")
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"AccountTag": "a", "TunnelSecret": "c2VjcmV0", "TunnelID": TUNNEL_ID}))

    def run(config: Path, port: int, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(exe), "tunnel", "--config", str(config), "--metrics", f"127.0.0.1:{port}",
                                 *extra, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # a refused config: exit 1, and the metrics never answered
    (exe.parent / "refuse").write_text("bad.example.com\n")
    port = _free_port()
    proc = run(_config(tmp_path, creds, "bad.example.com"), port)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "Validation failed: Rule #1" in err and _ready(port) is None
    (exe.parent / "refuse").unlink()

    # a credentials file that does not exist: exit 1
    proc = run(_config(tmp_path, tmp_path / "missing.json"), _free_port())
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "missing.json' doesn't exist or is not a file" in err

    # no edge: /ready answers 503 first, then it exits 1 with the SRV lookup error
    monkeypatch.setenv("FAKE_CLOUDFLARED_EDGE", edge.address)
    port = _free_port()
    proc = run(_config(tmp_path, creds), port)
    wait(lambda: _ready(port) is not None or proc.poll() is not None, what="metrics or exit")
    assert _ready(port) == 503
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com" in err

    # connected: SIGTERM waits for the grace period; not connected: it stops at once (POSIX: Windows has no
    # signal to send to one process; the gateway's Ctrl-C reaches the fake in test_connector's stops)
    if sys.platform == "win32":
        return
    edge.up()
    for grace, connected in (("1500ms", True), ("30s", False)):
        if not connected:
            edge.down()
        port = _free_port()
        proc = run(_config(tmp_path, creds), port, "--grace-period", grace)
        wait(lambda port=port, proc=proc: _ready(port) is not None or proc.poll() is not None, what="metrics")
        if connected:
            assert _ready(port) == 200
        proc.send_signal(signal.SIGTERM)
        if connected:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)  # still draining (its grace period is 1.5 s)
        assert proc.wait(timeout=10) == 0
        proc.communicate()


def _offline_setup(gateway: Gateway, edge: Edge, monkeypatch, internet: str, extra: str = "") -> Path:
    monkeypatch.setenv("GATEWAY_INTERNET_CHECK", internet)
    monkeypatch.setenv("FAKE_CLOUDFLARED_EDGE", edge.address)
    exe = fake_cloudflared(gateway.config_dir.parent / "bin")
    config_yml = with_tunnel(gateway, exe, extra=f'offline_alert_after = "1s"\n{extra}')
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text(toml.read_text() + '\n[host]\nsample_every = "200ms"\n')
    return config_yml


def test_offline_waits_for_the_internet_then_connects_at_once(gateway: Gateway, edge: Edge, monkeypatch):
    _offline_setup(gateway, edge, monkeypatch, internet=edge.address)
    gateway.start()
    def tunnel() -> dict:
        return gateway.client.status()["gateway"]["tunnel"]

    wait(lambda: tunnel()["state"] == "waiting for the internet" and "exited" in (tunnel().get("cause") or ""),
         timeout=20, what="waiting for the internet, after cloudflared exited")
    view = tunnel()
    assert "this laptop has no internet" in view["summary"] and view["since"]
    assert "exited with code 1" in view["cause"] and "Could not lookup srv records" in view["cause"]
    starts_while_offline = len([e for e in gateway.events("cloudflared") if e["to_phase"] == "starting"])
    time.sleep(2)  # offline for a while: no restarts in a loop
    events = gateway.events("cloudflared")
    assert len([e for e in events if e["to_phase"] == "starting"]) == starts_while_offline
    assert [e["kind"] for e in events].count("tunnel_waiting") == 1
    assert not [e for e in events if e["kind"] in ("escalated", "tunnel_offline")]

    edge.up()  # the internet is back: started at once, ready, and said
    wait(lambda: tunnel()["state"] == "running", timeout=20, what="running again")
    assert any(e["kind"] == "tunnel_online" for e in gateway.events("cloudflared"))
    gateway.stop()


def test_the_tunnel_alert_fires_when_offline_with_the_internet_up(gateway: Gateway, edge: Edge, monkeypatch):
    receiver = Receiver()
    try:
        internet = Edge()
        internet.up()  # the internet answers, but cloudflared cannot reach the edge
        _offline_setup(gateway, edge, monkeypatch, internet=internet.address)
        toml = gateway.config_dir / "gateway.toml"
        toml.write_text(toml.read_text() + f'[notify]\nurls = ["{receiver.url}"]\ngroup = "100ms"\n'
                        'min_interval = "0s"\nevents = ["tunnel"]\n')
        gateway.start()
        got = receiver.wait(1, timeout=30)
        assert got and "tunnel" in got[0][1]["title"], got
        offline = [e for e in gateway.events("cloudflared") if e["kind"] == "tunnel_offline"]
        assert len(offline) == 1 and "Could not lookup srv records" in offline[0]["reason"]
        assert gateway.client.status()["gateway"]["tunnel"]["state"] in ("offline", "connecting", "restarting")
        gateway.stop()
        internet.down()
    finally:
        receiver.close()
