"""The tunnel as one more supervised server.

`build` turns a `LoadResult` into the ingress rules (a server whose ``[domain]`` is invalid
gets a config error naming the key; the others keep their routes), the config.yml text and
the synthesized ``cloudflared`` `ServerSpec`: ``cloudflared tunnel --config FILE --metrics
127.0.0.1:{port} run``, checked by GET /ready on that port. The hash of the rendered config is
in the spec's env (``GATEWAY_INGRESS_HASH``), so a changed config changes the spec's runtime
hash and the loop restarts the connector: a restart, not a two-connector handover.

`with_tunnel` is the loop's one hook: build, write config.yml if it changed, merge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from reconciler.config import ConfigError, LoadResult, _line_of
from reconciler.spec import HttpHealth, RestartSpec, ServerSpec, StopSpec
from reconciler.spec import format_duration as fd
from reconciler.tunnel import handover, locate
from reconciler.tunnel.ingress import (
    IngressError,
    Rule,
    check_dns_name,
    check_hostname,
    check_origin,
    check_path,
    check_service,
    ordered,
    render,
)
from reconciler.tunnel.settings import TunnelSettings, parse

if TYPE_CHECKING:
    from reconciler.loop import Reconciler

RESERVED = "cloudflared"  # the synthesized server's name; a user file with it is refused


@dataclass(frozen=True)
class TunnelPlan:
    settings: TunnelSettings | None = None
    executable: Path | None = None
    missing: str | None = None  # why there is no connector (in words, with how to fix it)
    rules: list[Rule] = field(default_factory=list)
    text: str | None = None
    config_path: Path | None = None
    errors: list[ConfigError] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # servers whose auto port is not known yet
    spec: ServerSpec | None = None
    written: bool = False  # config.yml changed on this load


def _error(files: Mapping[str, str], name: str, key: str, message: str) -> ConfigError:
    path = files.get(name, name)
    return ConfigError(path, _line_of(path, ("domain", key)) if os.path.exists(path) else None, None,
                       f"domain.{key}", message)


def routes(specs: Mapping[str, ServerSpec], files: Mapping[str, str], ports: Mapping[str, int],
           skip: frozenset[str] = frozenset()) -> tuple[list[Rule], list[ConfigError], list[str]]:
    """The ingress rules of every enabled server with a domain, ordered, catch-all last."""
    errors: list[ConfigError] = []
    pending: list[str] = []
    candidates: list[Rule] = []
    for name, spec in sorted(specs.items()):
        dom = spec.domain
        if dom is None or not spec.enabled or name in skip:
            continue
        stage = "service"
        try:  # cloudflared's order: the service, then the hostname; then our own checks
            if dom.service is not None:
                check_service(dom.service)
            stage = "hostname"
            check_hostname(dom.hostname, 0, 2, dom.path or "")  # port, wildcard; "*" alone is a catch-all
            check_dns_name(dom.hostname)
            stage = "origin"
            check_origin(dom.origin)
        except IngressError as exc:
            errors.append(_error(files, name, stage, str(exc)))
            continue
        port = spec.port if isinstance(spec.port, int) else ports.get(name)
        if dom.service is None and spec.port is None:
            errors.append(_error(files, name, "service", "this server has no port: set `port` in the file, "
                                 "or `service` here (e.g. \"http://127.0.0.1:8080\")"))
            continue
        if dom.service is None and port is None:
            pending.append(name)  # port = "auto", not handed out yet: routed on the next load
            continue
        rule = Rule(dom.hostname, dom.path or "", dom.service or f"http://127.0.0.1:{port}", dom.origin, name)
        twin = next((r for r in candidates if (r.hostname, r.path) == (rule.hostname, rule.path)), None)
        if twin is not None:
            what = rule.hostname + (f" with path {rule.path!r}" if rule.path else "")
            errors.append(_error(files, name, "hostname", f"{what} is already routed to {twin.server} "
                                 f"({files.get(twin.server or '', twin.server)}); cloudflared would only "
                                 "ever use the first rule"))
            continue
        candidates.append(rule)
    # the path is checked in its final place, so "Rule #N" is the number cloudflared would print
    while True:
        rules = ordered(candidates)
        bad = None
        for index, rule in enumerate(rules[:-1]):
            if rule.path:
                try:
                    check_path(rule.path, index)
                except IngressError as exc:
                    bad = (rule, str(exc))
                    break
        if bad is None:
            return rules, errors, pending
        errors.append(_error(files, bad[0].server or "", "path", bad[1]))
        candidates.remove(bad[0])


def ingress_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def connector_spec(settings: TunnelSettings, executable: Path, config_path: Path, text: str) -> ServerSpec:
    return ServerSpec(
        name=RESERVED,
        command=[str(executable), "tunnel", "--config", str(config_path), "--metrics", "127.0.0.1:{port}", "run"],
        port=settings.metrics_port,
        env={"GATEWAY_INGRESS_HASH": ingress_hash(text)},
        description="Cloudflare Tunnel connector (managed by the gateway from [tunnel] in gateway.toml)",
        group="tunnel",
        health=HttpHealth(type="http", path="/ready", interval=fd(settings.check_interval), timeout="5s",
                          failures=min(100, settings.health_failures()), start_period=fd(settings.start_period),
                          needs_internet=True),
        restart=RestartSpec(policy="always", backoff_start="2s", backoff_max="1m"),
        stop=StopSpec(signal="TERM", timeout="35s"),  # cloudflared drains for up to --grace-period (30 s)
    )


def build(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int],
          environ: Mapping[str, str] | None = None) -> TunnelPlan:
    """Everything the tunnel needs from one load of the folder (reads only: credentials, PATH)."""
    parsed = parse(result.settings.tunnel, config_dir)
    if parsed is None:
        return TunnelPlan(missing="not configured: add a [tunnel] table to gateway.toml")
    if isinstance(parsed, list):
        return TunnelPlan(errors=parsed, missing="[tunnel] in gateway.toml has errors")
    settings = parsed
    errors: list[ConfigError] = []
    gw_path = str(Path(config_dir) / "gateway.toml")
    skip: frozenset[str] = frozenset()
    if RESERVED in result.specs:
        skip = frozenset({RESERVED})
        path = result.files.get(RESERVED, RESERVED)
        errors.append(ConfigError(path, None, None, None, f"the name {RESERVED!r} is reserved for the tunnel "
                                  "connector the gateway runs from [tunnel]; rename this file"))
    if settings.credentials_file and not Path(settings.credentials_file).expanduser().is_file():
        errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "credentials_file")), None,
                                  "tunnel.credentials_file", f"no such file: {settings.credentials_file} "
                                  "(`cloudflared tunnel create NAME` writes ~/.cloudflared/UUID.json)"))
    if isinstance(settings.metrics_port, int):
        holder = next((n for n, s in result.specs.items() if s.port == settings.metrics_port and n != RESERVED), None)
        if holder:
            errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "metrics_port")), None,
                                      "tunnel.metrics_port", f"{settings.metrics_port} is already used by {holder}"))
    rules, route_errors, pending = routes(result.specs, result.files, ports, skip)
    errors.extend(route_errors)
    text = render(settings.id, settings.credentials_file, rules, settings.origin)
    config_path = settings.config_path(data_dir)
    executable = locate.find(settings.cloudflared, environ)
    plan = TunnelPlan(settings=settings, executable=executable, rules=rules, text=text, config_path=config_path,
                      errors=errors, pending=pending)
    if executable is None:
        return dataclasses.replace(plan, missing=locate.missing_message(settings.cloudflared))
    if any(e.key == "tunnel.metrics_port" for e in errors):
        return dataclasses.replace(plan, missing="the metrics port is taken (see the config errors)")
    return dataclasses.replace(plan, spec=connector_spec(settings, executable, config_path, text))


def write_config(path: Path, text: str) -> bool:
    """Write config.yml atomically (temp + fsync + rename) when its text changed; the version
    it replaces is kept as config.yml.prev. Returns whether it wrote."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    os.replace(tmp, path)
    return True


def merge(result: LoadResult, plan: TunnelPlan) -> LoadResult:
    specs = {n: s for n, s in result.specs.items() if not (plan.settings and n == RESERVED)}
    if plan.spec is not None:
        specs[RESERVED] = plan.spec
    return dataclasses.replace(result, specs=dict(sorted(specs.items())),
                               errors=(*result.errors, *plan.errors))


def _apply(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int]) -> TunnelPlan:
    plan = build(result, config_dir, data_dir, ports)
    if plan.spec is not None and plan.text is not None and plan.config_path is not None:
        plan = dataclasses.replace(plan, written=write_config(plan.config_path, plan.text))
    return plan


_plans: weakref.WeakKeyDictionary[Any, TunnelPlan] = weakref.WeakKeyDictionary()
_retries: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def plan_of(rt: Any) -> TunnelPlan | None:
    """The tunnel plan of the last load (for the page and `gateway status`)."""
    try:
        return _plans.get(rt)
    except TypeError:  # not a Runtime (e.g. a stand-in in a test)
        return None


async def with_tunnel(rec: Reconciler, result: LoadResult) -> LoadResult:
    """The loop's hook: the loaded folder plus the tunnel connector (when [tunnel] is set)."""
    rt = rec.rt
    plan = await asyncio.to_thread(_apply, result, rec.config_dir, rt.data_dir, dict(rt.ports))
    plan = handover.hold(rec, plan)  # new routes: a second connector first, then the restart
    previous = _plans.get(rt)
    _plans[rt] = plan
    if plan.written:
        rt.event("tunnel_config", RESERVED, f"wrote {plan.config_path}: {len(plan.rules) - 1} routes",
                 actor="config", detail={"path": str(plan.config_path), "hash": ingress_hash(plan.text or ""),
                                         "hostnames": [r.hostname for r in plan.rules[:-1]]})
    if plan.missing and plan.settings and (previous is None or previous.missing != plan.missing):
        rt.event("tunnel_unavailable", RESERVED, plan.missing, actor="config")
    # auto ports are handed out by the first pass after this load: route them on a reload soon
    # after (for a minute at most, e.g. while such a server is held back by a dependency)
    tries = _retries.get(rt, 0) + 1 if previous is not None and previous.pending == plan.pending else 0
    _retries[rt] = tries
    if plan.pending and tries < 60:
        asyncio.get_running_loop().call_later(1.0, rec.mark_config_dirty)
    return merge(result, plan)
