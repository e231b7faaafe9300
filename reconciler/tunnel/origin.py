"""``originRequest`` values as cloudflared decodes them: Go's duration grammar and the types of
``config.OriginRequestConfig`` (with its nested ``ipRules`` and ``access``), in the words of
gopkg.in/yaml.v3 (``cannot unmarshal !!str `x` into []int``) and of cloudflared's unknown-key
warning (``field X not found in type config.OriginRequestConfig``; cloudflared only warns, the
gateway refuses). Pure: no I/O (the ``caPool`` file is looked at by the connector).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# time.ParseDuration: [-+]? then "0", or one or more (digits[.digits] | .digits) unit
GO_DURATION = re.compile(r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$")

# yaml key -> Go type, as cloudflared's config package declares them
ORIGIN_TYPES: dict[str, str] = {
    "connectTimeout": "time.Duration", "tlsTimeout": "time.Duration", "tcpKeepAlive": "time.Duration",
    "noHappyEyeballs": "bool", "keepAliveConnections": "int", "keepAliveTimeout": "time.Duration",
    "httpHostHeader": "string", "originServerName": "string", "matchSNItoHost": "bool", "caPool": "string",
    "noTLSVerify": "bool", "disableChunkedEncoding": "bool", "bastionMode": "bool", "proxyAddress": "string",
    "proxyPort": "uint", "proxyType": "string", "ipRules": "[]config.IngressIPRule", "http2Origin": "bool",
    "access": "config.AccessConfig",
}
IP_RULE_TYPES = {"prefix": "string", "ports": "[]int", "allow": "bool"}
ACCESS_TYPES = {"required": "bool", "teamName": "string", "audTag": "[]string", "environment": "string"}
ORIGIN_KEYS = ORIGIN_TYPES  # the known keys


class OriginError(ValueError):
    """A value cloudflared would refuse (or warn about); the message is cloudflared's."""


_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def is_go_duration(value: Any) -> bool:
    """time.ParseDuration accepts it: the grammar, and a total that fits in int64 nanoseconds
    (``"3000000h"`` reads as a duration but overflows: Go says "invalid duration")."""
    if not isinstance(value, str) or not GO_DURATION.fullmatch(value):
        return False
    from fractions import Fraction

    total = sum((Fraction(number or "0") * _UNIT_NS[unit] for number, unit in _PART.findall(value)), Fraction(0))
    return total <= (1 << 63) - 1


def yaml_tag(value: Any) -> str:
    if isinstance(value, bool):
        return "!!bool"
    if value is None:
        return "!!null"
    return {int: "!!int", float: "!!float", list: "!!seq", dict: "!!map"}.get(type(value), "!!str")


def yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _refuse(value: Any, go_type: str) -> OriginError:
    if isinstance(value, (list, dict)):
        return OriginError(f"cannot unmarshal {yaml_tag(value)} into {go_type}")
    return OriginError(f"cannot unmarshal {yaml_tag(value)} `{yaml_text(value)}` into {go_type}")


def check_value(value: Any, go_type: str) -> None:
    """`value` decodes into `go_type`, or the yaml.v3 error."""
    if go_type.startswith("[]"):
        if not isinstance(value, list):
            raise _refuse(value, go_type)
        for item in value:
            check_value(item, go_type[2:])
        return
    if go_type == "time.Duration":
        if not is_go_duration(value):
            raise _refuse(value, go_type)
    elif go_type == "bool":
        if not isinstance(value, bool):
            raise _refuse(value, go_type)
    elif go_type in ("int", "uint"):
        if isinstance(value, bool) or not isinstance(value, int) or (go_type == "uint" and value < 0):
            raise _refuse(value, go_type)
    elif go_type == "string":
        if not isinstance(value, str):
            raise _refuse(value, go_type)
    elif go_type == "config.IngressIPRule":
        _check_struct(value, go_type, IP_RULE_TYPES)
    elif go_type == "config.AccessConfig":
        _check_struct(value, go_type, ACCESS_TYPES)


def _check_struct(value: Any, go_type: str, fields: Mapping[str, str]) -> None:
    if not isinstance(value, dict):
        raise _refuse(value, go_type)
    for key, item in value.items():
        if key not in fields:
            raise OriginError(f"field {key} not found in type {go_type}")
        check_value(item, fields[key])


def check_origin(origin: Mapping[str, Any]) -> None:
    """Known keys only, each value of its Go type, and validateAccessConfiguration's rule."""
    _check_struct(dict(origin), "config.OriginRequestConfig", ORIGIN_TYPES)
    access = origin.get("access")
    if isinstance(access, dict) and access.get("required") and access.get("audTag") and not access.get("teamName"):
        raise OriginError("access.TeamName cannot be blank when access.audTags are present")


def ca_pool_error(origin: Mapping[str, Any], exists: Any) -> str | None:
    """cloudflared's message when ``caPool`` names a file that `exists(path)` says is not there
    (``tunnel run`` exits 1 on it, although ``ingress validate`` passes)."""
    path = origin.get("caPool")
    if not isinstance(path, str) or not path or exists(path):
        return None
    return (f"Error loading cert pool: unable to read the file {path} for --origin-ca-pool: open {path}: "
            "no such file or directory")
