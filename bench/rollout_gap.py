"""A change of a running server under a request loop: how many requests fail, and how long the
switch takes. Prints figures; asserts nothing.

Two cases, each `--changes` times: `port = "auto"` (the new version starts next to the old one
and takes over: no gap is the target) and a fixed port (stop, then start: a gap). The request
loop sends GET / back to back to wherever the gateway says the server is now (its status,
re-read every 50 ms), as the tunnel's route follows the same record.

`--through-tunnel` then runs both cases again the way a visitor comes in: through the stand-in
for Cloudflare's edge (tests/tunnel/fake_edge.py), which balances each request over the tunnel's
connected connectors (the fake cloudflared, tests/tunnel/fake_cloudflared.py, each proxying by
its own ingress rules), with DNS through the fake Cloudflare API. The route moves through the
two-connector handover. There the switch is: file saved -> the first answer of the new version
through the tunnel (the child says its version); and, for the automatic port, -> the previous
version gone. `--grace` is the connectors' grace period, `--connect-delay` the seconds a fake
connector takes to connect to the edge.

    python bench/rollout_gap.py --changes 5
    python bench/rollout_gap.py --changes 5 --through-tunnel
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from benchlib import CHILD, REPO, free_ports, stop_process

sys.path.insert(0, str(REPO))
from reconciler.client import Client  # noqa: E402
from tests.tunnel.fake_cloudflare import FakeCloudflare  # noqa: E402
from tests.tunnel.fake_cloudflared import CONNECT_DELAY  # noqa: E402
from tests.tunnel.fake_edge import ENV, FakeEdge, cloudflare_dns  # noqa: E402

VERSION_CHILD = REPO / "tests" / "children" / "http_env.py"  # answers with its VERSION
HOST = "web.example.com"
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


def server_file(port: str, version: int) -> str:
    return (f'command = ["python", "{CHILD}", "{{port}}"]\nport = {port}\nenv = {{ VERSION = "{version}" }}\n'
            '[health]\ntype = "http"\nstart_period = "10s"\n[restart]\nprobation = "1s"\n')


class Loop(threading.Thread):
    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client, self.ok, self.failed, self.halt = client, 0, 0, threading.Event()

    def run(self) -> None:
        port, seen = None, 0.0
        while not self.halt.is_set():
            if time.monotonic() - seen > 0.05 or port is None:
                port = next(s["port"] for s in self.client.status()["servers"] if s["name"] == "web") or port
                seen = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    response.read()
                self.ok += 1
            except OSError:
                self.failed += 1


def measure(port: str, changes: int) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="gateway-gap-"))
    config, data = home / "gateway.d", home / "data"
    config.mkdir()
    env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
    env.pop("GATEWAY_DSN", None)
    (config / "web.toml").write_text(server_file(port, 0))
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(config), "--data-dir",
                             str(data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    switch: list[float] = []
    try:
        while not (data / "gateway.url").exists():
            time.sleep(0.05)
        client = Client(data)

        def web() -> dict:
            return next(s for s in client.status()["servers"] if s["name"] == "web")

        while web()["phase"] != "running":
            time.sleep(0.05)
        time.sleep(2.0)  # past its probation: the last good version
        loop = Loop(client)
        loop.start()
        for version in range(1, changes + 1):
            pid = web()["pid"]
            written = time.monotonic()
            (config / ".web.tmp").write_text(server_file(port, version))
            os.replace(config / ".web.tmp", config / "web.toml")
            while not ((s := web())["pid"] not in (None, pid) and s["phase"] == "running"):
                time.sleep(0.01)
            switch.append(time.monotonic() - written)
            time.sleep(2.0)  # past the new version's probation
        loop.halt.set()
        loop.join(5)
        return {"ok": loop.ok, "failed": loop.failed, "switch": switch}
    finally:
        stop_process(proc)
        shutil.rmtree(home, ignore_errors=True)


class Visitor(threading.Thread):
    """GET https://HOST/ through the edge, back to back; when each VERSION first answered."""

    def __init__(self, edge: FakeEdge) -> None:
        super().__init__(daemon=True)
        self.edge, self.ok, self.failed, self.halt = edge, 0, 0, threading.Event()
        self.first: dict[str, float] = {}
        self.codes: dict[int, int] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status, body = self.edge.get(HOST, timeout=10)
            except OSError:
                status, body = 0, b""
            if status != 200:
                self.failed += 1
                self.codes[status] = self.codes.get(status, 0) + 1
                continue
            self.ok += 1
            self.first.setdefault(json.loads(body)["VERSION"], time.monotonic())


def tunnel_server_file(port: str, version: int) -> str:
    return (f'command = ["python", "{VERSION_CHILD}", "{{port}}", "VERSION"]\nport = {port}\n'
            f'env = {{ VERSION = "{version}" }}\n[health]\ntype = "http"\nstart_period = "10s"\n'
            f'[restart]\nprobation = "1s"\n[domain]\nhostname = "{HOST}"\n')


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def measure_tunnel(port: str, changes: int, grace: str, connect_delay: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="gateway-gap-tunnel-"))
    config, data, bin_dir = home / "gateway.d", home / "data", home / "bin"
    config.mkdir()
    bin_dir.mkdir()
    exe = bin_dir / "cloudflared"
    exe.write_text(f"#!{sys.executable}\n" + (REPO / "tests" / "tunnel" / "fake_cloudflared.py").read_text())
    exe.chmod(0o755)
    creds = home / "creds.json"
    creds.write_text('{"AccountTag":"a","TunnelSecret":"c2VjcmV0","TunnelID":"%s"}' % TUNNEL_ID)
    config_yml = home / "tunnel" / "config.yml"
    switch: list[float] = []
    gone: list[float] = []
    with FakeCloudflare() as cf, FakeEdge(resolve=cloudflare_dns(lambda: cf.records.values())) as edge:
        cf.add_zone("example.com")
        (config / "gateway.toml").write_text(
            f'[tunnel]\nid = "{TUNNEL_ID}"\ncredentials_file = "{creds}"\nconfig_file = "{config_yml}"\n'
            f'cloudflared = "{exe}"\napi_url = "{cf.url}"\ncheck_interval = "200ms"\nrestart_after = "1s"\n'
            f'start_period = "10s"\ngrace_period = "{grace}"\n')
        (config / "web.toml").write_text(tunnel_server_file(port, 0))
        env = dict(os.environ, GATEWAY_INTERNET_CHECK="off", CLOUDFLARE_API_TOKEN=cf.token, **{ENV: edge.address},
                   **{CONNECT_DELAY: str(connect_delay)})
        env.pop("GATEWAY_DSN", None)
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(config), "--data-dir",
                                 str(data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not (data / "gateway.url").exists():
                time.sleep(0.05)
            client = Client(data)

            def status() -> dict[str, dict[str, Any]]:
                return {s["name"]: s for s in client.status()["servers"]}

            def settled() -> bool:  # one connector, on the config there is, nothing else alive
                main = status().get("cloudflared") or {}
                starts = config_yml.with_name("config.yml.starts")
                pids = [int(line.split()[0]) for line in starts.read_text().splitlines()] if starts.exists() else []
                return (main.get("phase") == "running" and len(edge.connectors) == 1
                        and not any(_alive(p) for p in pids if p != main.get("pid")))

            def wait(check: Any, what: str, timeout: float = 120.0) -> None:
                deadline = time.monotonic() + timeout
                while not check():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"timed out: {what}")
                    time.sleep(0.02)

            wait(lambda: edge.get(HOST)[0] == 200 and settled(), "the server answering through the tunnel")
            time.sleep(2.0)  # past its probation: the last good version
            loop = Visitor(edge)
            loop.start()
            for version in range(1, changes + 1):
                old = status()["web"]["pid"]
                written = time.monotonic()
                (config / ".web.tmp").write_text(tunnel_server_file(port, version))
                os.replace(config / ".web.tmp", config / "web.toml")
                wait(lambda v=str(version): v in loop.first, f"version {version} answering")
                switch.append(loop.first[str(version)] - written)
                wait(lambda o=old: not _alive(o), "the previous version gone")
                gone.append(time.monotonic() - written)
                wait(settled, "the tunnel settled")
                time.sleep(2.0)  # past the new version's probation
            loop.halt.set()
            loop.join(15)
            return {"ok": loop.ok, "failed": loop.failed, "codes": loop.codes, "switch": switch, "gone": gone}
        finally:
            stop_process(proc)
            shutil.rmtree(home, ignore_errors=True)


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--through-tunnel", action="store_true", help="also through the edge and the connectors")
    parser.add_argument("--grace", default="1s", help="the connectors' grace period (with --through-tunnel)")
    parser.add_argument("--connect-delay", type=float, default=0.0,
                        help="seconds a fake connector takes to connect (with --through-tunnel)")
    args = parser.parse_args()
    fixed = str(free_ports(1)[0])
    cases = (('port = "auto" (next to the old one)', '"auto"'), (f"port = {fixed} (stop, then start)", fixed))
    print(f"{args.changes} changes of one server (a new env value each: a restart), a request loop throughout")
    print("straight to the port the gateway reports:")
    for label, port in cases:
        got = measure(port, args.changes)
        switch = got["switch"]
        assert isinstance(switch, list)
        print(f"  {label}: {got['failed']} failed of {got['ok'] + got['failed']} requests; file saved -> the new "
              f"version serves: {ms(switch)}")
    if not args.through_tunnel:
        return
    print(f"through the tunnel (edge -> connectors -> server; grace period {args.grace}, a connector connects "
          f"{args.connect_delay:g} s after its start):")
    for label, port in cases:
        got = measure_tunnel(port, args.changes, args.grace, args.connect_delay)
        codes = ", ".join(f"{n} x {c or 'no answer'}" for c, n in sorted(got["codes"].items()))
        print(f"  {label}: {got['failed']} failed of {got['ok'] + got['failed']} requests{f' ({codes})' if codes else ''}; "
              f"file saved -> the new version answers through the tunnel: {ms(got['switch'])}; "
              f"-> the previous version gone: {ms(got['gone'])}")


if __name__ == "__main__":
    main()
