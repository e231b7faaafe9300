"""How fast does the gateway act? With 20 servers running:

- new file  -> its port answers (no command at all)
- port edit -> the new port answers
- kill -9   -> the port answers again, from a new pid
- and the same child's bare start (spawned directly), so the gateway's own share is visible.

Prints min / median / p95 in ms over --reps repetitions. Not a test: it prints figures.
Uses the embedded PostgreSQL in a temporary data folder unless GATEWAY_DSN is set.

    python bench/reconcile_latency.py --reps 20
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
from pathlib import Path

from benchlib import CHILD, REPO, answers, free_ports, stop_process  # bench/ is on sys.path when run as a script

sys.path.insert(0, str(REPO))

from reconciler.client import Client  # noqa: E402


def wait_answer(port: int, timeout: float = 30.0) -> float:
    start = time.perf_counter()
    while not answers(port):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"port {port} did not answer in {timeout}s")
        time.sleep(0.0005)
    return time.perf_counter()




def server_file(port: int) -> str:
    return f'command = ["python", "{CHILD.as_posix()}", "{{port}}"]\nport = {port}\n'


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def summary(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"{label:<34} n={len(ms):<3} min {ms[0]:7.1f}  median {statistics.median(ms):7.1f}  p95 {p95:7.1f} ms"


def bare_start(reps: int) -> list[float]:
    out = []
    for port in free_ports(reps):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(CHILD), str(port)])
        out.append(wait_answer(port) - t0)
        proc.kill()
        proc.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--servers", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    config, data = work / "gateway.d", work / "data"
    config.mkdir()
    ports = free_ports(args.servers + 3 * args.reps + 2)
    base, spare = ports[: args.servers], ports[args.servers:]
    for i, port in enumerate(base):
        write_atomic(config / f"s{i:02d}.toml", server_file(port))
    env = dict(os.environ)
    gw = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run", "--config", str(config), "--data-dir", str(data),
         "--listen", "127.0.0.1:0"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        for port in base:
            wait_answer(port, 60)
        print(f"cold start of {args.servers} servers (incl. database start): {time.perf_counter() - t0:.2f} s")
        while not (data / "gateway.url").exists():
            time.sleep(0.01)
        client = Client(data)
        time.sleep(1.0)

        new_file = []
        for _ in range(args.reps):
            port = spare.pop()
            path = config / f"new{port}.toml"
            t0 = time.perf_counter()
            write_atomic(path, server_file(port))
            new_file.append(wait_answer(port) - t0)
            path.unlink()
            while answers(port):
                time.sleep(0.005)

        port_edit = []
        current = base[0]
        for _ in range(args.reps):
            port = spare.pop()
            t0 = time.perf_counter()
            write_atomic(config / "s00.toml", server_file(port))
            port_edit.append(wait_answer(port) - t0)
            current = port

        crash = []
        status = {s["name"]: s for s in client.status()["servers"]}
        victims = [n for n in sorted(status) if n != "s00"][: args.reps]
        for i in range(args.reps):
            name = victims[i % len(victims)]
            if i >= len(victims):  # more reps than servers: let the backoff window pass
                time.sleep(1.0)
            srv = {s["name"]: s for s in client.status()["servers"]}[name]
            pid, port = srv["pid"], srv["port"]
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while answers(port):  # the old listener is gone at once; wait for the new one
                time.sleep(0.0002)
            crash.append(wait_answer(port) - t0)
        del current

        bare = bare_start(args.reps)
        print(summary("bare child start -> answering", bare))
        print(summary("new file -> answering", new_file))
        print(summary("port edit -> new port answering", port_edit))
        print(summary("kill -9 child -> answering again", crash))
        med = statistics.median(bare)
        print(f"gateway's share over the bare start (median): new file {1000 * (statistics.median(new_file) - med):.1f} ms,"
              f" port edit {1000 * (statistics.median(port_edit) - med):.1f} ms,"
              f" crash {1000 * (statistics.median(crash) - med):.1f} ms")
    finally:
        stop_process(gw)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
