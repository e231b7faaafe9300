"""Load on the web page: the overview with N servers under C concurrent clients for S seconds
(requests/s, p50/p99 latency), then K server-sent-event clients connected (gateway CPU while
idle and while servers change).

    .venv/bin/python bench/web_load.py                     # 100 servers, 50 clients, 20 s, 50 SSE
    .venv/bin/python bench/web_load.py --servers 20 --seconds 5 --sse-clients 10

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


def start_gateway(base: Path, servers: int) -> tuple[subprocess.Popen[bytes], Path]:
    config, data = base / "gateway.d", base / "data"
    config.mkdir()
    for i in range(servers):
        (config / f"s{i:03d}.toml").write_text(
            f'command = ["{sys.executable}", "{REPO / "bench" / "tiny_http.py"}", "{{port}}"]\nport = "auto"\n'
            f'description = "bench server {i}"\ngroup = "g{i % 5}"\ntags = ["bench"]\n')
    env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(config), "--data-dir",
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


async def load(url: str, cookies: dict[str, str], clients: int, seconds: float, path: str) -> list[float]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, trust_env=False, cookies=cookies, limits=limits, timeout=30) as http:
        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                r = await http.get(path)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
        await asyncio.gather(*(worker() for _ in range(clients)))
    if errors:
        print(f"  {errors} responses were not 200")
    return latencies


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


def report(name: str, latencies: list[float], seconds: float) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"{name}: {len(latencies)} requests in {seconds:.0f} s = {len(latencies) / seconds:.0f} req/s;"
          f" p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--sse-clients", type=int, default=50)
    ap.add_argument("--sse-seconds", type=float, default=10)
    ap.add_argument("--python-client", action="store_true", help="use httpx even when wrk is installed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="web-load-") as tmp:
        proc, data = start_gateway(Path(tmp), args.servers)
        try:
            url = (data / "gateway.url").read_text().strip()
            cookies, csrf = sign_in(url)
            wait_running(url, cookies, args.servers)
            print(f"{args.servers} servers running; {os.cpu_count()} CPUs; client and gateway on one machine")
            for path in ("/", "/api/servers"):
                if shutil.which("wrk") and not args.python_client:
                    run_wrk(url, cookies, args.clients, args.seconds, path)
                else:
                    lat = asyncio.run(load(url, cookies, args.clients, args.seconds, path))
                    report(f"GET {path} x{args.clients} clients (httpx)", lat, args.seconds)
            gw = psutil.Process(proc.pid)
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
