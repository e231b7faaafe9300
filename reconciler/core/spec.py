"""The TOML schema of one server file and of ``gateway.toml``.

Pure data: no I/O happens here. Every model is frozen and forbids unknown keys, so a
typo in a file is an error that names the key rather than a silently ignored setting.
The few value types (`Duration`, `ServerName`, `PortSpec`) are defined once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from reconciler.core.digits import plain_digits

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# Names the gateway itself uses: `gateway.toml` holds the global settings and `cloudflared`
# is the tunnel connector it runs. No server file, form or API call may take them.
_NAME_RE = re.compile(NAME_PATTERN)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"`` -> seconds. Bare numbers are refused:
    a reader of the file should never have to guess the unit."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'{value!r} is not a duration: write it with a unit, like "500ms", "10s" or "5m"')
    match = _DURATION_RE.match(value)
    if not match:
        raise ValueError(f'{value!r} is not a duration: write it with a unit, like "500ms", "10s" or "5m"')
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Inverse of `parse_duration` for values it produced (used when writing TOML back)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{round(seconds * 1000)}ms"


MAX_QUOTED = 80  # characters of the user's own text an error message quotes
MAX_LISTED = 5  # problems of one kind listed in one message


def quote(text: str, limit: int = MAX_QUOTED) -> str:
    """`text` for an error message: repr-quoted, and cut (saying so) when it is long, so a
    1 MB key never travels whole into events, status and the log."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def shown(text: str) -> str:
    """A key for an error message: as written when short and printable, else `quote`d."""
    return text if text and len(text) <= MAX_QUOTED and text.isprintable() else quote(text)


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid server name: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return value


def _check_port(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{value!r} is not a port: use a number 1-65535 or "auto"')
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port (1-65535)")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
ServerName = Annotated[str, AfterValidator(_check_name)]
PortSpec = Annotated[Union[int, Literal["auto"]], BeforeValidator(_check_port)]
SignalName = Literal["TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2", "BREAK"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _HealthBase(_Model):
    interval: Duration = 10.0
    timeout: Duration = 2.0
    failures: int = Field(3, ge=1, le=100)
    start_period: Duration = 30.0
    # failed checks do not count while the host's internet check fails (a bot, the tunnel
    # connector: restarting them cannot bring the internet back)
    needs_internet: bool = False


class HttpHealth(_HealthBase):
    type: Literal["http"]
    path: str = "/"

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value


class TcpHealth(_HealthBase):
    type: Literal["tcp"]


class CommandHealth(_HealthBase):
    type: Literal["command"]
    command: list[str] = Field(min_length=1)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value


class NoHealth(_Model):
    type: Literal["none"]


RUNNING_GRACE = 10.0  # seconds past `min_uptime` before a start that never settled is given up on


class RunningHealth(_Model):
    """A program with no web page (a bot, a worker): healthy once it has kept running for
    `min_uptime` (PM2's `min_uptime`, supervisord's `startsecs`). It has no port to check."""

    type: Literal["running"]
    min_uptime: Duration = 5.0
    needs_internet: bool = False

    @field_validator("min_uptime")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value <= 3600:
            raise ValueError(f'{format_duration(value)} cannot be a min_uptime: use more than 0 and at most 1h, like "5s"')
        return value

    @property
    def start_period(self) -> float:
        """How long a start may take before it counts as failed (the loop's one deadline)."""
        return self.min_uptime + RUNNING_GRACE


# Every kind of health check, once: a new kind is a model here plus its probe in health.py
# (`PROBES`, checked complete at import); the loader's known keys come from this tuple.
HEALTH_KINDS: tuple[type[_Model], ...] = (HttpHealth, TcpHealth, CommandHealth, NoHealth, RunningHealth)
HealthSpec = Annotated[Union[HttpHealth, TcpHealth, CommandHealth, NoHealth, RunningHealth],
                       Field(discriminator="type")]


class RestartSpec(_Model):
    policy: Literal["always", "on-failure", "never"] = "always"
    backoff_start: Duration = 1.0
    backoff_max: Duration = 300.0
    backoff_reset: Duration = 60.0
    alert_after: int = Field(5, ge=1)
    # a changed version must stay up this long after its first passed check to become the
    # last good one; if it fails before, the last good version runs again (a rollback)
    probation: Duration = 30.0

    @model_validator(mode="after")
    def _cap_not_below_start(self) -> RestartSpec:
        if self.backoff_max < self.backoff_start:
            raise ValueError("backoff_max must be at least backoff_start")
        return self


class StopSpec(_Model):
    signal: SignalName = "TERM"
    timeout: Duration = 10.0


class DomainSpec(_Model):
    hostname: str = Field(min_length=1)
    path: str | None = None
    service: str | None = None
    origin: dict[str, Any] = Field(default_factory=dict)


class ServerSpec(_Model):
    """One server, as written in ``gateway.d/NAME.toml`` (the name is the file stem)."""

    name: ServerName
    command: list[str] = Field(min_length=1)
    shell: bool = False
    port: PortSpec | None = None
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    enabled: bool = True
    depends_on: list[ServerName] = Field(default_factory=list)
    health: HealthSpec | None = None
    restart: RestartSpec = Field(default_factory=RestartSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    domain: DomainSpec | None = None

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parts = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split the command: {exc}") from None
            return parts
        return value

    @field_validator("command")
    @classmethod
    def _no_nul_in_command(cls, value: list[str]) -> list[str]:
        bad = [str(i + 1) for i, part in enumerate(value) if "\0" in part]
        if bad:
            raise ValueError(f"part {', '.join(bad)} of the command holds a NUL character (\\0), "
                             "which no program can be given; remove it")
        return value

    @field_validator("cwd")
    @classmethod
    def _no_control_characters_in_cwd(cls, value: str | None) -> str | None:
        if value is not None and any(ch in value for ch in "\n\r\t\f\b\v\0"):
            raise ValueError(f"{quote(value)} holds a line break or tab: a Windows path in \"double quotes\" "
                             "turns \\n, \\t, \\f, \\b into those; write it in 'single quotes' or with forward slashes")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_values_as_text(cls, value: Any) -> Any:
        """Every entry checked, every bad one named: names the OS refuses (empty, '=' or NUL
        in them) and values that are not text or hold a NUL."""
        if not isinstance(value, dict):
            return value
        out, bad = {}, []
        for key, item in value.items():
            key_text = shown(key)
            if not key or "=" in key or "\0" in key:
                bad.append(f"{key_text}: a variable name cannot be empty or hold '=' or a NUL character")
            elif isinstance(item, bool) or not isinstance(item, (str, int, float)):
                bad.append(f"{key_text} = {shown(repr(item))}: must be a string or a number")
            elif isinstance(item, str) and "\0" in item:
                bad.append(f"{key_text}: the value holds a NUL character (\\0), which the OS refuses")
            else:
                out[key] = str(item)
        if bad:
            raise ValueError("; ".join(bad[:MAX_LISTED]) + (
                f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""))
        return out

    @model_validator(mode="after")
    def _not_own_dependency(self) -> ServerSpec:
        if self.name in self.depends_on:
            raise ValueError(f"depends_on: {self.name} cannot depend on itself")
        return self

    def effective_health(self) -> HttpHealth | TcpHealth | CommandHealth | NoHealth | RunningHealth:
        """The health check in force: the declared one, else tcp when there is a port."""
        if self.health is not None:
            return self.health
        if self.port is not None:
            return _TCP  # one for all: every check asks (a model built per check was most of its cost)
        return _NO_HEALTH

    def runtime_hash(self) -> str:
        """A digest of the fields that need a restart when they change.

        description, group, tags, health, restart and domain settings apply to a running
        process without restarting it. Made once per spec (it is frozen): the plan asks for it
        for every server at every pass."""
        return self._runtime_hash

    @functools.cached_property
    def _runtime_hash(self) -> str:  # kept in the instance's __dict__, which equality ignores
        runtime = self.model_dump(include={"command", "shell", "port", "cwd", "env"}, mode="json")
        text = json.dumps(runtime, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, without the digest of the original (`update` may change what it covers)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("_runtime_hash", None)
        return copy


_TCP = TcpHealth(type="tcp")  # the check of a server with a port and no [health]
_NO_HEALTH = NoHealth(type="none")


class DatabaseSettings(_Model):
    dsn: str | None = None


class WebSettings(_Model):
    listen: str = "127.0.0.1:8765"
    access_team: str | None = None  # Cloudflare Access: the team name (<team>.cloudflareaccess.com)
    access_aud: str | None = None  # ... and the application's audience tag
    # the page on the internet: the tunnel routes this name to the page's tunnel door (its own
    # loopback listener, where every request is remote and needs a full sign-in)
    hostname: str | None = None
    local_names: list[str] = Field(default_factory=list)  # more names the local door answers to


class PortsSettings(_Model):
    range: tuple[int, int] = (20000, 29999)

    @field_validator("range", mode="before")
    @classmethod
    def _parse_range(cls, value: Any) -> Any:
        if isinstance(value, str):
            lo, sep, hi = value.partition("-")
            if not sep or not plain_digits(lo.strip()) or not plain_digits(hi.strip()):
                raise ValueError(f'{value!r} is not a port range: write it like "20000-29999"')
            return (int(lo), int(hi))
        return value

    @model_validator(mode="after")
    def _ordered(self) -> PortsSettings:
        lo, hi = self.range
        if not (1 <= lo <= hi <= 65535):
            raise ValueError(f"{lo}-{hi} is not a port range within 1-65535")
        return self


class HostSettings(_Model):
    """Host figures sampled with the servers'. `internet_check` is a host:port that a TCP
    connect should reach when the internet is up ("off" to not check)."""

    internet_check: str = "1.1.1.1:443"
    sample_every: Duration = 10.0
    battery_alert: int = Field(20, ge=0, le=100)  # % of battery below which the owner is told (0: never)

    @field_validator("internet_check")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value == "off":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not plain_digits(port) or not 1 <= int(port) <= 65535:
            raise ValueError(f'{value!r} must be host:port, like "1.1.1.1:443", or "off"')
        return value


class GatewayFile(_Model):
    """``gateway.d/gateway.toml``: global settings. Sections that later features own
    (tunnel, notify, sync) are kept as tables until their schema lands."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    ports: PortsSettings = Field(default_factory=PortsSettings)
    host: HostSettings = Field(default_factory=HostSettings)
    tunnel: dict[str, Any] = Field(default_factory=dict)
    notify: dict[str, Any] = Field(default_factory=dict)
    sync: dict[str, Any] = Field(default_factory=dict)
