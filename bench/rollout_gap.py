"""A change of a running server under a request loop: how many requests fail, and how long the
switch takes. Prints figures; asserts nothing.

Two cases, each `--changes` times: `port = "auto"` (the new version starts next to the old one
and takes over: no gap is the target) and a fixed port (stop, then start: a gap). The request
loop sends GET / back to back to wherever the gateway says the server is now (its status,
re-read every 50 ms), as the tunnel's route follows the same record.

    python bench/rollout_gap.py --changes 5
"""

from __future__ import annotations

import argparse
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

from benchlib import CHILD, REPO, free_ports, stop_process

sys.path.insert(0, str(REPO))
from reconciler.client import Client  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    fixed = str(free_ports(1)[0])
    print(f"{args.changes} changes of one server (a new env value each: a restart), a request loop throughout")
    for label, port in (('port = "auto" (next to the old one)', '"auto"'), (f"port = {fixed} (stop, then start)", fixed)):
        got = measure(port, args.changes)
        switch = got["switch"]
        assert isinstance(switch, list)
        print(f"{label}: {got['failed']} failed of {got['ok'] + got['failed']} requests; file saved -> the new "
              f"version serves: median {statistics.median(switch) * 1000:.0f} ms, max {max(switch) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
