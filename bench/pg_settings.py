"""The embedded PostgreSQL's own settings, measured beside a gateway at rest: for each candidate
set, an embedded server started the way the product starts it (reconciler/store/embedded.py, with
the candidate in place of its SERVER_SETTINGS), its start timed, then a real gateway with N servers
of the benchmark child (tcp health checks, samples every 10 s) that adopts that server, and over an
idle window the whole cluster (the postmaster and every child): RSS, PSS and USS summed, CPU
seconds, wake-ups (voluntary context switches) per second, processes. Not a test: it prints
figures, and ends every process it started.

    python bench/pg_settings.py --servers 100 --idle 60 [--only stock product ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchlib import REPO, gateway_with  # bench/ is on sys.path when run as a script

sys.path.insert(0, str(REPO))
from reconciler.store.embedded import SERVER_SETTINGS, EmbeddedPostgres  # noqa: E402

# Each set replaces the product's SERVER_SETTINGS whole ("stock" is PostgreSQL 18's own defaults,
# what the product ran before this bench); the single changes show what each one buys.
QUIET = {"bgwriter_delay": "10s", "wal_writer_delay": "10s", "checkpoint_timeout": "15min"}
CANDIDATES: dict[str, dict[str, str]] = {
    "stock": {},
    "product": dict(SERVER_SETTINGS),
    "shared_buffers=16MB": {"shared_buffers": "16MB"},
    "shared_buffers=8MB": {"shared_buffers": "8MB"},
    "io_method=sync": {"io_method": "sync"},
    "workers 0": {"max_worker_processes": "0", "max_parallel_workers": "0",
                  "max_logical_replication_workers": "0"},
    "max_connections=20": {"max_connections": "20", "autovacuum_worker_slots": "3"},
    "autovacuum_naptime=5min": {"autovacuum_naptime": "5min"},
    "quiet background": QUIET,
    "wal_level=minimal": {"wal_level": "minimal", "max_wal_senders": "0"},
    "product + max_connections=20": {**SERVER_SETTINGS, "max_connections": "20", "autovacuum_worker_slots": "3"},
}


@dataclass
class Figures:
    start_s: float = 0.0
    rss_mb: float = 0.0
    pss_mb: float = 0.0
    uss_mb: float = 0.0
    cpu_s: float = 0.0
    wakeups: float = 0.0
    processes: int = 0
    forks: int = 0
    window: float = 0.0
    per_process: dict[str, float] = field(default_factory=dict)


def cluster(postmaster: psutil.Process) -> list[psutil.Process]:
    return [postmaster, *postmaster.children(recursive=True)]


def cpu_total(postmaster: psutil.Process) -> float:
    """CPU seconds of the live cluster plus what its ended children used (the postmaster reaps them)."""
    total = 0.0
    for proc in cluster(postmaster):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        if proc.pid == postmaster.pid:
            total += times.children_user + times.children_system
    return total


def label(proc: psutil.Process) -> str:
    """`checkpointer`, `io worker 0`, `postmaster`, `postgres gateway [local] idle` -> `backend`."""
    try:
        title = " ".join(proc.cmdline())
    except psutil.Error:
        return "?"
    if not title.startswith("postgres: "):
        return "postmaster"
    role = title.removeprefix("postgres: ")
    return "backend" if "[local]" in role or "127.0.0.1" in role else role.split("  ")[0].strip()


def measure(postmaster: psutil.Process, idle: float) -> Figures:
    """Poll once a second (a pid seen only mid-window counts from 0), so a short-lived worker's
    wake-ups count too, unless it lived less than a second."""
    first: dict[int, int] = {}  # voluntary switches when first seen (0 for a pid born in the window)
    last: dict[int, tuple[str, int]] = {}
    c0, t0 = cpu_total(postmaster), time.monotonic()
    start_pids: set[int] | None = None
    while True:
        for proc in cluster(postmaster):
            try:
                switches = proc.num_ctx_switches().voluntary
                name = last[proc.pid][0] if proc.pid in last else label(proc)
            except psutil.Error:
                continue
            first.setdefault(proc.pid, switches if start_pids is None else 0)
            last[proc.pid] = (name, switches)
        if start_pids is None:
            start_pids = set(last)
        elapsed = time.monotonic() - t0
        if elapsed >= idle:
            break
        time.sleep(min(1.0, idle - elapsed))
    out = Figures(cpu_s=cpu_total(postmaster) - c0, window=time.monotonic() - t0)
    for pid, (name, switches) in last.items():
        rate = (switches - first[pid]) / out.window
        out.per_process[name] = out.per_process.get(name, 0.0) + rate
    out.wakeups = sum(out.per_process.values())
    out.forks = len(set(last) - start_pids)
    for proc in cluster(postmaster):
        try:
            mem = proc.memory_full_info()
        except psutil.Error:
            continue
        out.rss_mb += mem.rss / 2**20
        out.pss_mb += mem.pss / 2**20
        out.uss_mb += mem.uss / 2**20
        out.processes += 1
    return out


def start_time(pg: EmbeddedPostgres, times: int) -> float:
    """Median seconds of `pg.start()` on an existing data folder (what a cold gateway start waits
    for: the server up and a first connection to the gateway database), stopped in between."""
    spent = []
    for _ in range(times):
        t0 = time.monotonic()
        pg.start()
        spent.append(time.monotonic() - t0)
        pg.stop()
    return statistics.median(spent)


def run_one(settings: dict[str, str], servers: int, idle: float, settle: float, starts: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="pgset-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", settings=settings)
        try:
            pg.start()  # initdb (not timed) and a first start
            pg.stop()
            taken = start_time(pg, starts)
            pg.start()  # the gateway adopts this server (and stops it when it stops)
            postmaster = psutil.Process(pg.pid or 0)
            with gateway_with(servers, Path(tmp)):
                assert pg.pid == postmaster.pid, "the gateway started its own PostgreSQL"
                time.sleep(settle)
                figures = measure(postmaster, idle)
                figures.start_s = taken
            return figures
        finally:
            pg.stop()

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--idle", type=float, default=60.0, help="seconds measured (autovacuum's default naptime is 60)")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds after every server answers")
    ap.add_argument("--starts", type=int, default=5, help="timed starts of the server per set (median)")
    ap.add_argument("--only", nargs="*", default=None, help=f"sets to run, from: {', '.join(CANDIDATES)}")
    args = ap.parse_args()
    names = args.only or list(CANDIDATES)
    print(f"embedded PostgreSQL beside a gateway with {args.servers} servers at rest; idle window "
          f"{args.idle:.0f} s after {args.settle:.0f} s settling; start = median of {args.starts}", flush=True)
    print(f"product SERVER_SETTINGS: {SERVER_SETTINGS or 'none (stock)'}", flush=True)
    results: dict[str, Figures] = {}
    for name in names:
        f = results[name] = run_one(CANDIDATES[name], args.servers, args.idle, args.settle, args.starts)
        top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(f.per_process.items(), key=lambda kv: -kv[1]) if v >= 0.05)
        print(f"{name}: RSS {f.rss_mb:.1f} MB, PSS {f.pss_mb:.1f} MB, USS {f.uss_mb:.1f} MB, "
              f"CPU {f.cpu_s:.2f} s over {f.window:.0f} s, wake-ups {f.wakeups:.1f}/s ({top}), "
              f"{f.processes} processes, {f.forks} started in the window, start {f.start_s:.2f} s", flush=True)
    base = results.get("stock")
    print("\n| settings | RSS (MB) | PSS (MB) | USS (MB) | CPU over idle (s) | wake-ups/s: all (without the "
          "gateway's connections) | processes | started in window | start (s) | PSS / stock | wake-ups / stock |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, f in results.items():
        own = f.wakeups - f.per_process.get("backend", 0.0)  # the connections' wake-ups are the gateway's queries
        ratios = (f"{f.pss_mb / base.pss_mb:.2f} | {f.wakeups / base.wakeups:.2f}"
                  if base and base.pss_mb and base.wakeups else "- | -")
        print(f"| {name} | {f.rss_mb:.1f} | {f.pss_mb:.1f} | {f.uss_mb:.1f} | {f.cpu_s:.2f} | {f.wakeups:.1f} ({own:.1f}) "
              f"| {f.processes} | {f.forks} | {f.start_s:.2f} | {ratios} |")


if __name__ == "__main__":
    main()
