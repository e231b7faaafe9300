"""cloudflared's ingress rules: specs -> rules -> checked -> config.yml text. Pure: no I/O.

The checks and their messages follow cloudflared's own (cloudflare/cloudflared
``ingress/ingress.go``: ``validateIngress``, ``validateHostname``; ``config/configuration.go``:
``OriginRequestConfig``), so what `check` accepts, ``cloudflared tunnel ingress validate``
accepts, and an error reads the same in both: paths by Go's regexp (`goregex`, RE2), origin
values by their Go types (`origin`). The gateway's own checks: no two rules with one
hostname+path (cloudflared would silently use the first; hostnames compared in their
lower-case ASCII form, `hostnames`), and hostnames that can never work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.digits import plain_digits
from reconciler.tunnel.goregex import go_regex_error
from reconciler.tunnel.hostnames import HostnameError, check_works
from reconciler.tunnel.origin import OriginError
from reconciler.tunnel.origin import check_origin as _check_origin

CATCH_ALL = "http_status:404"
NO_RULES = "The config file doesn't contain any ingress rules"
LAST_NOT_CATCH_ALL = ("The last ingress rule must match all URLs (i.e. it should not have a hostname or path "
                      "filter)")
BAD_WILDCARD = ('Hostname patterns can have at most one wildcard character ("*") and it can only be used for '
                'subdomains, e.g. "*.example.com"')
HAS_PORT = "Hostname cannot contain a port"

class IngressError(ValueError):
    """One rule (or the whole list) is invalid; the message is cloudflared's."""


@dataclass(frozen=True)
class Rule:
    hostname: str = ""
    path: str = ""
    service: str = CATCH_ALL
    origin: Mapping[str, Any] = field(default_factory=dict)
    server: str | None = None  # the server the rule routes to (None: the catch-all)

    @property
    def is_catch_all(self) -> bool:
        return self.hostname in ("", "*") and self.path == ""


# --- one service, one hostname, one path (cloudflared's messages) ------------------------------
def check_service(service: str) -> None:
    if service.startswith(("unix:", "unix+tls:")) or service in ("hello_world", "hello-world", "bastion",
                                                                    "socks-proxy"):
        return
    if service.startswith("http_status:"):
        raw = service[len("http_status:"):]
        if not re.fullmatch(r"[+-]?[0-9]+", raw):
            raise IngressError(f'invalid HTTP status code: strconv.Atoi: parsing "{raw}": invalid syntax')
        if not 100 <= int(raw) <= 999:
            raise IngressError(f"invalid HTTP status code: {int(raw)}")
        return
    scheme, host, path = _go_url(service)
    if not scheme or not host:
        raise IngressError(f"{service} is an invalid address, please make sure it has a scheme and a hostname")
    if path:
        raise IngressError(f"{service} is an invalid address, ingress rules don't support proxying to a "
                           "different path on the origin service. The path will be the same as the eyeball "
                           "request's path")


def _go_url(raw: str) -> tuple[str, str, str]:
    """(scheme, hostname, path) as Go's url.Parse sees them, raising its errors as cloudflared prints them."""
    rest, scheme = raw, ""
    for i, ch in enumerate(raw):
        if ch.isascii() and ch.isalpha():
            continue
        if ch.isdigit() or ch in "+-.":
            if i == 0:
                break
            continue
        if ch == ":":
            if i == 0:
                raise IngressError(f'parse "{raw}": missing protocol scheme')
            scheme, rest = raw[:i].lower(), raw[i + 1:]
        break
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    if not scheme and not rest.startswith("/") and ":" in rest.split("/", 1)[0]:
        raise IngressError(f'parse "{raw}": first path segment in URL cannot contain colon')
    if scheme and not rest.startswith("/"):
        return scheme, "", ""  # opaque ("localhost:8000" is scheme "localhost"): no host
    if not rest.startswith("//"):
        return scheme, "", rest
    authority, slash, path = rest[2:].partition("/")
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        hostname = host[1:host.find("]")] if "]" in host else ""
    else:
        hostname = host.rsplit(":", 1)[0] if ":" in host else host
        port = host.rsplit(":", 1)[1] if ":" in host else ""
        if port and not plain_digits(port):
            raise IngressError(f'parse "{raw}": invalid port ":{port}" after host')
    return scheme, hostname, (slash + path) if slash else ""


def check_hostname(hostname: str, index: int, total: int, path: str = "") -> None:
    """validateHostname: no port, a wildcard only first, the catch-all last and only last."""
    if _has_port(hostname):
        raise IngressError(HAS_PORT)
    if hostname.rfind("*") > 0:
        raise IngressError(BAD_WILDCARD)
    catch_all = hostname in ("", "*") and path == ""
    last = index == total - 1
    if last and not catch_all:
        raise IngressError(LAST_NOT_CATCH_ALL)
    if not last and catch_all:
        raise IngressError(f"Rule #{index + 1} is matching the hostname '{hostname}', but this will match every "
                           "hostname, meaning the rules which follow it will never be triggered.")


def _has_port(hostname: str) -> bool:
    """Go's net.SplitHostPort(hostname) succeeds."""
    if hostname.startswith("["):
        end = hostname.find("]")
        return end > 0 and hostname[end + 1:end + 2] == ":" and "[" not in hostname[1:end]
    return hostname.count(":") == 1


def check_path(path: str, index: int) -> None:
    """The path is a Go regular expression (RE2 syntax), checked as Go's regexp.Compile does."""
    error = go_regex_error(path)
    if error:
        raise IngressError(f"Rule #{index + 1} has an invalid regex: {error}")


def check_origin(origin: Mapping[str, Any]) -> None:
    """Known keys only (nested too), each value of its Go type (durations as Go strings: "10s")."""
    try:
        _check_origin(origin)
    except OriginError as exc:
        raise IngressError(str(exc)) from None


def check_dns_name(hostname: str, path: str = "") -> None:
    """A hostname that can work: the syntax ``cloudflared tunnel route dns`` accepts (after
    UTS-46 to ASCII), labels of at most 63, no ``*example.com``, no ``*`` with a path."""
    try:
        check_works(hostname, path)
    except HostnameError as exc:
        raise IngressError(str(exc)) from None


def check_rule(rule: Rule, index: int, total: int) -> None:
    """One rule in its place, in cloudflared's order of checks: service, hostname, path."""
    check_service(rule.service)
    check_hostname(rule.hostname, index, total, rule.path)
    if rule.path:
        check_path(rule.path, index)
    check_origin(rule.origin)


def check_rules(rules: list[Rule]) -> None:
    """validateIngress over the whole list: raises on the first bad rule."""
    if not rules:
        raise IngressError(NO_RULES)
    for i, rule in enumerate(rules):
        check_rule(rule, i, len(rules))


# --- ordering ---------------------------------------------------------------------------------
def specificity(rule: Rule) -> tuple[Any, ...]:
    """Sort key, most specific first: exact hostnames before wildcards, longer wildcard suffixes
    before shorter ones; for one hostname, rules with a path before the one without (and a
    path matching every path counts as none), narrower paths first: a longer literal start
    (``^/api/v1`` before ``^/api.*``), then longer paths. Ties go by hostname, path and server
    name, so the order is stable. A broad path never comes before a narrower one it covers."""
    from reconciler.tunnel.paths import literal_prefix, universal

    wildcard = rule.hostname.startswith("*")
    labels = rule.hostname.count(".")
    broad = rule.path == "" or universal(rule.path)
    return (wildcard, -labels if wildcard else 0, rule.hostname, broad, -len(literal_prefix(rule.path)),
            -len(rule.path), rule.path, rule.server or "")


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """The routes ordered most specific first, and the catch-all last."""
    return [*sorted(rules, key=specificity), Rule()]


# --- YAML -------------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def to_yaml(data: Mapping[str, Any], header: str = "") -> str:
    """PyYAML's safe dump (block style, keys in order). A string stays plain only when it is a
    simple word YAML reads back as that word; every other string is double-quoted, so
    ``*.example.com``, ``^/api/.*$``, ``"yes"`` or ``"0o17"`` are never read as something else."""
    import yaml  # PyYAML: only when a config is rendered

    class Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types (mypy sees Any)
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        style = None if _PLAIN.match(value) else '"'
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    head = "".join(f"# {line}\n" for line in header.splitlines())
    body = yaml.dump(dict(data), Dumper=Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True,
                     width=10_000)
    return head + str(body)


def rule_dict(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.hostname:
        out["hostname"] = rule.hostname
    if rule.path:
        out["path"] = rule.path
    out["service"] = rule.service
    if rule.origin:
        out["originRequest"] = dict(rule.origin)
    return out


def render(tunnel: str, credentials_file: str | None, rules: list[Rule],
           origin: Mapping[str, Any] | None = None) -> str:
    """The whole config.yml (checked first: an invalid config is never rendered)."""
    check_rules(rules)
    data: dict[str, Any] = {"tunnel": tunnel}
    if credentials_file:
        data["credentials-file"] = credentials_file
    if origin:
        data["originRequest"] = dict(origin)
    data["ingress"] = [rule_dict(r) for r in rules]
    return to_yaml(data, "Written by omen-gateway from gateway.d; edits here are overwritten.")
