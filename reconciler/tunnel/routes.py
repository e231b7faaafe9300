"""Each server's ``[domain]`` -> an ingress rule, or a config error naming the key.

Checked in cloudflared's order (the service, then the hostname), then what cloudflared
accepts but can never work or would take what is not the server's:
- hostnames that can never be reached (`hostnames.check_works`), or that are outside the
  account's domains (`Known.zones`: "the domains there are" are named);
- the page's own public hostname (``[web] hostname``), reserved for the page, and a route to
  the gateway's own ports (the page's local door, its tunnel door, the connector's metrics):
  either would hand the page or the tunnel to whoever asks;
- ``origin.caPool``: written as the path cloudflared will read (``~`` expanded, a relative
  path from gateway.d), and that file must exist (else ``tunnel run`` exits and every
  hostname is down);
- a path that can never match (`paths.dead_path`), and one rule per hostname and path (a
  path matching every path counts as none);
- a route cloudflared could not start the last time it tried (`Known.failed`, from
  ``Error starting local service URL``): left out until its [domain] changes.
The paths are then checked as Go regular expressions in their final order (so ``Rule #N`` is
the number cloudflared would print). Pure but for `Known.exists` (the caPool file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.digits import plain_digits
from reconciler.core.spec import ServerSpec
from reconciler.engine.config import ConfigError, _line_of
from reconciler.tunnel.hostnames import HostnameError, ascii_hostname, in_zones
from reconciler.tunnel.ingress import (
    IngressError,
    Rule,
    _go_url,
    check_dns_name,
    check_hostname,
    check_origin,
    check_path,
    check_service,
    ordered,
)
from reconciler.tunnel.paths import dead_path, universal

PAGE = "gateway"  # the page's route is named after the settings file that asks for it
_LOCAL_HOSTS = {"localhost", "0.0.0.0", "::", "::1"}


@dataclass(frozen=True)
class Known:
    """What the routes are checked against, besides the files."""

    zones: tuple[str, ...] | None = None  # the account's domains (None: not known, not checked)
    page_hostname: str | None = None  # [web] hostname: the page's own public address
    own_ports: frozenset[int] = frozenset()  # the page's doors, the connector's metrics port
    failed: Mapping[str, str] = field(default_factory=dict)  # route key -> what cloudflared said
    config_dir: Path | None = None  # relative caPool paths are read from here
    exists: Callable[[str], bool] = os.path.isfile


def route_key(rule: Rule) -> str:
    """A route as cloudflared starts it: changing any part of it retries a failed one."""
    return json.dumps([rule.server, rule.hostname, rule.path, rule.service, dict(rule.origin)], sort_keys=True,
                      default=str)


def ca_pool_path(value: str, config_dir: Path | None) -> str:
    """The caPool file cloudflared is to read: ``~`` expanded (cloudflared does not), and a
    relative path taken from gateway.d, where the gateway keeps its settings."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and config_dir is not None:
        path = Path(config_dir) / path
    return str(path)


def shown_path(path: str, config_dir: Path | None) -> str:
    """A path as the page shows it: from the home folder (~) or gateway.d, not from the root."""
    p = Path(path)
    for base, label in ((config_dir, "gateway.d"), (Path.home(), "~")):
        if base is None:
            continue
        try:
            return str(Path(label) / p.relative_to(base))
        except ValueError:
            continue
    return p.name if p.is_absolute() else path


def with_ca_pool(origin: Mapping[str, Any], known: Known) -> tuple[dict[str, Any], str | None]:
    """The origin with caPool as cloudflared will read it, and the error when that file is not there."""
    value = origin.get("caPool")
    if not isinstance(value, str) or not value:
        return dict(origin), None
    path = ca_pool_path(value, known.config_dir)
    if known.exists(path):
        return {**origin, "caPool": path}, None
    where = shown_path(path, known.config_dir)
    return dict(origin), (f"caPool: there is no file {value!r} (looked for {where}); cloudflared would stop with "
                          "\"Error loading cert pool\" and take every address down: point it at the CA file")


def _own_port(service: str, port: int | None, own: frozenset[int]) -> int | None:
    """The gateway's own port this route would send visitors to (None: not one)."""
    if not own:
        return None
    if service:
        try:
            scheme, host, _ = _go_url(service)
        except IngressError:
            return None
        authority = service.split("//", 1)[1].split("/", 1)[0] if "//" in service else ""
        text = authority.rpartition("@")[2]
        port_text = text.rsplit("]:", 1)[1] if text.startswith("[") and "]:" in text else (
            text.rsplit(":", 1)[1] if ":" in text and not text.startswith("[") else "")
        local = host.lower() in _LOCAL_HOSTS or host.startswith("127.")
        if not local or not plain_digits(port_text):
            return None
        port = int(port_text)
    return port if port in own else None


def _error(files: Mapping[str, str], name: str, key: str, message: str) -> ConfigError:
    path = files.get(name, name)
    table = "web" if name == PAGE else "domain"
    parts = (table, *key.split("."))
    return ConfigError(path, _line_of(path, parts) if os.path.exists(path) else None, None, ".".join(parts), message)


def routes(specs: Mapping[str, ServerSpec], files: Mapping[str, str], ports: Mapping[str, int],
           skip: frozenset[str] = frozenset(), known: Known | None = None,
           ) -> tuple[list[Rule], list[ConfigError], list[str]]:
    """The ingress rules of every enabled server with a domain, ordered, catch-all last."""
    known = known or Known()
    errors: list[ConfigError] = []
    pending: list[str] = []
    candidates: list[Rule] = []
    page = _page_hostname(known)
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
            if name != PAGE and page is not None and hostname == page:
                raise IngressError(f"{dom.hostname} is this gateway's own page ([web] hostname in gateway.toml): "
                                   "it is reserved for the page; give this server another name")
            if known.zones is not None and hostname not in ("", "*") and not in_zones(hostname, known.zones):
                raise IngressError(_outside(dom.hostname, known.zones))
            stage = "path"
            dead = dead_path(dom.path) if dom.path else None
            if dead:
                raise IngressError(f"the path {dom.path!r} never matches: {dead}; paths are regular expressions on "
                                   "the address's path, e.g. \"^/api/\"")
            stage = "origin"
            check_origin(dom.origin)
            origin, missing_ca = with_ca_pool(dom.origin, known)
            if missing_ca:
                stage = "origin.caPool"
                raise IngressError(missing_ca)
        except (IngressError, HostnameError) as exc:
            errors.append(_error(files, name, stage, str(exc)))
            continue
        port = spec.port if isinstance(spec.port, int) else ports.get(name)
        if dom.service is None and spec.port is None:
            errors.append(_error(files, name, "service", "this server has no port: set `port` in the file, "
                                 "or `service` here (e.g. \"http://127.0.0.1:8080\")"))
            continue
        own = None if name == PAGE else _own_port(dom.service or "", port, known.own_ports)
        if own is not None:
            errors.append(_error(files, name, "service" if dom.service else "hostname",
                                 f"port {own} is this gateway's own (its page, or the tunnel connector): a route "
                                 "there would hand them to anyone on the internet; route to your server's port"))
            continue
        if dom.service is None and port is None:
            pending.append(name)  # port = "auto", not handed out yet: routed on the next load
            continue
        rule = Rule(hostname, dom.path or "", dom.service or f"http://127.0.0.1:{port}", origin, name)
        failed = known.failed.get(route_key(rule))
        if failed:
            errors.append(_error(files, name, "origin" if dom.origin else "service",
                                 f"cloudflared could not start this route: {failed}; it is left out (the others "
                                 "run) until you change it"))
            continue
        twin = next((r for r in candidates if _same(r, rule)), None)
        if twin is not None:
            what = dom.hostname + (f" (that is {hostname})" if hostname != dom.hostname else "")
            what += f" with path {rule.path!r}" if rule.path else ""
            loose = (rule.path and universal(rule.path)) or (twin.path and universal(twin.path))
            also = " (a path that matches every path is the same as none)" if loose else ""
            errors.append(_error(files, name, "hostname", f"{what} is already routed to {twin.server} "
                                 f"({_shown_file(files, twin.server)}); cloudflared would only ever use the first "
                                 f"rule{also}"))
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


def _page_hostname(known: Known) -> str | None:
    if not known.page_hostname:
        return None
    try:
        return ascii_hostname(known.page_hostname)
    except HostnameError:
        return None


def _same(a: Rule, b: Rule) -> bool:
    """One hostname and one path, a path that matches every path being no path."""
    if a.hostname != b.hostname:
        return False
    return ("" if universal(a.path) else a.path) == ("" if universal(b.path) else b.path)


def _shown_file(files: Mapping[str, str], server: str | None) -> str:
    return Path(files.get(server or "", server or "")).name


def _outside(hostname: str, zones: tuple[str, ...]) -> str:
    if not zones:
        return (f"{hostname} cannot be routed: your Cloudflare account has no domain yet (add one in Cloudflare "
                "first, then reconnect on the Cloudflare page)")
    listed = ", ".join(zones)
    return (f"{hostname} is not under a domain of your Cloudflare account ({listed}): use a name like "
            f"{hostname.split('.')[0].lstrip('*') or 'blog'}.{zones[0]}, or add that domain to Cloudflare first")
