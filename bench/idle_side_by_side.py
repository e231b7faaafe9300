"""Idle cost of the gateway, supervisord and pm2 measured side by side: in each round every
manager runs its N servers of bench/tiny_http.py at the same time, and the CPU seconds and
wake-ups (voluntary context switches) of each daemon are read over the same idle window.
Rounds are repeated (a fresh start of every manager each time) and the median is reported,
with each ratio to the gateway taken from the same sitting. Not a test: it prints figures, and
writes its table into bench/README.md.

Side by side rather than one after another: pm2's own idle moves several times over between
runs, and one sitting with one window for all is the fairest comparison this machine allows.
The gateway runs with its health checks on (a TCP check of every port every 10 s, the
default); neither peer checks anything.

    python bench/idle_side_by_side.py --n 20 100 --rounds 3 --idle 120
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

import vs_peers as vp  # bench/ is on sys.path when run as a script


def ctx_switches(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.num_ctx_switches().voluntary
        except psutil.NoSuchProcess:
            pass
    return total


def one_round(ns: list[int], peers: list[str], args: argparse.Namespace, root: Path) -> dict[tuple[str, int], dict[str, float]]:
    """Start every (peer, N), wait until all answer, leave them alone for --quiet seconds, then
    read each daemon's CPU and wake-ups over the same --idle window."""
    managers: dict[tuple[str, int], vp.Manager] = {}
    try:
        for n in ns:
            for peer in peers:
                m = vp.make(peer, root / f"{peer}-{n}", args.dsn)
                ports = vp.free_ports(n)
                m.configure({f"s{i:03d}": p for i, p in enumerate(ports)})
                m.launch()
                vp.wait_all_answer(ports, 120)
                m.ready()
                vp.REG.track(m.daemon_pid(), f"{peer} daemon")
                m.pids()  # the children, so that the final sweep knows them
                managers[(peer, n)] = m
        time.sleep(args.quiet)
        daemons = {key: [psutil.Process(m.daemon_pid())] for key, m in managers.items()}  # type: ignore[arg-type]
        extras = {key: m.extra_procs() for key, m in managers.items()}
        c0 = {key: vp.cpu_seconds(d) for key, d in daemons.items()}
        w0 = {key: ctx_switches(d) for key, d in daemons.items()}
        e0 = {key: {k: vp.cpu_seconds(v) for k, v in ex.items()} for key, ex in extras.items()}
        time.sleep(args.idle)
        out: dict[tuple[str, int], dict[str, float]] = {}
        for key, d in daemons.items():
            out[key] = {"cpu_s": vp.cpu_seconds(d) - c0[key], "wakeups_s": (ctx_switches(d) - w0[key]) / args.idle,
                        "rss_mb": vp.rss_mb(d)}
            for k, procs in extras[key].items():
                out[key][f"{k} cpu_s"] = vp.cpu_seconds(procs) - e0[key][k]
        return out
    finally:
        for m in managers.values():  # each stops its own children; then whatever of ours is left ends by pid
            try:
                m.shutdown()
            except Exception as exc:  # noqa: BLE001
                print(f"  ({m.name}: shutdown failed: {exc})")
        vp.sweep("after the round")


def table(rounds: list[dict[tuple[str, int], dict[str, float]]], ns: list[int], peers: list[str]) -> str:
    def med(peer: str, n: int, key: str) -> float:
        return statistics.median(r[(peer, n)][key] for r in rounds)

    def each(peer: str, n: int, key: str, digits: int) -> str:
        return " / ".join(f"{r[(peer, n)][key]:.{digits}f}" for r in rounds)

    head = "| servers | figure | " + " | ".join(peers) + " | gateway ÷ lowest peer |"
    lines = [head, "|" + "---|" * (len(peers) + 3)]
    for n in ns:
        for key, label, digits in (("cpu_s", "CPU over the idle window (s), median (each round)", 3),
                                   ("wakeups_s", "wake-ups a second, median (each round)", 1)):
            cells = [f"**{med(p, n, key):.{digits}f}** ({each(p, n, key, digits)})" for p in peers]
            others = [med(p, n, key) for p in peers if p != "gateway"]
            ratio = "-"
            if "gateway" in peers and others and min(others) > 0:
                ratio = f"{med('gateway', n, key) / min(others):.2f}x"
            lines.append(f"| {n} | {label} | " + " | ".join(cells) + f" | {ratio} |")
        for extra in sorted(k for k in rounds[0].get(("gateway", n), {}) if k.endswith(" cpu_s")):
            cells = [f"{med('gateway', n, extra):.3f}" if p == "gateway" else "" for p in peers]
            lines.append(f"| {n} | beside the gateway: {extra.removesuffix(' cpu_s')} CPU (s), median | "
                         + " | ".join(cells) + " | |")
    return "\n".join(lines)


def write_readme(section: str) -> None:
    path = vp.BENCH / "README.md"
    start, end = "<!-- idle_side_by_side:start -->", "<!-- idle_side_by_side:end -->"
    text = path.read_text()
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20, 100], help="numbers of servers (default 20 100)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh starts of every manager (default 3)")
    ap.add_argument("--idle", type=float, default=120.0, help="idle window in seconds (default 120)")
    ap.add_argument("--quiet", type=float, default=32.0,
                    help="seconds with no request before the window (the gateway's LOOKING_FOR is 30)")
    ap.add_argument("--peers", nargs="+", default=list(vp.PEER_NAMES), choices=vp.PEER_NAMES)
    ap.add_argument("--dsn", default=os.environ.get("GATEWAY_DSN"),
                    help="PostgreSQL for the gateway (a fresh schema per run); default: embedded")
    ap.add_argument("--gateway-rev", default="HEAD", help="git revision of the gateway, or 'worktree'")
    ap.add_argument("--no-readme", action="store_true", help="do not write bench/README.md")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, vp._interrupt)
    versions = vp.ensure_peers()
    root = Path(tempfile.mkdtemp(prefix="gw-idle-sbs-"))
    src = vp.gateway_source(args.gateway_rev, root)
    print(f"machine: {os.cpu_count()} cores; gateway {src}; supervisord {versions['supervisord']}; "
          f"pm2 {versions['pm2']} (node {versions['node']})", flush=True)
    rounds: list[dict[tuple[str, int], dict[str, float]]] = []
    try:
        for i in range(args.rounds):
            here = root / f"round{i + 1}"
            here.mkdir()
            r = one_round(args.n, args.peers, args, here)
            rounds.append(r)
            print(f"round {i + 1}: " + "; ".join(f"{p} N={n}: {v['cpu_s']:.3f} s, {v['wakeups_s']:.1f}/s"
                                                  for (p, n), v in sorted(r.items(), key=lambda kv: (kv[0][1], kv[0][0]))),
                  flush=True)
    finally:
        left = vp.sweep("final")
        for p in vp.unrecorded_leftovers(vp.OUR_PORTS):
            left.append(f"unrecorded child pid {p.pid}")
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(root, ignore_errors=True)
    tbl = table(rounds, args.n, args.peers)
    print()
    print(tbl)
    print("\nleft running at the end:", ", ".join(left) if left else "nothing")
    if not args.no_readme:
        cmd = "python bench/idle_side_by_side.py " + " ".join(sys.argv[1:])
        load = os.getloadavg()
        write_readme(
            "## At rest, side by side (`bench/idle_side_by_side.py`)\n\n"
            f"- {_dt.date.today().isoformat()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"supervisord {versions['supervisord']}, pm2 {versions['pm2']} (node {versions['node']}), "
            f"omen-gateway {src}; load average at the end {load[0]:.1f}.\n"
            f"- Command: `{cmd.strip()}`. In each round all managers run at once, and each daemon's CPU "
            f"and wake-ups (voluntary context switches) are read over the same {args.idle:g} s window after "
            f"{args.quiet:g} s with no request. The gateway checks every port every 10 s; the peers check "
            "nothing.\n\n" + tbl + "\n")


if __name__ == "__main__":
    main()
