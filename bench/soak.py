"""A compressed soak: N servers under chaos for a few minutes, then the figures that say
whether the engine keeps its promises. Prints figures; asserts nothing.

Chaos, at random, about every `--every` seconds: kill -9 of a server's process, an owner's
command (stop / start / restart over the local API), an edit of a file (a new env value:
a restart; a description: none), and a few times in the run a kill -9 of the embedded
PostgreSQL and one kill -9 of the gateway itself (started again at once).

Figures: events lost (gaps in each gateway run's `seq`), kills without their `exited`
event, processes left behind after the final stop, zombies seen under the gateway, and the
gateway's RSS, open files and threads as a slope per hour (least squares after a warm-up).

    python bench/soak.py --minutes 5 --servers 15
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

from benchlib import CHILD, REPO, answers, free_ports, stop_process

sys.path.insert(0, str(REPO))
from reconciler.client import ApiError, Client, NotRunning  # noqa: E402
from reconciler.store.embedded import EmbeddedPostgres  # noqa: E402

SAMPLE_EVERY = 5.0
WARMUP = 30.0


def server_file(port: int, n: int) -> str:
    return (f'command = ["python", "{CHILD}", "{port}"]\nport = {port}\ndescription = "v{n}"\n'
            f'env = {{ N = "{n}" }}\n[restart]\nbackoff_start = "200ms"\nbackoff_max = "2s"\n')


def start_gateway(config: Path, data: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, GATEWAY_INTERNET_CHECK="off")
    env.pop("GATEWAY_DSN", None)
    (data / "gateway.url").unlink(missing_ok=True)
    out = open(data.parent / "gateway-stdout.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(config), "--data-dir",
                             str(data), "--listen", "127.0.0.1:0"], cwd=REPO, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while not (data / "gateway.url").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the gateway did not start; see {data.parent / 'gateway-stdout.log'}")
        time.sleep(0.05)
    return proc


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    points = [(t, v) for t, v in samples if t >= WARMUP] or samples
    if len(points) < 2:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    mv = sum(v for _, v in points) / len(points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in points) / den * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--servers", type=int, default=15)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between chaos steps")
    parser.add_argument("--pg-kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    config, data = home / "gateway.d", home / "data"
    config.mkdir()
    data.mkdir()
    ports = free_ports(args.servers)
    names = [f"s{i:02d}" for i in range(args.servers)]
    version = dict.fromkeys(names, 0)
    for name, port in zip(names, ports):
        (config / f"{name}.toml").write_text(server_file(port, 0))
    duration = args.minutes * 60
    counts = dict.fromkeys(["child kill -9", "owner command", "file edit", "database kill -9", "gateway kill -9"], 0)
    killed: list[int] = []
    seen_pids: set[int] = set()
    runs: list[dict[str, list[tuple[float, float]]]] = [{"rss": [], "fds": [], "threads": []}]
    zombies = 0
    pg_kill_at = sorted(rnd.uniform(0.15, 0.85) * duration for _ in range(args.pg_kills))
    gw_kill_at = 0.5 * duration
    proc = start_gateway(config, data)
    started = last_sample = time.monotonic()
    try:
        while (now := time.monotonic()) - started < duration:
            elapsed = now - started
            try:
                status = {s["name"]: s for s in Client(data, timeout=30).status()["servers"]}
            except (NotRunning, ApiError):
                status = {}
            seen_pids.update(s["pid"] for s in status.values() if s.get("pid"))
            if pg_kill_at and elapsed >= pg_kill_at[0]:
                pg_kill_at.pop(0)
                pid = EmbeddedPostgres(data).pid
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    counts["database kill -9"] += 1
            elif gw_kill_at and elapsed >= gw_kill_at:
                gw_kill_at = 0
                seen_pids.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
                proc.kill()
                proc.wait()
                counts["gateway kill -9"] += 1
                proc = start_gateway(config, data)
                runs.append({"rss": [], "fds": [], "threads": []})
            else:
                what = rnd.random()
                name = rnd.choice(names)
                pid = status.get(name, {}).get("pid")
                if what < 0.45 and pid and status[name]["phase"] == "running":
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    counts["child kill -9"] += 1
                elif what < 0.7:
                    verb = rnd.choice(["stop", "start", "restart"])
                    try:
                        Client(data, timeout=30).control(verb, [name], None, False, 0)
                        counts["owner command"] += 1
                    except (NotRunning, ApiError):
                        pass
                else:
                    version[name] += 1
                    text = server_file(ports[names.index(name)], version[name])
                    if rnd.random() < 0.5:  # description only: no restart
                        text = text.replace(f'N = "{version[name]}"', f'N = "{version[name] - 1}"')
                    tmp = config / f".{name}.tmp"
                    tmp.write_text(text)
                    os.replace(tmp, config / f"{name}.toml")
                    counts["file edit"] += 1
            if now - last_sample >= SAMPLE_EVERY:
                last_sample = now
                try:
                    gw, samples = psutil.Process(proc.pid), runs[-1]
                    samples["rss"].append((elapsed, gw.memory_info().rss / 1e6))
                    samples["fds"].append((elapsed, gw.num_fds()))
                    samples["threads"].append((elapsed, gw.num_threads()))
                    zombies = max(zombies, sum(1 for c in gw.children() if c.status() == psutil.STATUS_ZOMBIE))
                except psutil.Error:
                    pass
            time.sleep(args.every)
        # settle: everyone the owner did not stop is running again
        Client(data, timeout=60).control("start", [], None, True, 60)
        settle = time.monotonic()
        while time.monotonic() - settle < 30 and not all(answers(p) for p in ports):
            time.sleep(0.2)
        answering = sum(answers(p) for p in ports)
        seen_pids.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
    finally:
        stop_process(proc)
    left = [pid for pid in seen_pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    pg = EmbeddedPostgres(data)
    dsn = pg.start()
    with psycopg.connect(dsn, options="-c search_path=gateway") as conn:
        rows = conn.execute("SELECT seq, kind, to_phase, detail FROM events ORDER BY seq").fetchall()
    pg.stop()
    seqs = [r[0] for r in rows]
    lost = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]) if 1 < b - a < 1_000_000)  # a new run starts far on
    signal9 = sum(1 for r in rows if r[2] in ("exited", "stopped") and "signal 9" in str((r[3] or {}).get("detail", "")))
    print(f"soak: {args.servers} servers, {args.minutes:g} min, seed {args.seed}, data {home}")
    print("chaos: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"events recorded: {len(rows)}; lost (seq gaps): {lost}")
    print(f"child kill -9s: {len(killed)}; exits recorded as killed by signal 9: {signal9} "
          f"(a kill while the gateway was down is seen as a failed adoption instead)")
    print(f"servers answering after the settle: {answering}/{len(ports)}")
    print(f"processes left after the final stop: {len(left)} {left[:10]}")
    print(f"zombies under the gateway (most at once): {zombies}")
    for number, samples in enumerate(runs, 1):
        for key, unit in (("rss", "MB"), ("fds", "fds"), ("threads", "threads")):
            values = [v for _, v in samples[key]]
            if len(values) > 1:
                start = samples[key][0][0]
                shifted = [(t - start, v) for t, v in samples[key]]
                print(f"gateway run {number}: {key} {values[0]:.1f} -> {values[-1]:.1f} {unit}; slope "
                      f"{slope_per_hour(shifted):+.2f} {unit}/h (least squares after a {WARMUP:.0f} s warm-up)")
    for pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
