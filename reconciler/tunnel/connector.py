"""The tunnel as one more supervised server.

`build` turns a `LoadResult` into the ingress rules (a server whose ``[domain]`` is invalid
gets a config error naming the key; the others keep their routes), the config.yml text and
the synthesized ``cloudflared`` `ServerSpec`: ``cloudflared tunnel --config FILE --metrics
127.0.0.1:{port} run``, checked by GET /ready on that port. The hash of the rendered config is
in the spec's env (``GATEWAY_INGRESS_HASH``), so a changed config changes the spec's runtime
hash and the loop restarts the connector: a restart, not a two-connector handover.

When cloudflared is installed, its own validator screens the candidate (`validate`): a rule it
refuses is left out and named on its server's file. The loop's hook is `hook.with_tunnel`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.config import ConfigError, LoadResult, _line_of
from reconciler.digits import plain_digits
from reconciler.fsutil import atomic_write
from reconciler.settings import TUNNEL_URL_FILE
from reconciler.spec import HttpHealth, RestartSpec, ServerSpec, StopSpec
from reconciler.spec import format_duration as fd
from reconciler.tunnel import locate, validate
from reconciler.tunnel.hostnames import HostnameError, ascii_hostname
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
from reconciler.tunnel.origin import ca_pool_error
from reconciler.tunnel.settings import TunnelSettings, parse

RESERVED = "cloudflared"  # the synthesized server's name; a user file with it is refused
STOP_MARGIN = 5.0  # seconds past the grace period before a stop is forced


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
            check_dns_name(dom.hostname, dom.path or "")
            hostname = ascii_hostname(dom.hostname)  # emitted and compared lower-case ASCII
            stage = "origin"
            check_origin(dom.origin)
            missing_ca = ca_pool_error(dom.origin, lambda p: Path(p).expanduser().is_file())
            if missing_ca:
                raise IngressError(missing_ca)
        except (IngressError, HostnameError) as exc:
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
        rule = Rule(hostname, dom.path or "", dom.service or f"http://127.0.0.1:{port}", dom.origin, name)
        twin = next((r for r in candidates if (r.hostname, r.path) == (rule.hostname, rule.path)), None)
        if twin is not None:
            what = dom.hostname + (f" (that is {hostname})" if hostname != dom.hostname else "")
            what += f" with path {rule.path!r}" if rule.path else ""
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


PAGE = "gateway"  # the page's route is named after the settings file that asks for it


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
        name=RESERVED,
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
           ("ostname", "hostname"), ("unmarshal", "origin"), ("not found in type", "origin"),
           ("access.", "origin"), ("cert pool", "origin"))


def _refused_key(message: str) -> str:
    """Which [domain] key cloudflared's refusal is about (its messages name no key)."""
    return next((key for words, key in _KEY_OF if words in message), "hostname")


def _screened(plan: TunnelPlan, files: Mapping[str, str], gw_path: str) -> TunnelPlan:
    """The installed cloudflared's own verdict on the candidate: refused rules are left out and
    named on their server's file; a candidate refused as a whole is not used (the running
    config.yml, if any, stays)."""
    settings, executable, config_path = plan.settings, plan.executable, plan.config_path
    assert settings is not None and executable is not None and config_path is not None

    def text_of(rules: list[Rule]) -> str:
        return render(settings.id, settings.credentials_file, rules, settings.origin)

    result = validate.screen(text_of, plan.rules, lambda text: validate.run(executable, text, config_path.parent))
    errors = [*plan.errors, *(_error(files, rule.server or "", _refused_key(msg), f"cloudflared refused this "
                                     f"route: {msg}") for rule, msg in result.refused)]
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


def build(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int],
          environ: Mapping[str, str] | None = None, screen: bool = True) -> TunnelPlan:
    """Everything the tunnel needs from one load of the folder (reads: credentials, PATH; and,
    when cloudflared is installed and `screen`, its validator on the candidate config)."""
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
                                  "tunnel.credentials_file", f"Tunnel credentials file "
                                  f"'{settings.credentials_file}' doesn't exist or is not a file"))
    missing_ca = ca_pool_error(settings.origin, lambda p: Path(p).expanduser().is_file())
    if missing_ca:
        errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "origin", "caPool")), None,
                                  "tunnel.origin.caPool", missing_ca))
    if isinstance(settings.metrics_port, int):
        holder = next((n for n, s in result.specs.items() if s.port == settings.metrics_port and n != RESERVED), None)
        if holder:
            errors.append(ConfigError(gw_path, _line_of(gw_path, ("tunnel", "metrics_port")), None,
                                      "tunnel.metrics_port", f"{settings.metrics_port} is already used by {holder}"))
    specs, files = dict(result.specs), dict(result.files)
    page = page_route(result.settings.web.hostname, data_dir)
    if page is not None:  # the page itself, at [web] hostname, through its tunnel door
        specs[PAGE], files[PAGE] = page, gw_path
    rules, route_errors, pending = routes(specs, files, ports, skip)
    errors.extend(route_errors)
    text = render(settings.id, settings.credentials_file, rules, settings.origin)
    config_path = settings.config_path(data_dir)
    executable = locate.find(settings.cloudflared, environ)
    plan = TunnelPlan(settings=settings, executable=executable, rules=rules, text=text, config_path=config_path,
                      errors=errors, pending=pending, hostnames=domain_hostnames(specs))
    if executable is None:
        return dataclasses.replace(plan, missing=locate.missing_message(settings.cloudflared))
    if screen:
        plan = _screened(plan, result.files, gw_path)
    if any(e.key == "tunnel.metrics_port" for e in errors):
        return dataclasses.replace(plan, missing="the metrics port is taken (see the config errors)")
    if plan.text is None:
        return plan
    return dataclasses.replace(plan, spec=connector_spec(settings, executable, config_path, plan.text))


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
    specs = {n: s for n, s in result.specs.items() if not (plan.settings and n == RESERVED)}
    if plan.spec is not None:
        specs[RESERVED] = plan.spec
    return dataclasses.replace(result, specs=dict(sorted(specs.items())),
                               errors=(*result.errors, *plan.errors))
