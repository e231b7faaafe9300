"""The tunnel as one more supervised server.

`build` turns a `LoadResult` into the ingress rules (a server whose ``[domain]`` is invalid
gets a config error naming the key; the others keep their routes), the config.yml text and
the synthesized ``cloudflared`` `ServerSpec`: ``cloudflared tunnel --config FILE --metrics
127.0.0.1:{port} run``, checked by GET /ready on that port. The hash of the rendered config is
in the spec's env (``GATEWAY_INGRESS_HASH``), so a changed config changes the spec's runtime
hash; the hook (`hook.with_tunnel`) then restarts the connector through the two-connector
handover (`handover`). The rules come from `routes` (every check, against `routes.Known`:
the account's domains, the page's own hostname and ports, routes cloudflared could not start).

When cloudflared is installed, its own validator screens the candidate (`validate`): a rule it
refuses is left out and named on its server's file (on the key its message is about).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.digits import plain_digits
from reconciler.core.names import CONNECTOR, GATEWAY_FILE
from reconciler.core.spec import HttpHealth, RestartSpec, ServerSpec, StopSpec
from reconciler.core.spec import format_duration as fd
from reconciler.engine.config import ConfigError, LoadResult, _line_of
from reconciler.platform.fsutil import atomic_write
from reconciler.settings import TUNNEL_URL_FILE, URL_FILE
from reconciler.tunnel import locate, validate
from reconciler.tunnel.hostnames import HostnameError, ascii_hostname
from reconciler.tunnel.ingress import Rule, render
from reconciler.tunnel.routes import PAGE, Known, _error, routes, with_ca_pool
from reconciler.tunnel.settings import TunnelSettings, parse

__all__ = ["PAGE", "CONNECTOR", "RESERVED", "Known", "TunnelPlan", "build", "routes"]

RESERVED = CONNECTOR  # the old name, still imported by tunnel/dns_task.py; new code: reconciler.core.names.CONNECTOR
STOP_MARGIN = 5.0  # seconds past the grace period before a stop is forced
SHUTDOWN_DRAIN = 2.0  # seconds requests under way get when the gateway stops (the OS allows a few)


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
    refused: bool = False  # cloudflared refused the candidate as a whole: `text` is the running one
    hostnames: tuple[str, ...] = ()  # every server's domain hostname (ASCII), routed or not: DNS keeps these


def page_route(hostname: str | None, data_dir: Path) -> ServerSpec | None:
    """A stand-in server for the page's own route: `[web] hostname` -> the tunnel door, whose
    address the running page writes to the data folder (not yet there: routed on a reload)."""
    if not hostname:
        return None
    try:
        door = (Path(data_dir) / TUNNEL_URL_FILE).read_text().strip()
    except OSError:
        door = ""
    port = door.rpartition(":")[2] if door else ""
    if not plain_digits(port):  # like a server whose automatic port is not handed out yet: pending
        return ServerSpec(name=PAGE, command=["-"], port="auto", domain={"hostname": hostname})
    return ServerSpec(name=PAGE, command=["-"], port=int(port),
                      domain={"hostname": hostname, "service": f"http://127.0.0.1:{port}"})


def domain_hostnames(specs: Mapping[str, ServerSpec]) -> tuple[str, ...]:
    """The ASCII hostname of every server with a [domain] (enabled or not, routed or not)."""
    out = set()
    for spec in specs.values():
        if spec.domain is not None:
            try:
                out.add(ascii_hostname(spec.domain.hostname))
            except HostnameError:
                continue
    return tuple(sorted(out))


def ingress_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stop_timeout(settings: TunnelSettings) -> float:
    """cloudflared drains for up to its --grace-period once connected: wait that, plus a margin."""
    return settings.grace_period + STOP_MARGIN


def run_argv(settings: TunnelSettings, executable: Path, config_path: Path, metrics: str) -> list[str]:
    """``cloudflared tunnel --config F --metrics ADDR --grace-period G run``: the grace period is
    always passed, so TUNNEL_GRACE_PERIOD in the environment cannot outlast the stop timeout."""
    return [str(executable), "tunnel", "--config", str(config_path), "--metrics", metrics,
            "--grace-period", fd(settings.grace_period), "run"]


def connector_spec(settings: TunnelSettings, executable: Path, config_path: Path, text: str) -> ServerSpec:
    return ServerSpec(
        name=CONNECTOR,
        command=run_argv(settings, executable, config_path, "127.0.0.1:{port}"),
        port=settings.metrics_port,
        env={"GATEWAY_INGRESS_HASH": ingress_hash(text)},
        description="Cloudflare Tunnel connector (managed by the gateway from [tunnel] in gateway.toml)",
        group="tunnel",
        health=HttpHealth(type="http", path="/ready", interval=fd(settings.check_interval), timeout="5s",
                          failures=min(100, settings.health_failures()), start_period=fd(settings.start_period),
                          needs_internet=True),
        restart=RestartSpec(policy="always", backoff_start="2s", backoff_max="1m"),
        stop=StopSpec(signal="TERM", timeout=fd(stop_timeout(settings))),
    )


_KEY_OF = (("invalid regex", "path"), ("invalid address", "service"), ("HTTP status", "service"),
           ("ostname", "hostname"), ("not found in type", "origin"), ("access.", "origin"), ("cert pool", "origin"),
           ("unmarshal", "origin"))
_YAML_KEYS = {"hostname": "hostname", "path": "path", "service": "service", "originRequest": "origin"}


def refused_key(message: str, text: str) -> tuple[str, str]:
    """Which [domain] key cloudflared's refusal is about (its messages name none), and the
    message without the line number of the gateway's candidate file when that line named it."""
    import re

    m = re.search(r"\bline (\d+): (?:field (\w+) not found)?", message)
    lines = text.splitlines()
    if m and 0 < int(m.group(1)) <= len(lines):
        key = _yaml_key(lines, int(m.group(1)) - 1, m.group(2))
        if key:
            return key, re.sub(r"\bline \d+: ", "", message)
    unknown = re.search(r"field (\w+) not found in type config\.OriginRequestConfig", message)
    if unknown:
        return f"origin.{unknown.group(1)}", message
    return next((key for words, key in _KEY_OF if words in message), "hostname"), message


def _yaml_key(lines: list[str], index: int, field_name: str | None) -> str | None:
    """The [domain] key of the YAML line `index` of a rendered config (its parents by indent)."""
    path: list[str] = []
    indent = len(lines[index]) - len(lines[index].lstrip(" -"))
    name = lines[index].strip(" -").split(":", 1)[0].strip('"')
    if field_name:
        name = field_name
    path.append(name)
    for line in reversed(lines[:index]):
        own = len(line) - len(line.lstrip(" -"))
        if own < indent and line.strip():
            path.append(line.strip(" -").split(":", 1)[0].strip('"'))
            indent = own
            if path[-1] == "ingress":
                break
    path.reverse()
    if path[:1] != ["ingress"] or len(path) < 2:
        return None
    head = _YAML_KEYS.get(path[1])
    if head is None:
        return None
    return ".".join([head, *path[2:]]) if head == "origin" else head


def _screened(plan: TunnelPlan, files: Mapping[str, str], gw_path: str) -> TunnelPlan:
    """The installed cloudflared's own verdict on the candidate: refused rules are left out and
    named on their server's file; a candidate refused as a whole is not used (the running
    config.yml, if any, stays)."""
    settings, executable, config_path = plan.settings, plan.executable, plan.config_path
    assert settings is not None and executable is not None and config_path is not None

    def text_of(rules: list[Rule]) -> str:
        return render(settings.id, settings.credentials_file, rules, settings.origin)

    result = validate.screen(text_of, plan.rules, lambda text: validate.run(executable, text, config_path.parent))
    errors = list(plan.errors)
    for rule, msg in result.refused:
        key, words = refused_key(msg, text_of([rule, Rule()]))
        errors.append(_error(files, rule.server or "", key, f"cloudflared refused this route: {words}"))
    if result.whole is None:
        return dataclasses.replace(plan, rules=result.rules, text=text_of(result.rules), errors=errors)
    errors.append(ConfigError(gw_path, None, None, "tunnel", f"cloudflared refused the new config.yml: "
                              f"{result.whole}; the previous one stays in force"))
    try:
        running = config_path.read_text(encoding="utf-8")
    except OSError:
        running = None
    return dataclasses.replace(plan, text=running, errors=errors, refused=True,
                               missing=None if running else f"cloudflared refused the config: {result.whole}")


def _port_in(path: Path) -> int | None:
    try:
        port = path.read_text(encoding="utf-8").strip().rpartition(":")[2]
    except OSError:
        return None
    return int(port) if plain_digits(port) else None


def own_ports(result: LoadResult, data_dir: Path, settings: TunnelSettings | None,
              running: Mapping[str, int] | None = None) -> frozenset[int]:
    """The gateway's own ports: the page's local door and its tunnel door (as bound, from the
    data folder, else as configured: the port after the page's), the connector's metrics port."""
    ports: set[int] = set()
    page = _port_in(Path(data_dir) / URL_FILE)
    door = _port_in(Path(data_dir) / TUNNEL_URL_FILE)
    listen = str(result.settings.web.listen or "").rpartition(":")[2]
    if plain_digits(listen) and int(listen) > 0:
        ports.add(int(listen))
        if door is None and not os.environ.get("GATEWAY_TUNNEL_LISTEN") and int(listen) < 65535:
            ports.add(int(listen) + 1)
    ports.update(p for p in (page, door) if p)
    if settings is not None and isinstance(settings.metrics_port, int):
        ports.add(settings.metrics_port)
    if running and running.get(CONNECTOR):
        ports.add(running[CONNECTOR])
    return frozenset(ports)


def account_zones(data_dir: Path, settings: TunnelSettings) -> tuple[str, ...] | None:
    """The account's domains as last read from Cloudflare (at connect, then refreshed), else
    the configured zone; None when not known."""
    from reconciler.tunnel.connect import read_summary

    summary = read_summary(data_dir)
    zones = summary.get("zones")
    if isinstance(zones, list) and summary.get("tunnel_id") in (None, settings.id, settings.tunnel_uuid()):
        return tuple(str(z).lower() for z in zones)
    return (settings.zone.lower(),) if settings.zone else None


def build(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int],
          environ: Mapping[str, str] | None = None, screen: bool = True,
          failed: Mapping[str, str] | None = None, facts_dir: Path | None = None) -> TunnelPlan:
    """Everything the tunnel needs from one load of the folder (reads: credentials, PATH, the
    data folder's addresses and account summary; and, when cloudflared is installed and
    `screen`, its validator on the candidate config). `failed`: routes cloudflared could not
    start (`routes.route_key` -> its words), left out. `facts_dir`: the data folder to read
    the account's domains and the page's addresses from, when `data_dir` is a scratch one
    (`gateway check`)."""
    facts = facts_dir or data_dir
    parsed = parse(result.settings.tunnel, config_dir)
    if parsed is None:
        return TunnelPlan(missing="not configured: add a [tunnel] table to gateway.toml")
    if isinstance(parsed, list):
        return TunnelPlan(errors=parsed, missing="[tunnel] in gateway.toml has errors")
    settings = parsed
    errors: list[ConfigError] = []
    gw_path = str(Path(config_dir) / GATEWAY_FILE)
    skip: frozenset[str] = frozenset()
    if CONNECTOR in result.specs:
        skip = frozenset({CONNECTOR})
        path = result.files.get(CONNECTOR, CONNECTOR)
        errors.append(ConfigError(path, None, None, None, f"the name {CONNECTOR!r} is reserved for the tunnel "
                                  "connector the gateway runs from [tunnel]; rename this file"))
    if settings.credentials_file and not Path(settings.credentials_file).expanduser().is_file():
        errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "credentials_file")), None,
                                  "tunnel.credentials_file", f"Tunnel credentials file "
                                  f"'{settings.credentials_file}' doesn't exist or is not a file"))
    known = Known(zones=account_zones(facts, settings), page_hostname=result.settings.web.hostname,
                  own_ports=own_ports(result, facts, settings, ports), failed=dict(failed or {}),
                  config_dir=Path(config_dir))
    origin, missing_ca = with_ca_pool(settings.origin, known)
    if missing_ca:
        errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "origin", "caPool")), None,
                                  "tunnel.origin.caPool", missing_ca))
    settings = settings.model_copy(update={"origin": origin})
    if isinstance(settings.metrics_port, int):
        holder = next((n for n, s in result.specs.items() if s.port == settings.metrics_port and n != CONNECTOR), None)
        if holder:
            errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "metrics_port")), None,
                                      "tunnel.metrics_port", f"{settings.metrics_port} is already used by {holder}"))
    specs, files = dict(result.specs), dict(result.files)
    page = page_route(result.settings.web.hostname, facts)
    if page is not None:  # the page itself, at [web] hostname, through its tunnel door
        specs[PAGE], files[PAGE] = page, gw_path
    rules, route_errors, pending = routes(specs, files, ports, skip, known)
    errors.extend(route_errors)
    text = render(settings.id, settings.credentials_file, rules, settings.origin)
    config_path = settings.config_path(data_dir)
    executable = locate.find(settings.cloudflared, environ, data_dir=data_dir)
    plan = TunnelPlan(settings=settings, executable=executable, rules=rules, text=text, config_path=config_path,
                      errors=errors, pending=pending, hostnames=domain_hostnames(specs))
    if executable is None:
        return dataclasses.replace(plan, missing=locate.missing_message(settings.cloudflared))
    if screen:
        plan = _screened(plan, files, gw_path)
    if any(e.key == "tunnel.metrics_port" for e in errors):
        return dataclasses.replace(plan, missing="the metrics port is taken (see the config errors)")
    if plan.text is None:
        return plan
    return dataclasses.replace(plan, spec=connector_spec(settings, executable, config_path, plan.text))


def domain_problems(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int],
                    spec: ServerSpec) -> list[str]:
    """What the tunnel would say about `spec`'s [domain] if it were saved now (the add/edit
    form asks before it writes): the same checks as a load, against the same facts."""
    import tempfile

    if spec.domain is None:
        return []
    specs = {**result.specs, spec.name: spec}
    files = {**result.files, spec.name: str(Path(config_dir) / f"{spec.name}.toml")}
    with tempfile.TemporaryDirectory(prefix="gateway-form-") as scratch:
        plan = build(dataclasses.replace(result, specs=specs, files=files), config_dir, Path(scratch), ports,
                     screen=False, facts_dir=data_dir)
    if plan.settings is None:
        from reconciler.tunnel.routes import routes as check_routes

        return [e.message for e in check_routes({spec.name: spec}, files, ports)[1]]
    return [e.message for e in plan.errors if Path(e.path).stem == spec.name and (e.key or "").startswith("domain")]


def write_config(path: Path, text: str) -> bool:
    """Write config.yml atomically (temp + fsync + rename) when its text changed; the version
    it replaces is kept as config.yml.prev. Returns whether it wrote."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, text, keep_previous=True)
    return True


def merge(result: LoadResult, plan: TunnelPlan) -> LoadResult:
    specs = {n: s for n, s in result.specs.items() if not (plan.settings and n == CONNECTOR)}
    if plan.spec is not None:
        specs[CONNECTOR] = plan.spec
    return dataclasses.replace(result, specs=dict(sorted(specs.items())),
                               errors=(*result.errors, *plan.errors))
