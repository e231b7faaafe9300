"""Boot to service: from `gateway run` to every one of N servers answering HTTP, including the
embedded PostgreSQL's start. The morning scenario (issue 6, target <= 30 s for 10 servers).

- cold: a fresh data folder (initdb of the embedded PostgreSQL, migrations, first spawns);
- warm: the same folder again after a clean stop (PostgreSQL data exists but is not running),
  which is what a laptop's log-on autostart sees;
- after power loss (`--after-power-loss`): the same folder after the gateway, every server and the
  embedded PostgreSQL were SIGKILLed at once (PostgreSQL runs its crash recovery, every recorded
  server is found dead and started again). Each round is then one boot of each kind;
- after a freeze (`--after-freeze SECONDS`): once every server answers, the gateway and its
  servers are SIGSTOPped for SECONDS (as a laptop's sleep looks to them), then SIGCONTed: the time
  until every server answers again, until the gateway has recorded `host_resumed`, and whether
  any server was restarted (none should be).

Prints seconds per round. Not a test: it prints figures.

    python bench/boot_to_service.py --servers 10 --rounds 3 [--after-power-loss] [--after-freeze 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from benchlib import CHILD, REPO, free_ports, stop_process  # bench/ is on sys.path when run as a script


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def cut_power(proc: subprocess.Popen[bytes], data: Path) -> None:
    """SIGKILL the gateway, its servers' trees and the embedded PostgreSQL cluster, all at once."""
    victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    try:
        postmaster = psutil.Process(int((data / "postgres" / "postmaster.pid").read_text().split()[0]))
        victims += [postmaster, *postmaster.children(recursive=True)]
    except (OSError, ValueError, psutil.Error):
        pass
    for victim in victims:
        try:
            os.kill(victim.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    psutil.wait_procs(victims, timeout=10)


def freeze(proc: subprocess.Popen[bytes], data: Path, ports: list[int], seconds: float,
           timeout: float) -> tuple[float, float, int]:
    """SIGSTOP the gateway and its servers for `seconds`, then SIGCONT (servers first): (seconds
    until every server answers again, seconds until host_resumed is recorded, servers restarted)."""
    sys.path.insert(0, str(REPO))
    from reconciler.client import Client

    while not (data / "gateway.url").exists():  # the page comes up after the servers: freeze a whole gateway
        time.sleep(0.02)
    Client(data, timeout=5).events(limit=1)
    gateway = psutil.Process(proc.pid)
    servers = gateway.children(recursive=True)
    for victim in (gateway, *servers):
        victim.suspend()
    time.sleep(seconds)
    for victim in (*servers, gateway):
        victim.resume()
    started = time.monotonic()
    waiting, answered = set(ports), None
    resumed = None
    while answered is None or resumed is None:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not back within {timeout}s: servers {sorted(waiting)}, resume event {resumed}")
        waiting = {p for p in waiting if not answers(p)}
        if answered is None and not waiting:
            answered = time.monotonic() - started
        if resumed is None and Client(data, timeout=5).events(kind="host_resumed", limit=1):
            resumed = time.monotonic() - started
        time.sleep(0.02)
    restarted = sum(1 for server in servers if not server.is_running())
    return answered, resumed, restarted


def boot(config: Path, data: Path, ports: list[int], timeout: float, cut: bool = False,
         frozen: float = 0.0) -> tuple[float, float]:
    """(seconds until the page's URL file appears, seconds until every server answers); then a
    clean stop, or with `cut` a power cut. With `frozen`, a freeze first (printed)."""
    env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
    env.pop("GATEWAY_DSN", None)
    (data / "gateway.url").unlink(missing_ok=True)  # a killed gateway's: "page up" means the new one's
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(config), "--data-dir",
                             str(data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = None
        waiting = set(ports)
        while waiting:
            if proc.poll() is not None:
                raise SystemExit(f"the gateway exited with {proc.returncode}; see {data / 'gateway.log'}")
            if time.monotonic() - started > timeout:
                raise SystemExit(f"not every server answered within {timeout}s: {sorted(waiting)}")
            if page is None and (data / "gateway.url").exists():
                page = time.monotonic() - started
            waiting = {p for p in waiting if not answers(p)}
            time.sleep(0.02)
        ready = time.monotonic() - started
        while page is None:  # a stop before the page is up would be a kill (the servers then run on)
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the page did not come up within {timeout}s")
            if (data / "gateway.url").exists():
                page = time.monotonic() - started
            time.sleep(0.02)
        if frozen:
            back, event, restarted = freeze(proc, data, ports, frozen, timeout)
            print(f"after a {frozen:g}s freeze: all {len(ports)} servers answering {back:.2f}s after SIGCONT,"
                  f" host_resumed recorded after {event:.2f}s, {restarted} servers restarted")
        return page, ready
    finally:
        if cut and proc.poll() is None:
            cut_power(proc, data)
        else:
            stop_process(proc, data=data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="warm boots after the cold one")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--after-freeze", type=float, default=0.0, metavar="SECONDS",
                        help="freeze the gateway and its servers this long after the cold boot (SIGSTOP/SIGCONT)")
    parser.add_argument("--after-power-loss", action="store_true",
                        help="each round: a boot after a clean stop that ends in a power cut, then a boot after it")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gw-boot-"))
    try:
        config, data = root / "gateway.d", root / "data"
        config.mkdir()
        ports = free_ports(args.servers)
        for i, port in enumerate(ports):
            (config / f"s{i:02d}.toml").write_text(
                f'command = ["{Path(sys.executable).as_posix()}", "{CHILD.as_posix()}", "{{port}}"]\nport = {port}\n'
                '[health]\ntype = "http"\npath = "/"\n')
        page, ready = boot(config, data, ports, args.timeout, frozen=args.after_freeze)
        print(f"cold boot (initdb): page up {page:.2f}s, all {args.servers} servers answering {ready:.2f}s")
        warm, lost = [], []
        for n in range(args.rounds):
            page, ready = boot(config, data, ports, args.timeout, cut=args.after_power_loss)
            warm.append(ready)
            print(f"warm boot {n + 1}: page up {page:.2f}s, all {args.servers} servers answering {ready:.2f}s")
            if args.after_power_loss:
                page, ready = boot(config, data, ports, args.timeout)
                lost.append(ready)
                print(f"boot after power loss {n + 1}: page up {page:.2f}s, all {args.servers} servers answering"
                      f" {ready:.2f}s")
        if warm:
            print(f"warm boot to service, median of {len(warm)}: {statistics.median(warm):.2f}s (target <= 30s)")
        if lost:
            print(f"boot to service after power loss, median of {len(lost)}: {statistics.median(lost):.2f}s"
                  f" (clean: {statistics.median(warm):.2f}s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
