"""Load on the web page: the overview and /api/servers with N servers under C concurrent
clients for S seconds (requests/s, p50/p95/p99 latency, the gateway's and the client's CPU),
then K server-sent-event clients connected (gateway CPU while idle and while servers change).

    .venv/bin/python bench/web_load.py                     # 100 servers, 50 clients, 20 s, 50 SSE
    .venv/bin/python bench/web_load.py --servers 20 --seconds 5 --sse-clients 10
    .venv/bin/python bench/web_load.py --paths /api/servers --repeat 5 --sse-clients 0   # medians of 5
    .venv/bin/python bench/web_load.py --paths /api/servers --etag --sse-clients 0   # a phone's If-None-Match

The client is each worker's own keep-alive connection speaking HTTP/1.1 on raw asyncio
streams (`--client raw`, the default): a few µs of client CPU a request, so on a 2-core machine
the figure is the gateway's. `--client httpx` is the older client (about 1 ms of CPU a request:
with 50 workers it shares the cores with the gateway and its queueing shows in the tail);
`wrk` is used instead when installed, unless `--python-client`. `--profile FILE` runs the
gateway under cProfile (stats written when it stops: `python -m pstats FILE`).

Uses $GATEWAY_DSN when set, else the gateway's own embedded PostgreSQL in a temporary folder.
The servers are bench/tiny_http.py on auto ports. Everything started here is stopped at the end."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from benchlib import REPO, stop_process  # bench/ is on sys.path when run as a script

USER, PASSWORD = "bench", "bench password"


def start_gateway(base: Path, servers: int, profile: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    config, data = base / "gateway.d", base / "data"
    config.mkdir()
    for i in range(servers):
        (config / f"s{i:03d}.toml").write_text(
            f'command = ["{sys.executable}", "{REPO / "bench" / "tiny_http.py"}", "{{port}}"]\nport = "auto"\n'
            f'description = "bench server {i}"\ngroup = "g{i % 5}"\ntags = ["bench"]\n')
    env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
    prefix = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
    proc = subprocess.Popen([sys.executable, *prefix, "-m", "reconciler", "run", "--config", str(config), "--data-dir",
                             str(data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env,
                            stdout=(base / "out.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (data / "gateway.url").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the gateway did not start:\n{(base / 'out.log').read_text()}")
        time.sleep(0.1)
    subprocess.run([sys.executable, "-m", "reconciler", "user", "add", USER, "--password-stdin", "--data-dir",
                    str(data), "--config", str(config)], input=PASSWORD + "\n", text=True, check=True, cwd=REPO,
                   capture_output=True)
    return proc, data


def sign_in(url: str) -> tuple[dict[str, str], str]:
    with httpx.Client(base_url=url, trust_env=False, headers={"sec-fetch-site": "same-origin"}) as http:
        r = http.post("/login", data={"username": USER, "password": PASSWORD})
        assert r.status_code == 303, r.text
        cookies = dict(http.cookies)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', http.get("/").text)
        return cookies, csrf.group(1) if csrf else ""


def wait_running(url: str, cookies: dict[str, str], servers: int) -> None:
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=url, trust_env=False, cookies=cookies) as http:
        while time.monotonic() < deadline:
            running = sum(s["phase"] == "running" for s in http.get("/api/servers").json()["servers"])
            if running >= servers:
                return
            time.sleep(0.5)
    raise SystemExit(f"only {running} of {servers} servers running after 120 s")


class Meter:
    """CPU seconds of the gateway and of this client over one load run."""

    def __init__(self, gateway: psutil.Process) -> None:
        self.procs = [gateway, psutil.Process()]
        self.start = [self._cpu(p) for p in self.procs]

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def used(self) -> tuple[float, float]:
        gw, me = (self._cpu(p) - s for p, s in zip(self.procs, self.start, strict=True))
        return gw, me


async def load_httpx(url: str, cookies: dict[str, str], clients: int, seconds: float, path: str,
                     etag: bool) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = not_modified = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, trust_env=False, cookies=cookies, limits=limits, timeout=30) as http:
        async def worker() -> None:
            nonlocal errors, not_modified
            tag = ""
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                r = await http.get(path, headers={"if-none-match": tag} if tag else None)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code not in (200, 304)
                not_modified += r.status_code == 304
                tag = r.headers.get("etag", tag) if etag else ""
        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors, not_modified


async def load_raw(url: str, cookies: dict[str, str], clients: int, seconds: float, path: str,
                   etag: bool) -> tuple[list[float], int, int]:
    """Each worker: one keep-alive connection, a prepared request, the answer read by its
    Content-Length. Only what a 200 or a 304 of this gateway needs; anything else is an error."""
    host, _, port = url.removeprefix("http://").partition(":")
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n".encode()
    latencies: list[float] = []
    errors = not_modified = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors, not_modified
        reader, writer = await asyncio.open_connection(host, int(port))
        tag = b""
        try:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                writer.write(request + (b"If-None-Match: " + tag + b"\r\n" if tag else b"") + b"\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                status = head[9:12]
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - t0)
                if status not in (b"200", b"304"):
                    errors += 1
                not_modified += status == b"304"
                if etag:
                    found = re.search(rb"(?i)\r\netag: *([^\r]+)", head)
                    tag = found.group(1) if found else tag
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors, not_modified


def quantiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100)
    return {"p50": q[49] * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000, "max": max(latencies) * 1000}


def load_runs(args: argparse.Namespace, url: str, cookies: dict[str, str], gw: psutil.Process, path: str,
              client: str) -> None:
    runs: list[dict[str, float]] = []
    loader = load_httpx if client == "httpx" else load_raw
    label = f"GET {path}{' (If-None-Match)' if args.etag else ''} x{args.clients} clients ({client})"
    for i in range(args.repeat):
        meter = Meter(gw)
        lat, errors, not_modified = asyncio.run(loader(url, cookies, args.clients, args.seconds, path, args.etag))
        gw_cpu, me_cpu = meter.used()
        run = {**quantiles(lat), "rate": len(lat) / args.seconds, "gw_ms": gw_cpu / len(lat) * 1000,
               "client_ms": me_cpu / len(lat) * 1000}
        runs.append(run)
        print(f"{label} run {i + 1}: {len(lat)} requests in {args.seconds:.0f} s = {run['rate']:.0f} req/s;"
              f" p50 {run['p50']:.1f} ms, p95 {run['p95']:.1f} ms, p99 {run['p99']:.1f} ms, max {run['max']:.1f} ms;"
              f" CPU per request: gateway {run['gw_ms']:.2f} ms, client {run['client_ms']:.2f} ms"
              + (f"; {not_modified / len(lat):.0%} were 304" if args.etag else "")
              + (f"; {errors} answers were not 200/304" if errors else ""), flush=True)
    if args.repeat > 1:
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{label} median of {args.repeat}: {med['rate']:.0f} req/s; p50 {med['p50']:.1f} ms,"
              f" p95 {med['p95']:.1f} ms, p99 {med['p99']:.1f} ms; CPU per request: gateway {med['gw_ms']:.2f} ms,"
              f" client {med['client_ms']:.2f} ms", flush=True)


async def sse_clients(url: str, cookies: dict[str, str], clients: int, seconds: float, gateway: psutil.Process,
                      csrf: str) -> tuple[float, float, int]:
    """(gateway CPU % idle with the streams open, CPU % while a server restarts every second, messages)."""
    received = 0
    async with httpx.AsyncClient(base_url=url, trust_env=False, cookies=cookies, timeout=None,
                                 limits=httpx.Limits(max_connections=clients + 5)) as http:
        async def listen() -> None:
            nonlocal received
            async with http.stream("GET", "/stream") as r:
                async for line in r.aiter_lines():
                    received += line.startswith("event:")
        tasks = [asyncio.create_task(listen()) for _ in range(clients)]
        await asyncio.sleep(2)
        gateway.cpu_percent(None)
        await asyncio.sleep(seconds)
        idle = gateway.cpu_percent(None)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await http.post("/servers/s000/control", data={"verb": "restart", "csrf": csrf},
                            headers={"sec-fetch-site": "same-origin", "accept": "application/json"})
            await asyncio.sleep(1)
        busy = gateway.cpu_percent(None)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return idle, busy, received


def run_wrk(url: str, cookies: dict[str, str], clients: int, seconds: float, path: str) -> None:
    """wrk (Debian's package) as the load generator: far less client CPU than Python's."""
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-H", f"Cookie: {cookie}",
                          url + path], capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(f"GET {path} x{clients} clients (wrk): {rate.group(1) if rate else '?'} req/s;"
          f" p50 {p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}"
          + (f"; {bad.group(1)} non-2xx" if bad else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--sse-clients", type=int, default=50)
    ap.add_argument("--sse-seconds", type=float, default=10)
    ap.add_argument("--python-client", action="store_true", help="use a Python client even when wrk is installed")
    ap.add_argument("--client", nargs="+", choices=("raw", "httpx"), default=["raw"],
                    help="the Python client(s), each in turn (default raw)")
    ap.add_argument("--paths", nargs="+", default=["/", "/api/servers"])
    ap.add_argument("--repeat", type=int, default=1, help="runs per path; more than one prints the medians")
    ap.add_argument("--etag", action="store_true", help="send If-None-Match with the last ETag (Python clients)")
    ap.add_argument("--profile", metavar="FILE", help="run the gateway under cProfile, stats to FILE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="web-load-") as tmp:
        proc, data = start_gateway(Path(tmp), args.servers, args.profile)
        try:
            url = (data / "gateway.url").read_text().strip()
            cookies, csrf = sign_in(url)
            wait_running(url, cookies, args.servers)
            print(f"{args.servers} servers running; {os.cpu_count()} CPUs; client and gateway on one machine")
            gw = psutil.Process(proc.pid)
            for path in args.paths:
                if shutil.which("wrk") and not args.python_client:
                    run_wrk(url, cookies, args.clients, args.seconds, path)
                else:
                    for client in args.client:
                        load_runs(args, url, cookies, gw, path, client)
            if not args.sse_clients:
                return
            idle, busy, n = asyncio.run(sse_clients(url, cookies, args.sse_clients, args.sse_seconds, gw, csrf))
            print(f"SSE x{args.sse_clients}: gateway CPU {idle:.1f} % idle, {busy:.1f} % with a restart every"
                  f" second ({n} messages received)")
        except BaseException:
            print("the gateway's output, last lines:\n" + "".join((Path(tmp) / "out.log").read_text().splitlines(True)[-80:]))
            raise
        finally:
            stop_process(proc, 120)


if __name__ == "__main__":
    main()
