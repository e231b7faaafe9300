"""The tunnel under a request loop: what its restarts cost visitors, how soon "Reachable from
outside" follows the connector, and how long a clean stop of the gateway takes with a tunnel.
Prints figures; asserts nothing.

One gateway runs a server at web.example.com through the tunnel. Visitors come in the way
they do on the internet: through a stand-in for Cloudflare's edge (tests/tunnel/fake_edge.py),
which balances each request over the tunnel's connected connectors (the fake cloudflared,
tests/tunnel/fake_cloudflared.py, each proxying by its own ingress rules), with DNS through the
fake Cloudflare API. cloudflared itself is fetched by the gateway from a stand-in of GitHub's
releases (tests/tunnel/fake_releases.py), so that an upgrade can be measured too. A fake
connector drains for its grace period on a signal once connected, as cloudflared does over
QUIC, and connects `--connect-delay` s after it starts.

Measured, with a request loop (GET through the edge, back to back) throughout:
1. the owner's restart of the tunnel (`gateway restart cloudflared`);
2. a settings change ([tunnel] origin in gateway.toml: a new config.yml);
3. an upgrade (a newer release; "Update cloudflared" on the Cloudflare page);
then
4. the connector loses its connections (its /ready says 503): seconds until the gateway's
   status says not reachable, and back;
5. a clean stop of the gateway (SIGTERM, as a service manager, a log-off or a shutdown sends
   it): seconds until the process is gone.

    python bench/tunnel_gap.py                 # grace period 30s, cloudflared's default
    python bench/tunnel_gap.py --grace 5s --connect-delay 0.5
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from benchlib import REPO, free_ports

sys.path.insert(0, str(REPO))
from reconciler.client import Client  # noqa: E402
from reconciler.tunnel.release import asset_for  # noqa: E402
from tests.tunnel.fake_cloudflare import FakeCloudflare  # noqa: E402
from tests.tunnel.fake_cloudflared import CONNECT_DELAY  # noqa: E402
from tests.tunnel.fake_edge import ENV, FakeEdge, cloudflare_dns  # noqa: E402
from tests.tunnel.fake_releases import FakeReleases  # noqa: E402

CHILD = REPO / "tests" / "children" / "http_env.py"
HOST = "web.example.com"
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
USER, PASSWORD = "bench", "bench bench bench 42"


class Visitor(threading.Thread):
    """GET https://HOST/ through the edge, back to back; failures by status, with when."""

    def __init__(self, edge: FakeEdge) -> None:
        super().__init__(daemon=True)
        self.edge, self.ok, self.halt = edge, 0, threading.Event()
        self.failures: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status, _ = self.edge.get(HOST, timeout=10)
            except OSError:
                status = 0
            if status == 200:
                self.ok += 1
            else:
                self.failures.append((time.monotonic(), status))

    def window(self) -> tuple[int, int, dict[int, int]]:
        """(failed, all, failures by status) so far."""
        codes: dict[int, int] = {}
        for _, status in self.failures:
            codes[status] = codes.get(status, 0) + 1
        return len(self.failures), self.ok + len(self.failures), codes


class World:
    def __init__(self, grace: str, connect_delay: float) -> None:
        self.grace, self.connect_delay = grace, connect_delay
        self.home = Path(tempfile.mkdtemp(prefix="gateway-tunnel-gap-"))
        self.config, self.data = self.home / "gateway.d", self.home / "data"
        self.config.mkdir()
        self.config_yml = self.home / "tunnel" / "config.yml"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_settings(self, extra: str = "") -> None:
        creds = self.home / "creds.json"
        creds.write_text('{"AccountTag":"a","TunnelSecret":"c2VjcmV0","TunnelID":"%s"}' % TUNNEL_ID)
        (self.config / ".gateway.tmp").write_text(
            f'[tunnel]\nid = "{TUNNEL_ID}"\ncredentials_file = "{creds}"\nconfig_file = "{self.config_yml}"\n'
            f'api_url = "{self.cf_url}"\ncheck_interval = "1s"\nrestart_after = "30s"\nstart_period = "20s"\n'
            f'grace_period = "{self.grace}"\n{extra}')
        os.replace(self.config / ".gateway.tmp", self.config / "gateway.toml")

    def start(self, cf: FakeCloudflare, edge: FakeEdge, releases: FakeReleases) -> None:
        self.cf_url = cf.url
        self.write_settings()
        port = free_ports(1)[0]
        (self.config / "web.toml").write_text(
            f'command = ["python", "{CHILD}", "{{port}}"]\nport = {port}\n[health]\ntype = "http"\n'
            f'[domain]\nhostname = "{HOST}"\n')
        env = dict(os.environ, GATEWAY_INTERNET_CHECK="off", CLOUDFLARE_API_TOKEN=cf.token, **{ENV: edge.address},
                   **{CONNECT_DELAY: str(self.connect_delay)}, GATEWAY_CLOUDFLARED_RELEASES=releases.url,
                   GATEWAY_NO_BROWSER="1")
        env.pop("GATEWAY_DSN", None)
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(self.config),
                                      "--data-dir", str(self.data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (self.data / "gateway.url").exists():
            time.sleep(0.05)
        self.client = Client(self.data)
        self.cli("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run([sys.executable, "-m", "reconciler", *args, "--config", str(self.config), "--data-dir",
                               str(self.data)], cwd=REPO, env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(f"gateway {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def cloudflared(self) -> dict[str, Any]:
        return next((s for s in self.status()["servers"] if s["name"] == "cloudflared"), {})

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.client.events(limit=500) if e.get("seq", 0) > seq]

    def last_seq(self) -> int:
        return max((e.get("seq", 0) for e in self.client.events(limit=50)), default=0)

    def stop(self) -> float:
        """SIGTERM the gateway: seconds until its process is gone."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return time.monotonic() - began

    def close(self) -> None:
        if self.proc is not None:
            self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def wait(check: Any, what: str, timeout: float = 240.0) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.02)
    return time.monotonic() - began


def settled(world: World, edge: FakeEdge) -> bool:
    main = world.cloudflared()
    return main.get("phase") == "running" and len(edge.connectors) == 1 and world.status()["gateway"]["tunnel"].get(
        "reachable") is True


def handover_done(world: World, seq: int) -> bool:
    return any(e["kind"] == "tunnel_handover" and e["reason"].startswith(("done", "the main connector did not"))
               for e in world.events_since(seq))


def case(world: World, edge: FakeEdge, label: str, act: Any) -> dict[str, Any]:
    wait(lambda: settled(world, edge), "the tunnel settled")
    seq = world.last_seq()
    pid = world.cloudflared().get("pid")
    visitor = Visitor(edge)
    visitor.start()
    wait(lambda: visitor.ok > 20, "answers before")
    began = time.monotonic()
    act()
    took = wait(lambda: handover_done(world, seq) and world.cloudflared().get("pid") != pid, f"{label}: done")
    wait(lambda: settled(world, edge), "settled after")
    time.sleep(1.0)
    visitor.halt.set()
    visitor.join(15)
    failed, total, codes = visitor.window()
    return {"label": label, "failed": failed, "total": total, "codes": codes, "seconds": took,
            "since": time.monotonic() - began}


def sign_in(world: World) -> httpx.Client:
    url = (world.data / "gateway.url").read_text().strip()
    http = httpx.Client(base_url=url, trust_env=False, timeout=120, headers={"sec-fetch-site": "same-origin"})
    r = http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/"})
    if r.status_code != 303:
        raise SystemExit(f"sign-in failed: {r.status_code}")
    http.csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', http.get("/").text).group(1)  # type: ignore[attr-defined,union-attr]
    return http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grace", default="30s", help="cloudflared's grace period (default: its own, 30s)")
    parser.add_argument("--connect-delay", type=float, default=1.0, help="seconds a connector takes to connect")
    args = parser.parse_args()
    asset = asset_for(platform.system(), platform.machine()).name
    world = World(args.grace, args.connect_delay)
    results: list[dict[str, Any]] = []
    with FakeCloudflare() as cf, FakeEdge(resolve=cloudflare_dns(lambda: cf.records.values())) as edge, \
            FakeReleases() as releases:
        cf.add_zone("example.com")
        releases.publish("2026.8.2", [asset])
        try:
            world.start(cf, edge, releases)
            wait(lambda: edge.get(HOST)[0] == 200, "the server through the tunnel")
            results.append(case(world, edge, "the owner's restart (gateway restart cloudflared)",
                                lambda: world.cli("restart", "cloudflared")))
            results.append(case(world, edge, "a settings change ([tunnel] origin in gateway.toml)",
                                lambda: world.write_settings('origin = { connectTimeout = "20s" }\n')))
            releases.publish("2026.9.0", [asset])
            http = sign_in(world)
            try:
                def update() -> None:
                    r = http.post("/cloudflare/update", data={"csrf": http.csrf})  # type: ignore[attr-defined]
                    if r.status_code != 303:
                        raise SystemExit(f"update failed: {r.status_code} {r.text[:300]}")
                results.append(case(world, edge, "an upgrade (2026.8.2 -> 2026.9.0 from the Cloudflare page)", update))
            finally:
                http.close()

            wait(lambda: settled(world, edge), "settled before the loss")
            control = world.config_yml.with_name("config.yml.fake")
            lost = []
            back = []
            for _ in range(3):
                control.write_text("not-ready")
                lost.append(wait(lambda: world.status()["gateway"]["tunnel"].get("reachable") is False,
                                 "not reachable"))
                control.unlink()
                back.append(wait(lambda: world.status()["gateway"]["tunnel"].get("reachable") is True, "reachable"))
                time.sleep(1.0)
            wait(lambda: settled(world, edge), "settled before the stop")
            stop = world.stop()
        finally:
            world.close()
    print(f"the tunnel under a request loop through the edge stand-in (cloudflared's grace period {args.grace}; a "
          f"connector connects {args.connect_delay:g} s after its start):")
    for r in results:
        codes = ", ".join(f"{n} x {c or 'no answer'}" for c, n in sorted(r["codes"].items()))
        print(f"  {r['label']}: {r['failed']} failed of {r['total']} requests{f' ({codes})' if codes else ''}; "
              f"the switch took {r['seconds']:.1f} s")
    print(f"  the connector loses its connections -> 'Reachable from outside' false: "
          f"{', '.join(f'{s:.2f}' for s in lost)} s (max {max(lost):.2f}); back: "
          f"{', '.join(f'{s:.2f}' for s in back)} s")
    print(f"  a clean stop of the gateway with the tunnel connected (SIGTERM -> process gone): {stop:.2f} s")


if __name__ == "__main__":
    main()
