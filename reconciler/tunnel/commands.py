"""``gateway tunnel status | render | check | dns``: parse, call, print."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from reconciler.client import Client, NotRunning
from reconciler.platform import aio
from reconciler.settings import default_data_dir, resolve

if TYPE_CHECKING:  # the schema and the connector load when a tunnel command runs, not with the CLI
    from reconciler.engine.config import ConfigError, LoadResult
    from reconciler.tunnel.connector import TunnelPlan


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    tp = sub.add_parser("tunnel", help="Cloudflare Tunnel: status, render, check, dns")
    tsub = tp.add_subparsers(dest="tunnel_command", required=True)
    st = tsub.add_parser("status", parents=[common], help="the tunnel's state and routes")
    st.add_argument("--json", action="store_true")
    tsub.add_parser("render", parents=[common], help="print the config.yml the gateway would write")
    tsub.add_parser("check", parents=[common], help="validate [tunnel] and every [domain]; non-zero on errors")
    tsub.add_parser("dns", parents=[common], help="make each hostname a proxied CNAME to the tunnel")
    cn = tsub.add_parser("connect", parents=[common], help="connect Cloudflare with one API token (creates the "
                         "tunnel, writes its credentials, records it in gateway.toml)")
    cn.add_argument("--token-file", help="read the API token from this file (default: asked for)")
    cn.add_argument("--account", help="the account id, when the token reaches several")
    cn.add_argument("--tunnel", help="use this existing tunnel (id or name), or create one with this name")
    cn.add_argument("--alarm", help="also turn on the outside alarm: Cloudflare tells this email address (or "
                    "https:// webhook) when the laptop cannot be reached")
    cn.add_argument("--api-url", default=None, help=argparse.SUPPRESS)


def _live(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        return Client(default_data_dir(args.data_dir)).status()
    except NotRunning:
        return None


def _plan(args: argparse.Namespace) -> TunnelPlan:
    return _load(args)[1]


def _load(args: argparse.Namespace) -> tuple[LoadResult, TunnelPlan]:
    from reconciler.engine.config import load_dir
    from reconciler.tunnel.connector import build

    settings = resolve(args.config, args.data_dir)
    live = _live(args)
    ports = {s["name"]: s["port"] for s in (live or {}).get("servers", []) if s.get("port")}
    result = load_dir(settings.config_dir)
    return result, build(result, settings.config_dir, settings.data_dir, ports)


def domain_errors(result: LoadResult, folder: Path, data_dir: Path | None = None) -> list[ConfigError]:
    """`gateway check DIR`: the [tunnel] table and every [domain], as the daemon would judge
    them (with the installed cloudflared's validator when there is one; against the account's
    domains and the page's addresses the data folder knows), without writing."""
    import tempfile

    from reconciler.core.names import CONNECTOR
    from reconciler.tunnel.connector import build, routes

    with tempfile.TemporaryDirectory(prefix="gateway-check-") as scratch:
        plan = build(result, folder, Path(scratch), {}, facts_dir=data_dir)
    if plan.settings is not None:
        return list(plan.errors)
    return [*plan.errors, *routes(result.specs, result.files, {}, frozenset({CONNECTOR}))[1]]  # no (good) [tunnel]


def cmd_tunnel(args: argparse.Namespace) -> int:
    return {"status": _status, "render": _render, "check": _check, "dns": _dns,
            "connect": _connect}[args.tunnel_command](args)


def _read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        return Path(args.token_file).expanduser().read_text(encoding="utf-8").strip()
    if sys.stdin.isatty():
        import getpass

        from reconciler.tunnel.connect import template_url

        print(f"Create a token with the needed permissions here:\n  {template_url()}", file=sys.stderr)
        return getpass.getpass("Cloudflare API token: ").strip()
    return sys.stdin.readline().strip()


def _connect(args: argparse.Namespace) -> int:
    from reconciler.tunnel.cfapi import DEFAULT_API
    from reconciler.tunnel.cfapi import Client as Cloudflare
    from reconciler.tunnel.connect import ConnectError, connect, set_alarm

    settings = resolve(args.config, args.data_dir)
    try:
        token = _read_token(args)
    except OSError as exc:
        print(f"gateway tunnel connect: cannot read the token: {exc}", file=sys.stderr)
        return 2
    if not token:
        print("gateway tunnel connect: no token given", file=sys.stderr)
        return 2
    api_url = args.api_url or os.environ.get("GATEWAY_CLOUDFLARE_API") or DEFAULT_API

    alarm: list[str] = []

    async def go() -> Any:
        async with Cloudflare(api_url, token) as client:
            done = await connect(client, settings.data_dir, settings.config_dir / "gateway.toml", token=token,
                                 account_id=args.account, tunnel=args.tunnel, api_url=api_url)
            if args.alarm:
                try:
                    alarm.append(await set_alarm(client, settings.data_dir, done.account_id, done.tunnel_id,
                                                 args.alarm))
                except ConnectError as exc:
                    alarm.append(f"The outside alarm is not on: {exc}")
            return done

    try:
        done = aio.run(go())
    except ConnectError as exc:
        print(f"gateway tunnel connect: {exc}", file=sys.stderr)
        for choice in exc.choices:
            print(f"  --account {choice['id']}  ({choice['name']})", file=sys.stderr)
        if exc.detail:
            print(f"  details: {exc.detail}", file=sys.stderr)
        return 1
    verb = "created the tunnel" if done.created else "using the tunnel"
    print(f"connected to {done.account_name}: {verb} {done.tunnel_name} ({done.tunnel_id})")
    print(f"  credentials: {done.credentials_file} (only you can read it)")
    print(f"  recorded in {settings.config_dir / 'gateway.toml'} [tunnel]; the token is kept in {done.token_file}")
    print(f"  domains in this account: {', '.join(done.zones) or 'none (add one in Cloudflare first)'}")
    print("  from now on the gateway keeps the routes and DNS in step with gateway.d")
    for line in alarm:
        print(f"  {line}")
    return 0


def _status(args: argparse.Namespace) -> int:
    live = _live(args)
    if live is not None and "tunnel" in live["gateway"]:
        view = live["gateway"]["tunnel"]
    else:
        from reconciler.tunnel.status import TLS_NOTE

        plan = _plan(args)
        view = {"state": "gateway not running" if plan.spec else ("not configured" if plan.settings is None
                                                                   else "cloudflared missing"),
                "summary": plan.missing or f"would run {plan.executable} with {plan.config_path}",
                "routes": [{"hostname": r.hostname, "path": r.path or None, "service": r.service,
                            "server": r.server} for r in plan.rules[:-1]], "tls": TLS_NOTE}
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"tunnel: {view['state']}: {view['summary']}")
    if view.get("cause"):
        print(f"  why: {view['cause']}" + (f" (since {view['since']})" if view.get("since") else ""))
    for r in view.get("routes", []):
        print(f"  https://{r['hostname']}{' path ' + r['path'] if r['path'] else ''} -> {r['service']}"
              f" ({r['server']})")
    for name in view.get("waiting_for_port", []):
        print(f"  {name}: waiting for its port (port = \"auto\" is handed out when it starts)")
    print(view["tls"])
    return 0


def _report(plan: TunnelPlan) -> None:
    for err in plan.errors:
        print(err, file=sys.stderr)
    for name in plan.pending:
        print(f"{name}: not routed yet: its port is \"auto\" and the gateway has not handed one out", file=sys.stderr)


def _render(args: argparse.Namespace) -> int:
    plan = _plan(args)
    _report(plan)
    if plan.settings is None:
        print(f"gateway tunnel render: {plan.missing}", file=sys.stderr)
        return 1
    sys.stdout.write(plan.text or "")
    return 0


def _check(args: argparse.Namespace) -> int:
    result, plan = _load(args)
    for err in result.errors:  # a server file that does not load has no route: that is an error here too
        print(err, file=sys.stderr)
    _report(plan)
    if plan.settings is None:
        print(f"gateway tunnel check: {plan.missing}", file=sys.stderr)
        return 1
    if plan.missing:
        print(f"warning: {plan.missing}", file=sys.stderr)
    errors = len(result.errors) + len(plan.errors)
    print(f"{len(plan.rules) - 1} routes ok, {errors} errors")
    return 1 if errors else 0


def _dns(args: argparse.Namespace) -> int:
    plan = _plan(args)
    if plan.settings is None:
        print(f"gateway tunnel dns: {plan.missing}", file=sys.stderr)
        return 1
    settings = plan.settings
    uuid = settings.tunnel_uuid()
    token = settings.api_token(os.environ)
    if uuid is None:
        print("gateway tunnel dns: the tunnel's UUID is unknown: set [tunnel] id to the UUID, or credentials_file "
              "to the JSON `cloudflared tunnel create` wrote", file=sys.stderr)
        return 1
    if token is None:
        print(f"gateway tunnel dns: no API token: set ${settings.api_token_env} (or [tunnel] api_token_file) to a "
              "Cloudflare API token with Zone:DNS:Edit", file=sys.stderr)
        return 1
    hostnames = [r.hostname for r in plan.rules[:-1]]
    outcomes = aio.run(_sync(args, settings.api_url, token, uuid, hostnames, settings.zone, plan.hostnames))
    for o in outcomes:
        print(o)
    return 1 if any(o.action in ("conflict", "error") for o in outcomes) else 0


async def _sync(args: argparse.Namespace, api_url: str, token: str, uuid: str, hostnames: list[str],  # noqa: PLR0913
                zone: str | None, keep: tuple[str, ...] = ()) -> list[Any]:
    from reconciler.store import Store
    from reconciler.store.dns_records import Ledger
    from reconciler.store.embedded import EmbeddedPostgres
    from reconciler.tunnel.dns import CloudflareAPI, sync

    settings = resolve(args.config, args.data_dir)
    dsn: str = settings.dsn if settings.dsn else await asyncio.to_thread(EmbeddedPostgres(Path(settings.data_dir)).start)
    store = await Store.connect(dsn, settings.schema)
    api = CloudflareAPI(api_url, token)
    try:
        return await sync(api, Ledger(store.pool), uuid, hostnames, zone, keep=keep)
    finally:
        await api.close()
        await store.close()
