"""cloudflared's ingress rules: specs -> rules -> checked -> config.yml text. Pure: no I/O.

The checks and their messages follow cloudflared's own (cloudflare/cloudflared
``ingress/ingress.go``: ``validateIngress``, ``validateHostname``; ``config/configuration.go``:
``OriginRequestConfig``), so what `check` accepts, ``cloudflared tunnel ingress validate``
accepts, and an error reads the same in both. Two checks are the gateway's own: no two rules
with one hostname+path (cloudflared would silently use the first), and the hostname syntax
``cloudflared tunnel route dns`` requires (``^[*_a-zA-Z0-9][-_.a-zA-Z0-9]*$``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

CATCH_ALL = "http_status:404"
NO_RULES = "The config file doesn't contain any ingress rules"
LAST_NOT_CATCH_ALL = ("The last ingress rule must match all URLs (i.e. it should not have a hostname or path "
                      "filter)")
BAD_WILDCARD = ('Hostname patterns can have at most one wildcard character ("*") and it can only be used for '
                'subdomains, e.g. "*.example.com"')
HAS_PORT = "Hostname cannot contain a port"
_DNS_NAME = re.compile(r"^[*_a-zA-Z0-9][-_.a-zA-Z0-9]*$")  # cloudflared subcommands.go hostNameRegex
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
_GO_DURATION = re.compile(r"^([0-9]*(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$|^0$")

# config.OriginRequestConfig: yaml key -> kind (cloudflared warns about any other key; we refuse it)
ORIGIN_KEYS: dict[str, str] = {
    "connectTimeout": "duration", "tlsTimeout": "duration", "tcpKeepAlive": "duration",
    "noHappyEyeballs": "bool", "keepAliveConnections": "int", "keepAliveTimeout": "duration",
    "httpHostHeader": "str", "originServerName": "str", "matchSNItoHost": "bool", "caPool": "str",
    "noTLSVerify": "bool", "disableChunkedEncoding": "bool", "bastionMode": "bool", "proxyAddress": "str",
    "proxyPort": "int", "proxyType": "str", "ipRules": "list", "http2Origin": "bool", "access": "map",
}


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
        if port and not port.isdigit():
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
    """The path is a Go RE2 regular expression; Python's `re` compiles it, with Go's words on errors."""
    unsupported = re.search(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=", path)
    if unsupported:
        raise IngressError(f"Rule #{index + 1} has an invalid regex: error parsing regexp: invalid or "
                           f"unsupported Perl syntax: `{unsupported.group(0)}`")
    try:
        re.compile(path)
    except re.error as exc:
        raise IngressError(f"Rule #{index + 1} has an invalid regex: error parsing regexp: "
                           f"{_go_regex_error(exc, path)}") from None


def _go_regex_error(exc: re.error, path: str) -> str:
    msg = exc.msg
    if msg.startswith("missing ), unterminated subpattern"):
        return f"missing closing ): `{path}`"
    if msg.startswith("unbalanced parenthesis"):
        return f"unexpected ): `{path}`"
    if msg.startswith("unterminated character set"):
        return f"missing closing ]: `{path[exc.pos or 0:]}`"
    if msg.startswith(("nothing to repeat", "multiple repeat")):
        return f"missing argument to repetition operator: `{path[exc.pos or 0:(exc.pos or 0) + 1]}`"
    return f"{msg}: `{path}`"


def check_origin(origin: Mapping[str, Any]) -> None:
    """Known keys only, values of the right kind (durations as Go strings: "10s"), and the access rule."""
    for key, value in origin.items():
        kind = ORIGIN_KEYS.get(key)
        if kind is None:
            raise IngressError(f"field {key} not found in type config.OriginRequestConfig")
        if kind == "duration" and not (isinstance(value, str) and _GO_DURATION.match(value)):
            raise IngressError(f"cannot unmarshal {_yaml_kind(value)} `{value}` into time.Duration "
                               '(write it like "10s")')
        if kind == "bool" and not isinstance(value, bool):
            raise IngressError(f"cannot unmarshal {_yaml_kind(value)} `{value}` into bool")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise IngressError(f"cannot unmarshal {_yaml_kind(value)} `{value}` into uint")
        if kind == "str" and not isinstance(value, str):
            raise IngressError(f"cannot unmarshal {_yaml_kind(value)} `{value}` into string")
        if kind == "list" and not isinstance(value, list):
            raise IngressError(f"cannot unmarshal {_yaml_kind(value)} into []config.IngressIPRule")
        if kind == "map" and not isinstance(value, dict):
            raise IngressError(f"cannot unmarshal {_yaml_kind(value)} into config.AccessConfig")
    access = origin.get("access")
    if isinstance(access, dict) and access.get("required") and access.get("audTag") and not access.get("teamName"):
        raise IngressError("access.TeamName cannot be blank when access.audTags are present")


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "!!bool"
    return {int: "!!int", float: "!!float", str: "!!str", list: "!!seq", dict: "!!map"}.get(type(value), "!!str")


def check_dns_name(hostname: str) -> None:
    """The hostname syntax ``cloudflared tunnel route dns`` accepts (after IDNA to ASCII)."""
    try:
        ascii_name = hostname.encode("idna").decode() if not hostname.isascii() else hostname
    except UnicodeError:
        raise IngressError(f"{hostname!r} is not a valid hostname (it cannot be converted to ASCII)") from None
    if not _DNS_NAME.match(ascii_name) or ".." in ascii_name or ascii_name.endswith("."):
        raise IngressError(f"{hostname!r} is not a valid hostname: use letters, digits, '-', '_' and '.', "
                           "optionally starting with '*.' (e.g. blog.example.com)")


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
    before shorter ones; for one hostname, rules with a path before the one without, longer paths
    first. Ties go by hostname, path and server name, so the order is stable."""
    wildcard = rule.hostname.startswith("*")
    labels = rule.hostname.count(".")
    return (wildcard, -labels if wildcard else 0, rule.hostname, rule.path == "", -len(rule.path), rule.path,
            rule.server or "")


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """The routes ordered most specific first, and the catch-all last."""
    return [*sorted(rules, key=specificity), Rule()]


# --- YAML -------------------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _emit(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_emit(item, indent + 2))
            else:
                text = ("{}" if isinstance(item, dict) else "[]") if isinstance(item, (dict, list)) else _scalar(item)
                lines.append(f"{pad}{key}: {text}")
    elif isinstance(value, list):
        for item in value:
            body = _emit(item, indent + 2) if isinstance(item, (dict, list)) else [f"{pad}  {_scalar(item)}"]
            lines.append(f"{pad}- {body[0].lstrip()}")
            lines.extend(body[1:])
    return lines


def to_yaml(data: Mapping[str, Any], header: str = "") -> str:
    """Mappings, lists, strings, numbers and booleans: all cloudflared's config needs. Every
    string is double-quoted (so ``*.example.com`` and ``^/api/.*$`` never need thinking about)."""
    head = "".join(f"# {line}\n" for line in header.splitlines())
    return head + "\n".join(_emit(dict(data), 0)) + "\n"


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
