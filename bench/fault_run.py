"""A scripted fault run: a real gateway (its embedded PostgreSQL), a local alert receiver (apprise's
json:// to an HTTP server on 127.0.0.1), and faults one after the other:

- crash loop: the server starts exiting with code 3, at every start; the fix is saved into its file
  (atomically, as the page's form does) while it waits in its backoff;
- failing check: its /health answers 500 (restarted, still 500), then heals by itself;
- hang: its /health never answers, then heals;
- two servers failing together (500), healing together;
- a blip: one failed check, healed before it escalates (no alert is due).

For each incident it prints the seconds from the fault to the alert, from the escalation it reports
(the gateway's event: "escalated", or the `health_after`-th failed check) to the alert, and from the
recovery (the server's first answer again: its transition to running) to "back up"; then counts
false, late (over --late s) and missing alerts. Targets: every alert within 10 s of its escalation,
every "back up" within 10 s of the recovery, 0 false, 0 missing. Prints figures; asserts nothing.

    python bench/fault_run.py                  # checks every 2 s
    python bench/fault_run.py --interval 10s   # the default check interval
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchlib import REPO, stop_process

sys.path.insert(0, str(REPO))
from reconciler.client import Client  # noqa: E402
from reconciler.platform.fsutil import atomic_write  # noqa: E402

CHILD = REPO / "bench" / "fault_child.py"
OPENED = {"down", "not answering", "cannot start"}
LINE = re.compile(r"^\[(?P<label>[^\]]+)\] (?P<server>[\w-]+): (?P<text>.*)$")


class Receiver:
    """The alert receiver: every message with its arrival time (epoch seconds)."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lines(self) -> list[tuple[float, str, str, str]]:
        """(arrived, label, server, text) for every line of every message."""
        out = []
        for at, msg in list(self.got):
            for line in str(msg.get("message", "")).splitlines():
                if m := LINE.match(line):
                    out.append((at, m["label"], m["server"], m["text"]))
        return out

    def wait_for(self, server: str, labels: set[str], after: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, label, name, _ in self.lines():
                if name == server and label in labels and at >= after:
                    return at
            time.sleep(0.05)
        return None


def server_file(fault_file: Path, interval: float) -> str:
    return (f'command = ["{Path(sys.executable).as_posix()}", "{CHILD.as_posix()}", "{{port}}"]\nport = "auto"\n'
            f'env = {{ FAULT_FILE = "{fault_file.as_posix()}" }}\n'
            f'[health]\ntype = "http"\npath = "/health"\ninterval = "{interval:g}s"\ntimeout = "1s"\nfailures = 3\n'
            'start_period = "4s"\n[restart]\nbackoff_start = "1s"\nbackoff_max = "4s"\nalert_after = 3\n'
            'probation = "2s"\n')


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"]).timestamp()


class Run:
    def __init__(self, home: Path, interval: float) -> None:
        self.home, self.interval = home, interval
        self.config, self.data, self.faults = home / "gateway.d", home / "data", home / "faults"
        self.config.mkdir()
        self.faults.mkdir()
        self.receiver = Receiver()
        (self.config / "gateway.toml").write_text(f'[notify]\nurls = ["{self.receiver.url}"]\n', encoding="utf-8")
        self.incidents: list[dict[str, Any]] = []

    def mode(self, name: str, value: str) -> None:
        atomic_write(self.faults / name, value)

    def add(self, name: str) -> None:
        self.mode(name, "ok")
        (self.config / f"{name}.toml").write_text(server_file(self.faults / name, self.interval), encoding="utf-8")

    def start(self, names: list[str]) -> None:
        for name in names:
            self.add(name)
        env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
        env.pop("GATEWAY_DSN", None)
        self.out = open(self.home / "gateway.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(self.config),
                                      "--data-dir", str(self.data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        while not (self.data / "gateway.url").exists():
            assert self.proc.poll() is None, (self.home / "gateway.out").read_text()
            time.sleep(0.05)
        self.client = Client(self.data)
        self.settle(names)

    def settle(self, names: list[str], timeout: float = 60.0) -> None:
        """Every one runs, answers, and is past its probation (its last good version)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {s["name"]: s for s in self.client.status()["servers"]}
            if all(states.get(n, {}).get("phase") == "running" and states[n].get("health") == "ok" for n in names):
                time.sleep(3.0)
                return
            time.sleep(0.1)
        raise RuntimeError(f"servers did not settle: {[(n, states.get(n, {}).get('phase')) for n in names]}")

    def stop(self) -> None:
        stop_process(self.proc, 120)
        self.out.close()
        self.receiver.server.shutdown()

    def events(self, name: str, since: float) -> list[dict[str, Any]]:
        return sorted((e for e in self.client.events(server=name, limit=2000) if at(e) >= since), key=at)

    def escalation(self, name: str, since: float) -> float | None:
        for e in self.events(name, since):
            if e["kind"] == "escalated" or (e["kind"] == "health_failed" and (e["detail"] or {}).get("failures") == 3):
                return at(e)
        return None

    def recovery(self, name: str, since: float) -> float | None:
        for e in self.events(name, since):
            if e["kind"] == "transition" and e["to_phase"] == "running":
                return at(e)
        return None

    def incident(self, label: str, names: list[str], fault: str, heal: Any, timeout: float = 90.0) -> None:
        """Break `names` (`fault` in their fault file), wait for each one's alert, heal them
        (`heal(name)`), wait for each one's "back up"; note the times."""
        t_fault = time.time()
        for name in names:
            self.mode(name, fault)
        alerted = {n: self.receiver.wait_for(n, OPENED, t_fault, timeout) for n in names}
        t_heal = time.time()
        for name in names:
            heal(name)
        for name in names:
            back = self.receiver.wait_for(name, {"back up"}, t_heal, timeout)
            self.incidents.append({"incident": label, "server": name, "fault": t_fault, "alert": alerted[name],
                                   "escalation": self.escalation(name, t_fault), "heal": t_heal,
                                   "recovery": self.recovery(name, t_heal), "back": back})
        time.sleep(2.0)

    def blip(self, name: str) -> None:
        """One failed check, healed before the next: nothing is due."""
        t_fault = time.time()
        self.mode(name, "500")
        time.sleep(self.interval * 1.2)
        self.mode(name, "ok")
        time.sleep(max(15.0, self.interval * 4))
        self.incidents.append({"incident": "blip (no alert due)", "server": name, "fault": t_fault, "alert": None,
                               "escalation": self.escalation(name, t_fault), "heal": None, "recovery": None,
                               "back": None, "blip": True})


def fixed(run: Run, name: str) -> None:
    """The owner saves a fix into the file (atomically, as the page's form writes it): another
    version, which must start at once, not after the crash loop's backoff."""
    good = run.faults / f"{name}-fixed"
    run.mode(f"{name}-fixed", "ok")
    atomic_write(run.config / f"{name}.toml", server_file(good, run.interval))


def seconds(a: float | None, b: float | None) -> str:
    return f"{b - a:6.1f}" if a is not None and b is not None else "     -"


def report(run: Run, late: float) -> None:
    print(f"\n{'incident':<22} {'server':<8} {'fault→alert':>12} {'escalation→alert':>17} {'recovery→back up':>17}")
    for i in run.incidents:
        print(f"{i['incident']:<22} {i['server']:<8} {seconds(i['fault'], i['alert']):>12} "
              f"{seconds(i['escalation'], i['alert']):>17} {seconds(i['recovery'], i['back']):>17}")
    expected = {(i["server"], kind) for i in run.incidents if not i.get("blip") for kind in ("opened", "back")}
    seen: dict[tuple[str, str], int] = {}
    false = 0
    for arrived, label, server, _ in run.receiver.lines():
        kind = "opened" if label in OPENED else "back" if label == "back up" else label
        seen[(server, kind)] = seen.get((server, kind), 0) + 1
        if (server, kind) not in expected or seen[(server, kind)] > 1:
            false += 1
            print(f"  false: [{label}] {server} at +{arrived - run.incidents[0]['fault']:.1f} s")
    missing = sum(1 for key in expected if key not in seen)
    lates = [i for i in run.incidents if not i.get("blip") and (
        (i["alert"] and i["escalation"] and i["alert"] - i["escalation"] > late)
        or (i["back"] and i["recovery"] and i["back"] - i["recovery"] > late))]
    print(f"\nalerts received: {len(run.receiver.got)} messages, {len(run.receiver.lines())} lines")
    t0 = run.incidents[0]["fault"] if run.incidents else 0.0
    for arrived, msg in run.receiver.got:
        print(f"  +{arrived - t0:6.1f} s  {msg.get('title')}  |  " + " / ".join(str(msg.get("message")).splitlines()))
    print(f"false: {false}   late (> {late:g} s): {len(lates)}   missing: {missing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", default="2s", help="the servers' check interval (default 2s)")
    parser.add_argument("--late", type=float, default=10.0, help="seconds after which an alert is late")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (its gateway.out, data)")
    args = parser.parse_args()
    interval = float(args.interval.rstrip("s"))
    home = Path(tempfile.mkdtemp(prefix="gateway-faults-"))
    run = Run(home, interval)
    names = ["bot", "api", "stuck", "pair-a", "pair-b", "blip"]
    try:
        run.start(names)
        run.incident("crash loop, fix saved", ["bot"], "crash", lambda n: fixed(run, n))
        run.incident("failing check (500)", ["api"], "500", lambda n: run.mode(n, "ok"))
        run.incident("hang", ["stuck"], "hang", lambda n: run.mode(n, "ok"))
        run.incident("two failing together", ["pair-a", "pair-b"], "500", lambda n: run.mode(n, "ok"))
        run.blip("blip")
        time.sleep(5.0)  # anything late or false still arrives
    finally:
        run.stop()
        report(run, args.late)
        if args.keep:
            print(f"kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
