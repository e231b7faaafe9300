"""`gateway` / `python -m reconciler`: parse, call, print. No logic lives here."""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import logging
import logging.handlers
import os
import queue
import sys
from pathlib import Path
from typing import Any, Sequence

from reconciler import __version__
from reconciler.client import ApiError, Client, NotRunning
from reconciler.host.instance import AlreadyRunning, InstanceLock, listen_problem, wait_stopped
from reconciler.ops import cli as ops_cli
from reconciler.platform import aio
from reconciler.platform import current as current_platform
from reconciler.platform.fsutil import server_log
from reconciler.settings import (Settings, SettingsError, default_config_dir, default_data_dir, ensure_private_dir,
                                 peek, resolve)
from reconciler.tunnel import commands as tunnel_cli


SHUTDOWN_WAIT = 120.0  # seconds: every server's stop timeout fits (a hang guard, not a target)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="DIR", help="the server folder (default: $GATEWAY_CONFIG or ./gateway.d)")
    common.add_argument("--data-dir", metavar="DIR", help="database, logs and token (default: $GATEWAY_HOME or "
                        "the user's data folder)")
    parser = argparse.ArgumentParser(prog="gateway", description="Run a handful of servers from one folder.")
    parser.add_argument("--version", action="version", version=f"omen-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="run the gateway (loop + page)")
    run.add_argument("--listen", metavar="HOST:PORT", help="where the page and API listen (default 127.0.0.1:8765)")
    run.add_argument("--keep-servers", action="store_true", help="leave servers running when the gateway stops")
    run.add_argument("--no-browser", action="store_true", help="on first run, do not open the page in a browser")
    run.add_argument("-v", "--verbose", action="store_true")
    st = sub.add_parser("status", parents=[common], help="show every server")
    st.add_argument("--json", action="store_true")
    for verb in ("start", "stop", "restart", "kill", "retry"):
        p = sub.add_parser(verb, parents=[common], help={
            "kill": "force-kill servers (no graceful stop)",
            "retry": "try a change that was rolled back once more"}.get(verb, f"{verb} servers"))
        p.add_argument("names", nargs="*", metavar="NAME")
        p.add_argument("--group", metavar="G")
        p.add_argument("--all", action="store_true")
        p.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the outcome")
        p.add_argument("--json", action="store_true")
    sd = sub.add_parser("shutdown", parents=[common], help="stop the gateway itself (and its servers)")
    sd.add_argument("--keep-servers", action="store_true", help="leave the servers running (an upgrade)")
    lg = sub.add_parser("logs", parents=[common], help="print a server's log")
    lg.add_argument("name")
    lg.add_argument("-n", "--lines", type=int, default=50)
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--grep", metavar="REGEX", help="only the lines matching REGEX")
    tr = sub.add_parser("try", parents=[common], help="run a server file once on a scratch port and say how it went")
    tr.add_argument("file", help="a server's .toml file (saved or not yet in the folder)")
    ck = sub.add_parser("check", parents=[common], help="validate a server folder offline")
    ck.add_argument("dir", nargs="?")
    ev = sub.add_parser("events", parents=[common], help="show recorded transitions")
    ev.add_argument("name", nargs="?")
    ev.add_argument("--since", metavar="ISO-TIME")
    ev.add_argument("--kind")
    ev.add_argument("--limit", type=int, default=50)
    ev.add_argument("--json", action="store_true")
    us = sub.add_parser("user", help="manage who may sign in to the page")
    ua = us.add_subparsers(dest="user_command", required=True).add_parser(
        "add", parents=[common], help="add a user, or set a new password for one")
    ua.add_argument("name")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    ops_cli.add_parsers(sub, common)
    tunnel_cli.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except (NotRunning, SettingsError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 3
    except ApiError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if not current_platform().closed_pipe(exc):
            raise
        # `gateway status | head -1`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 0


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = default_data_dir(args.data_dir)
    if args.no_browser:
        os.environ["GATEWAY_NO_BROWSER"] = "1"  # read by reconciler.platform.desktop
    try:  # one gateway per data folder: before anything touches it (reconciler/host/instance.py)
        lock = InstanceLock(data_dir).acquire()
    except AlreadyRunning as exc:
        print(f"gateway run: {exc}", file=sys.stderr)
        return 4
    ran = False
    pg = None
    try:
        config_dir = default_config_dir(args.config)
        if not config_dir.is_dir():
            print(f"gateway: config folder {config_dir} does not exist", file=sys.stderr)
            return 2
        dsn, listen = peek(config_dir, args.listen)
        early = Settings(config_dir, data_dir, dsn, listen)
        early.tunnel_host_port  # noqa: B018 - a bad GATEWAY_TUNNEL_LISTEN fails here, before any server starts
        if problem := listen_problem(*early.host_port):  # before anything is touched, as after the read
            print(f"gateway run: {problem}", file=sys.stderr)
            return 2
        if dsn is None:
            ensure_private_dir(data_dir)
            pg = _Booting(data_dir)  # it boots while the rest is imported and the settings read
        settings = resolve(args.config, args.data_dir, listen=args.listen)
        if settings.listen != listen and (problem := listen_problem(*settings.host_port)):
            print(f"gateway run: {problem}", file=sys.stderr)
            return 2
        if settings.dsn is not None and pg is not None:  # not wanted after all: stop it again
            pg.stop_when_started()
            pg = None
        if lock.unclean is not None:
            print(f"omen-gateway: {lock.unclean.describe()}", flush=True)
        ensure_private_dir(settings.data_dir)
        writer = _setup_logging(settings.data_dir / "gateway.log", args.verbose)
        try:
            ran = True
            return _run_daemon(settings, args.keep_servers, pg)
        finally:
            writer.stop()  # every record written before we exit
    finally:
        if pg is not None and not ran:  # a refusal after the boot began: leave nothing running
            pg.stop_when_started()
        lock.release(ran)  # not reached when killed: the next start then reports it


class _Booting:
    """The embedded PostgreSQL, started in a thread of its own at the very start of `run`."""

    def __init__(self, data_dir: Path) -> None:
        from reconciler.store.embedded import EmbeddedPostgres

        self.pg = EmbeddedPostgres(data_dir)
        starter = concurrent.futures.ThreadPoolExecutor(1, "database-start")
        self.starting = starter.submit(self.pg.start)
        starter.shutdown(wait=False)  # its thread ends with the start: no idle thread kept for ever

    def stop_when_started(self) -> None:
        try:
            self.starting.result()
        except Exception:  # noqa: BLE001 - it did not start: nothing to stop
            return
        self.pg.stop()


def _run_daemon(settings: Settings, keep_servers: bool, booting: _Booting | None) -> int:
    from reconciler.daemon import Daemon

    if settings.dsn is None and booting is None:
        booting = _Booting(settings.data_dir)
    daemon = Daemon(settings, keep_servers=keep_servers, pg=booting.pg if booting else None,
                    pg_starting=booting.starting if booting else None)
    try:
        aio.run(daemon.serve())  # its end too (the loop's own clean-up) is under the stop's watchdog
    finally:
        if daemon.watchdog is not None:
            daemon.watchdog.cancel()
    return 1 if daemon.crashed else 0


class OneLineQueue(logging.handlers.QueueHandler):
    """Puts records on the writer's queue with their message made one line: control
    characters in it (a line break in a user name a stranger typed) are escaped, so nobody can
    forge a line of gateway.log. A traceback, which the writer's formatter adds after the
    message, keeps its lines."""

    ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 127, 0x85) if c != 9} | {
        10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}  # what str.splitlines() splits at

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)  # the queue is in this process: the exception stays for the writer
        record.msg, record.args = record.getMessage().translate(self.ESCAPES), None
        return record


def _setup_logging(path: Path, verbose: bool) -> logging.handlers.QueueListener:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    from reconciler.ops.logs import LogSettings

    rot = LogSettings.from_env()
    to_file = logging.handlers.RotatingFileHandler(path, maxBytes=rot.max_bytes, backupCount=rot.keep,
                                                   encoding="utf-8")
    to_file.setFormatter(fmt)
    to_err = logging.StreamHandler()
    to_err.setFormatter(fmt)
    to_err.setLevel(logging.DEBUG if verbose else logging.WARNING)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The event loop only puts records on a queue; a thread formats and writes them (a file
    # write, a flush and a rollover check per record cost the loop ~1 ms each at a busy start).
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root.addHandler(OneLineQueue(records))
    writer = logging.handlers.QueueListener(records, to_file, to_err, respect_handler_level=True)
    writer.start()
    return writer


def _client(args: argparse.Namespace) -> Client:
    return Client(default_data_dir(args.data_dir))


def cmd_status(args: argparse.Namespace) -> int:
    data = _client(args).status()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    gw = data["gateway"]
    db = gw["database"] + ("" if gw["database_ok"] else
                           f" - UNREACHABLE since {gw['database_unreachable_since']}, {gw['pending_writes']} writes pending")
    print(f"database: {db}")
    for err in gw["config_errors"]:
        print(f"config error: {err}")
    host = gw.get("host") or {}
    if host:
        print("host: " + _host_line(host))
    tunnel = gw.get("tunnel") or {}
    if tunnel.get("state") not in (None, "not configured"):
        print(f"tunnel: {tunnel['state']}" + (f" - {tunnel['summary']}" if tunnel.get("summary") else ""))
    rows: list[tuple[str, ...]] = [("NAME", "STATUS", "PID", "PORT", "UPTIME", "RESTARTS", "HEALTH", "LATENCY", "UP 24H/7D/30D/MONTH",
             "CPU", "MEM", "LAST EXIT", "WHY")]
    for s in data["servers"]:
        up = s.get("uptime_pct") or {}
        rows.append((s["name"], s["status"], str(s["pid"] or "-"), str(s["port"] or "-"), _duration(s["uptime_s"]),
                     str(s["restarts"]), s.get("health") or "-",
                     "-" if s["latency_ms"] is None else f"{s['latency_ms']:.1f}ms",
                     "/".join(_pct(up.get(k)) for k in ("24h", "7d", "30d", "month")),
                     "-" if s.get("cpu_percent") is None else f"{s['cpu_percent']:.1f}%",
                     _mb(s.get("rss_bytes")), s["last_exit"] or "-", s["reason"] or "-"))
    _table(rows)
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%" if value < 100 else "100%"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1_048_576:.0f}MB"


def _host_line(host: dict[str, Any]) -> str:
    parts = [f"cpu {host.get('cpu_percent', 0):.0f}%", f"memory {host.get('mem_percent', 0):.0f}%",
             f"disk {host.get('disk_percent', 0):.0f}% used"]
    if host.get("battery_percent") is not None:
        parts.append(f"battery {host['battery_percent']:.0f}%" + (" on AC" if host.get("on_ac") else " on battery"))
    internet = host.get("internet_ok")
    parts.append("internet " + ("not checked" if internet is None else "ok" if internet else "UNREACHABLE"))
    return ", ".join(parts)


def _control(args: argparse.Namespace) -> int:
    if not (args.names or args.group or args.all):
        print(f"gateway {args.command}: name a server, or use --group G or --all", file=sys.stderr)
        return 2
    data = _client(args).control(args.command, args.names, args.group, args.all, 0 if args.no_wait else 60)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    failed = 0
    for s in data["servers"]:
        why = s["reason"] or ""
        print(f"{s['name']}: {why if why.startswith(s['status']) else s['status'] + (f' ({why})' if why else '')}")
        ok = s["phase"] == "stopped" if args.command in ("stop", "kill") else s["phase"] in ("running", "starting")
        failed += 0 if ok or args.no_wait else 1
    return 1 if failed else 0


def cmd_shutdown(args: argparse.Namespace) -> int:
    data_dir = default_data_dir(args.data_dir)
    Client(data_dir).shutdown(args.keep_servers)
    if not wait_stopped(data_dir, SHUTDOWN_WAIT):
        print(f"gateway shutdown: still stopping after {SHUTDOWN_WAIT:.0f} s; see {data_dir / 'gateway.log'}",
              file=sys.stderr)
        return 1
    print("omen-gateway stopped; " + ("your servers keep running" if args.keep_servers else "your servers are stopped"))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from reconciler.ops.logs import cmd_logs as logs

    return logs(args, default_data_dir(args.data_dir))


def cmd_check(args: argparse.Namespace) -> int:
    from reconciler.engine.config import load_dir

    folder = Path(args.dir or args.config or "gateway.d")
    if not folder.is_dir():
        print(f"gateway check: {folder} is not a folder", file=sys.stderr)
        return 2
    result = load_dir(folder)
    data_dir = default_data_dir(getattr(args, "data_dir", None))
    errors = [*result.errors, *tunnel_cli.domain_errors(result, folder, data_dir)]  # [tunnel], every [domain] too
    for err in sorted(errors, key=lambda e: (e.path, e.line or 0, e.column or 0, e.key or "")):
        print(err)
    print(f"{len(result.specs)} servers ok, {len(errors)} errors in {folder}")
    return 1 if errors else 0


def cmd_try(args: argparse.Namespace) -> int:
    from reconciler.engine.config import load_file
    from reconciler.engine.trial import try_spec

    path = Path(args.file)
    loaded = load_file(path)
    if isinstance(loaded, list):
        for err in loaded:
            print(err)
        return 2
    config_dir = Path(args.config) if args.config else path.resolve().parent
    log = server_log(default_data_dir(args.data_dir), f"try-{loaded.name}")
    print(f"trying {loaded.name} (on a scratch port, for up to its start period; the running version is untouched)")
    verdict = aio.run(try_spec(loaded, config_dir, log, lambda line: print(f"  | {line}", flush=True)))
    print(("ok: " if verdict.ok else "failed: ") + verdict.text)
    return 0 if verdict.ok else 1


def cmd_events(args: argparse.Namespace) -> int:
    # one more than asked: whether there are more to say so
    rows = _client(args).events(server=args.name, since=args.since, kind=args.kind, limit=args.limit + 1)
    more, rows = len(rows) > args.limit, rows[-args.limit:]  # the newest, oldest first
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for e in rows:
        move = f"{e['from_phase'] or '-'} -> {e['to_phase'] or '-'}" if e.get("to_phase") else e["kind"]
        print(f"{e['at'][:19]}  {e['server'] or 'gateway':<16} {move:<22} {e['reason']}  [{e['actor']}]")
    if more:
        print(f"(more events: only the newest {args.limit} are shown; --limit N shows more, --since TIME fewer)",
              file=sys.stderr)
    return 0


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 \
        else f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


def cmd_user(args: argparse.Namespace) -> int:
    import getpass

    from reconciler.settings import resolve
    from webview.useradd import UserError, add_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("gateway user add: the passwords differ", file=sys.stderr)
            return 2
    try:
        print(add_user(resolve(args.config, args.data_dir), args.name, password))
    except UserError as exc:
        print(f"gateway user add: {exc}", file=sys.stderr)
        return 2
    return 0


COMMANDS = {
    "run": cmd_run, "status": cmd_status, "start": _control, "stop": _control, "restart": _control, "kill": _control,
    "retry": _control, "try": cmd_try, "shutdown": cmd_shutdown,
    "logs": cmd_logs, "check": cmd_check, "events": cmd_events, "user": cmd_user, **ops_cli.COMMANDS,
    "tunnel": tunnel_cli.cmd_tunnel,
}
