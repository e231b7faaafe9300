"""Visitors' requests through the tunnel during a change (issue 13: "measure it"): a stand-in
for Cloudflare's edge (`fake_edge.py`) balances each request over the tunnel's connected
connectors, and each connector (`fake_cloudflared.py`) forwards it by its own ingress rules.

First the stand-ins alone (they forward, balance, drain and fail as Cloudflare and cloudflared
do); then a real gateway, with the fake cloudflared and the fake Cloudflare API: a change of a
`port = "auto"` server under a request loop fails no request (the new version starts next to
the old one, the route moves through the two-connector handover, the old one stops), and the
same loop counts the failures of a fixed-port change (stop, then start): it can fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from reconciler.tunnel.ingress import Rule, render
from tests.fix_gateway import REPO, Gateway
from tests.reconciler.test_rollout import healthy_and_good
from tests.tunnel.fake_cloudflare import FakeCloudflare
from tests.tunnel.fake_cloudflared import CONNECT_DELAY
from tests.tunnel.fake_edge import ENV, FakeEdge, cloudflare_dns
from tests.tunnel.test_connector import TUNNEL_ID, fake_cloudflared, starts, wait, with_tunnel
from tests.fix_children import toml_str

CHILD = REPO / "tests" / "children" / "http_env.py"
HOST = "web.example.com"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- the stand-ins alone -------------------------------------------------------------------

class Origin:
    """An origin server in the test: answers what it was asked (path, Host, forwarded headers);
    /slow waits until `release` is set."""

    def __init__(self, name: str) -> None:
        self.release, self.waiting = threading.Event(), 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/slow":
                    origin.waiting += 1
                    origin.release.wait(60)  # a hang guard
                body = json.dumps({"origin": name, "path": self.path, "host": self.headers["Host"],
                                   "proto": self.headers["X-Forwarded-Proto"],
                                   "ip": self.headers["Cf-Connecting-Ip"]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(port: int) -> bool:
    try:
        with NO_PROXY.open(f"http://127.0.0.1:{port}/ready", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture
def connectors(tmp_path: Path):
    """Start fake cloudflared connectors on a config (each: its process and id at the edge)."""
    exe = fake_cloudflared(tmp_path / "bin")
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path, edge: FakeEdge) -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        with (tmp_path / "cloudflared.log").open("ab") as log:
            proc = subprocess.Popen([str(exe), "tunnel", "--config", str(config), "--metrics", f"127.0.0.1:{port}",
                                     "--grace-period", "30s", "run"], env=dict(os.environ, **{ENV: edge.address}),
                                    stdout=log, stderr=log)
        procs.append(proc)
        wait(lambda: _ready(port) or proc.poll() is not None, what="the connector ready")
        assert proc.poll() is None, (tmp_path / "cloudflared.log").read_text()
        return proc, f"fake-{proc.pid}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_the_edge_and_the_connectors_forward_balance_drain_and_fail_like_cloudflare(tmp_path, connectors):
    a, b = Origin("a"), Origin("b")
    dead = _free_port()
    config = tmp_path / "config.yml"
    config.write_text(render(TUNNEL_ID, None, [
        Rule("a.example.com", "", f"http://127.0.0.1:{a.port}", server="a"),
        Rule("b.example.com", "^/v1/", f"http://127.0.0.1:{b.port}", server="b"),
        Rule("*.w.example.com", "", f"http://127.0.0.1:{b.port}", server="w"),
        Rule("dead.example.com", "", f"http://127.0.0.1:{dead}", server="dead"),
        Rule()]))
    with FakeEdge() as edge:
        try:
            assert edge.get("a.example.com") == (530, b"error code: 1033")  # no connector connected

            one, one_id = connectors(config, edge)
            assert list(edge.connectors) == [one_id]
            status, body = edge.get("a.example.com", "/x?q=1")
            got = json.loads(body)
            assert status == 200 and got == {"origin": "a", "path": "/x?q=1", "host": "a.example.com",
                                             "proto": "https", "ip": "127.0.0.1"}
            assert json.loads(edge.get("a.example.com:443")[1])["origin"] == "a"
            assert json.loads(edge.get("b.example.com", "/v1/items")[1])["origin"] == "b"
            assert edge.get("b.example.com", "/other")[0] == 404  # the path does not match: the catch-all
            assert json.loads(edge.get("x.w.example.com")[1])["origin"] == "b"
            assert edge.get("w.example.com")[0] == 404 and edge.get("elsewhere.example.com")[0] == 404
            assert edge.get("A.EXAMPLE.COM")[0] == 404  # compared as written, like cloudflared
            assert edge.get("dead.example.com")[0] == 502  # the origin refuses: cloudflared's 502

            # a connector whose connections drop (not ready) takes no requests until they are back
            control = config.with_name("config.yml.fake")
            control.write_text("not-ready")
            wait(lambda: not edge.connectors, what="unregistered while not ready")
            assert edge.get("a.example.com")[0] == 530
            control.write_text("")  # back to normal (no unlink: Windows refuses it while the fake reads)
            wait(lambda: list(edge.connectors) == [one_id], what="registered again")

            # a second connector of the same tunnel: requests are spread over both
            two, two_id = connectors(config, edge)
            served = edge.served[one_id]
            for _ in range(4):
                assert edge.get("a.example.com")[0] == 200
            assert edge.served[one_id] == served + 2 and edge.served[two_id] == 2

            # a graceful stop: no new requests for it; the one under way still finishes
            if sys.platform == "win32":
                return  # a SIGTERM to one connector is POSIX's (Windows' Ctrl-C stop: test_connector, the handovers)
            answers: list[int] = []
            slow = [threading.Thread(target=lambda: answers.append(edge.get("a.example.com", "/slow")[0]))
                    for _ in range(2)]
            for t in slow:
                t.start()
            wait(lambda: a.waiting == 2, what="one slow request on each connector")
            one.send_signal(signal.SIGTERM)
            wait(lambda: list(edge.connectors) == [two_id], what="the stopping connector unregistered")
            assert one.poll() is None  # draining: it is still there for its grace period
            served = edge.served[one_id]
            for _ in range(3):
                assert edge.get("a.example.com")[0] == 200
            a.release.set()
            for t in slow:
                t.join(30)
            assert answers == [200, 200] and edge.served[one_id] == served + 1  # only the one under way

            # a connector that is killed is dropped at once; with none left: 530
            two.kill()
            two.wait(10)
            assert edge.get("a.example.com") == (530, b"error code: 1033")
            assert ("gone", two_id) in edge.history and ("unregister", one_id) in edge.history
        finally:
            a.close()
            b.close()


def test_the_edge_answers_only_for_hostnames_routed_to_a_tunnel():
    records: list[dict[str, Any]] = [
        {"type": "CNAME", "name": "web.example.com", "content": f"{TUNNEL_ID}.cfargotunnel.com", "proxied": True},
        {"type": "CNAME", "name": "grey.example.com", "content": f"{TUNNEL_ID}.cfargotunnel.com", "proxied": False},
        {"type": "A", "name": "mail.example.com", "content": "192.0.2.1", "proxied": True}]
    resolve = cloudflare_dns(lambda: records)
    assert resolve("web.example.com") == TUNNEL_ID
    assert resolve("grey.example.com") is None and resolve("mail.example.com") is None
    with FakeEdge(resolve=resolve) as edge:
        assert edge.get("nothing.example.com") == (530, b"error code: 1016")
        assert edge.get("web.example.com") == (530, b"error code: 1033")  # routed, but no connector


# --- a real gateway ------------------------------------------------------------------------

def web_file(version: int, port: str = '"auto"', start_delay: float = 0.0, host: str = HOST) -> str:
    return (f'command = ["python", {toml_str(CHILD)}, "{{port}}", "VERSION"]\nport = {port}\n'
            f'env = {{ VERSION = "{version}", HTTP_ENV_START_DELAY = "{start_delay}" }}\n'
            '[health]\ntype = "http"\nstart_period = "10s"\n[restart]\nprobation = "1s"\n'
            f'[domain]\nhostname = "{host}"\n')


class Visitor(threading.Thread):
    """GET https://HOST/ through the edge, back to back: answers counted, failures kept."""

    def __init__(self, edge: FakeEdge) -> None:
        super().__init__(daemon=True)
        self.edge, self.ok, self.halt = edge, 0, threading.Event()
        self.failures: list[tuple[int, str]] = []
        self.versions: list[str] = []  # the VERSION of each answer, repeats folded
        self.last: dict[str, Any] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status, body = self.edge.get(HOST, timeout=10)
            except OSError as exc:
                self.failures.append((0, repr(exc)))
                continue
            if status != 200:
                self.failures.append((status, body[:100].decode(errors="replace")))
                continue
            self.ok += 1
            self.last = json.loads(body)
            if self.versions[-1:] != [self.last["VERSION"]]:
                self.versions.append(self.last["VERSION"])

    def __enter__(self) -> Visitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(30)


@pytest.fixture
def world(gateway: Gateway, monkeypatch: pytest.MonkeyPatch):
    """The gateway with the fake cloudflared, whose connectors serve the fake edge; DNS through
    the fake Cloudflare API (the edge answers a hostname only once its CNAME is there)."""
    with FakeCloudflare() as cf, FakeEdge(resolve=cloudflare_dns(lambda: cf.records.values())) as edge:
        cf.add_zone("example.com")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", cf.token)  # the daemon inherits the test's env
        monkeypatch.setenv(ENV, edge.address)
        exe = fake_cloudflared(gateway.config_dir.parent / "bin")
        config_yml = with_tunnel(gateway, exe, extra=f'api_url = "{cf.url}"\n')
        yield gateway, edge, config_yml


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def settled(gw: Gateway, edge: FakeEdge, config_yml: Path, version: str) -> dict[str, Any]:
    """The server is healthy and good, it answers through the tunnel, and one connector runs
    (no handover under way)."""
    web = healthy_and_good(gw, "web")
    wait(lambda: edge.get(HOST)[0] == 200, timeout=30, what="the server answering through the tunnel")
    assert json.loads(edge.get(HOST)[1])["VERSION"] == version

    def one_connector() -> bool:
        main = gw.status()["cloudflared"]
        others = [int(line.split()[0]) for line in starts(config_yml) if int(line.split()[0]) != main["pid"]]
        return main["phase"] == "running" and len(edge.connectors) == 1 and not any(_alive(p) for p in others)

    wait(one_connector, timeout=30, what="one connector, no handover under way")
    return web


def test_an_auto_port_change_through_the_tunnel_fails_no_request(world, monkeypatch):
    """Each connector takes 2.5 s to connect: longer than the old version's 2 s drain, so the old
    version must wait for the route to move (`routes_applied`), not only the drain."""
    gw, edge, config_yml = world
    monkeypatch.setenv(CONNECT_DELAY, "2.5")
    gw.write("web", web_file(0))
    gw.start()
    before = settled(gw, edge, config_yml, "0")
    mark = max(e["seq"] for e in gw.events())
    count = len(starts(config_yml))

    def after_mark(kind: str, server: str) -> list[str]:
        return [e["reason"] for e in gw.events(server) if e["kind"] == kind and e["seq"] > mark]

    with Visitor(edge) as visitor:
        wait(lambda: visitor.ok > 5, what="answers before the change")
        gw.write("web", web_file(1))
        wait(lambda: any(r.startswith("the previous version") for r in after_mark("switched", "web")),
             timeout=60, what="the previous version stopped")
        wait(lambda: any(r.startswith("done") for r in after_mark("tunnel_handover", "cloudflared")), timeout=60,
             what="the tunnel handover done")
        seen = visitor.ok
        wait(lambda: visitor.ok > seen + 20, what="answers after the change")
    after = gw.status()["web"]
    assert not visitor.failures, f"{len(visitor.failures)} of {visitor.ok + len(visitor.failures)} failed: " \
                                 f"{visitor.failures[:5]}"
    assert visitor.ok > 50
    assert after["port"] != before["port"] and after["pid"] != before["pid"] and not _alive(before["pid"])
    assert visitor.last["VERSION"] == "1" and visitor.last["PORT"] == str(after["port"])
    assert visitor.versions[0] == "0" and set(visitor.versions) == {"0", "1"}
    # the route moved through the two-connector handover, and visitors' requests crossed the bridge
    handover = after_mark("tunnel_handover", "cloudflared")
    assert [r.split(":")[0] for r in handover] == ["new routes", "the second connector is ready", "done"], handover
    main = gw.status()["cloudflared"]
    new = [int(line.split()[0]) for line in starts(config_yml)[count:]]
    bridges = [pid for pid in new if pid != main["pid"]]
    assert len(new) == 2 and main["pid"] in new and len(bridges) == 1
    assert edge.served[f"fake-{bridges[0]}"] > 0 and edge.served[f"fake-{main['pid']}"] > 0


def test_a_fixed_port_change_through_the_tunnel_fails_requests_and_no_connector_is_530(world):
    """The same loop is able to fail: a fixed port is stop, then start (here a slow start)."""
    gw, edge, config_yml = world
    port = _free_port()
    gw.write("web", web_file(0, str(port)))
    gw.start()
    before = settled(gw, edge, config_yml, "0")
    count = len(starts(config_yml))
    with Visitor(edge) as visitor:
        wait(lambda: visitor.ok > 5, what="answers before the change")
        gw.write("web", web_file(1, str(port), start_delay=0.5))
        wait(lambda: visitor.last.get("VERSION") == "1", timeout=30, what="the new version answering")
        seen = visitor.ok
        wait(lambda: visitor.ok > seen + 5, what="answers after the change")
    assert gw.status()["web"]["pid"] != before["pid"]
    assert visitor.failures and {status for status, _ in visitor.failures} == {502}, visitor.failures[:5]
    assert visitor.versions == ["0", "1"]
    assert len(starts(config_yml)) == count  # the route did not change: the connector kept running
    assert gw.stop() == 0  # the connector stops: nothing serves the tunnel
    assert edge.get(HOST) == (530, b"error code: 1033")


def test_routes_that_change_again_while_the_connector_restarts_end_the_bridge(world):
    """The second connector stops once the main one runs the routes it bridged or newer ones.
    (It waited for exactly its own: when newer routes came while the main one restarted, it
    served the older routes for two minutes more, and a visitor of the newest hostname got a
    404 every other request.)"""
    gw, edge, config_yml = world
    toml = gw.config_dir / "gateway.toml"
    toml.write_text(toml.read_text().replace('grace_period = "1s"', 'grace_period = "4s"'))  # a long restart
    gw.write("web", web_file(0))
    gw.start()
    settled(gw, edge, config_yml, "0")
    mark = max(e["seq"] for e in gw.events())
    gw.write("api", web_file(0, str(_free_port()), host="api.example.com"))
    wait(lambda: gw.status()["cloudflared"]["phase"] == "stopping", timeout=30, what="the main one restarting")
    gw.write("shop", web_file(0, str(_free_port()), host="shop.example.com"))
    wait(lambda: any(e["kind"] == "tunnel_handover" and e["reason"].startswith("done") and e["seq"] > mark
                     for e in gw.events("cloudflared")), timeout=60, what="the handover done")
    events = [e for e in gw.events("cloudflared") if e["seq"] > mark]
    stopping = next(e["seq"] for e in events if e["to_phase"] == "stopping")
    starting = next(e["seq"] for e in events if e["to_phase"] == "starting")
    shop = next(e["seq"] for e in events if e["kind"] == "tunnel_config"
                and "shop.example.com" in e["detail"]["hostnames"])
    assert stopping < shop < starting  # the newer routes came while the main connector restarted
    assert [e["reason"].split(":")[0] for e in events if e["kind"] == "tunnel_handover"] == [
        "new routes", "the second connector is ready", "done"]
    assert len(edge.connectors) == 1 and gw.status()["cloudflared"]["phase"] == "running"
    assert edge.resolve is not None
    wait(lambda: edge.resolve("shop.example.com") is not None, timeout=30, what="the shop's DNS route")
    for host in (HOST, "api.example.com", "shop.example.com"):
        assert [edge.get(host)[0] for _ in range(6)] == [200] * 6, host
