"""Load the ``gateway.d`` folder into validated specs, with errors a person can act on.

Reading files is the only I/O here; everything else (line lookup, the last-good rule,
port and dependency checks across files) is plain data work. An error names the file,
the line and column where one is known, the key and the reason, like a compiler:

    gateway.d/blog.toml:4:8: port: 70000 is not a port (1-65535)

A file that fails keeps its last good version in force (``LoadResult.stale``), so a
half-written file from an editor or ``git pull`` never stops a running server.
"""

from __future__ import annotations

import difflib
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, get_args

import tomli_w
from pydantic import BaseModel, ValidationError

from reconciler.core.names import GATEWAY_FILE, RESERVED_NAMES
from reconciler.core.spec import (
    MAX_QUOTED,
    NAME_PATTERN,
    HEALTH_KINDS,
    DomainSpec,
    GatewayFile,
    RestartSpec,
    ServerSpec,
    StopSpec,
    format_duration,
    quote,
)
from reconciler.platform import current
from reconciler.platform.fsutil import NotRegularFile, read_regular

_NAME_RE = re.compile(NAME_PATTERN)
_IGNORED_SUFFIXES = ("~", ".tmp", ".swp")
_TOML_POS_RE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TOML_EOF_RE = re.compile(r"^(?P<msg>.*?)\s*\(at end of document\)$")


MAX_MESSAGE = 400  # characters: an error quotes the user's text, never all of a huge one


@dataclass(frozen=True)
class ConfigError:
    path: str
    line: int | None
    column: int | None
    key: str | None
    message: str

    def __post_init__(self) -> None:
        if self.key is not None and len(self.key) > MAX_QUOTED:
            object.__setattr__(self, "key", self.key[:MAX_QUOTED] + f"... ({len(self.key)} characters)")
        if len(self.message) > MAX_MESSAGE:
            object.__setattr__(self, "message", self.message[:MAX_MESSAGE] + " ... (cut)")

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadResult:
    """What the folder says now. ``specs`` includes last-good versions of broken files;
    ``stale`` names those; ``files`` maps each server name to the file it came from."""

    specs: dict[str, ServerSpec] = field(default_factory=dict)
    errors: tuple[ConfigError, ...] = ()
    settings: GatewayFile = field(default_factory=GatewayFile)
    files: dict[str, str] = field(default_factory=dict)
    stale: frozenset[str] = frozenset()
    # path -> (its stat signature, the bytes read, what they gave): a file whose bytes did not
    # change since the previous load is not parsed and validated again, and one that was
    # already settled when read, and has the same signature now, is not even read again
    # (the 30 s resync looks at every file)
    parsed: dict[str, tuple[Signature | None, bytes, ServerSpec | list[ConfigError]]] = field(
        default_factory=dict, repr=False, compare=False)


Signature = tuple[int, int, int, int]  # inode (Windows: file index), size, mtime and change time in ns
SETTLED = 2.0  # seconds: a file last changed this long before it was read has its signature kept


def signature(path: Path, read_at: float) -> Signature | None:
    """The file's identity and times, when it had not changed for SETTLED seconds at
    `read_at` (a time.time() taken before the read). A file's times have the kernel's coarse
    granularity (a few ms), so two writes in a row can share them: a signature is only trusted
    for a file that was already quiet when read. None: read it again next time."""
    try:
        st = os.stat(path)
        changed = current().changed_ns(str(path), st)  # moves on any write, even with the mtime put back
    except OSError:
        return None
    if read_at - max(st.st_mtime_ns, changed) / 1e9 < SETTLED:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, changed)


def is_server_file(path: Path) -> bool:
    """Every ``*.toml`` except gateway.toml, editor temp files and hidden files."""
    name = path.name
    if not name.endswith(".toml") or name == GATEWAY_FILE:
        return False
    if name.startswith((".", "_")) or name.endswith(_IGNORED_SUFFIXES):
        return False
    return True


# --- one file ---------------------------------------------------------------------------
WINDOWS_PATH_HINT = ("; a backslash in \"double quotes\" starts an escape: write Windows paths in 'single quotes' "
                     "('C:\\Users\\me') or with forward slashes (\"C:/Users/me\")")


# Deeper than this is "nested too deeply", whatever the Python: a list nested hundreds of times
# exhausts tomllib's recursion, but a table header of a thousand dotted keys parses on every version
# and then exhausted the recursion in the checks only where they recurse in Python (3.11; 3.13's
# repr does not count against the limit), and was a type error elsewhere.
MAX_NESTING = 100


def _nesting(data: object) -> int:
    """How deeply lists and tables nest in `data` (a top-level table: 1), without recursion."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        value, depth = todo.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                break
            todo.extend((child, depth + 1) for child in children)
    return deepest


def parse_toml(path: Path, text: str) -> dict[str, Any] | ConfigError:
    try:
        data = tomllib.loads(text)
        return _too_deep(path) if _nesting(data) > MAX_NESTING else data
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POS_RE.match(message)
        if match:
            line = int(match["line"])
            hint = ""
            if match["msg"] in ("Invalid hex value", "Unescaped '\\' in a string") and "\\" in _nth_line(text, line):
                hint = WINDOWS_PATH_HINT
            return ConfigError(str(path), line, int(match["col"]), None, f"TOML syntax: {match['msg']}{hint}")
        match = _TOML_EOF_RE.match(message)
        if match:
            return ConfigError(str(path), text.count("\n") + 1, None, None, f"TOML syntax: {match['msg']}")
        return ConfigError(str(path), None, None, None, f"TOML syntax: {message}")


def _nth_line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""


def read_text(path: Path, raw: bytes | None = None) -> str | ConfigError:
    """The file's text; never opens a named pipe, a socket or a device (fsutil.read_regular)."""
    try:
        return (read_regular(path) if raw is None else raw).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ConfigError(str(path), None, None, None, f"not UTF-8 text (byte {exc.start})")
    except NotRegularFile as exc:
        what = "the settings file" if path.name == GATEWAY_FILE else "a server file"
        return ConfigError(str(path), None, None, None,
                           f"not a regular file ({exc.kind}): {what} must be a plain file; remove it or rename it")
    except OSError as exc:
        return ConfigError(str(path), None, None, None, f"cannot read: {exc.strerror or exc}")


def load_file(path: Path, raw: bytes | None = None) -> ServerSpec | list[ConfigError]:
    """One server file (or the bytes already read from it) -> its spec, or every error in it.
    Never raises: whatever goes wrong reading or checking a file is an error on that file."""
    try:
        return _load_file(path, raw)
    except RecursionError:
        return [_too_deep(path)]
    except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop the gateway
        return [ConfigError(str(path), None, None, None, f"could not be checked ({type(exc).__name__}: {exc})")]


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(str(path), None, None, None,
                       "nested too deeply (lists or tables inside each other hundreds of times); "
                       "no setting needs that: remove the nesting")


def reserved_name_error(path: Path) -> ConfigError | None:
    name = path.stem
    if name not in RESERVED_NAMES:
        return None
    what = "the global settings file" if name == "gateway" else "the tunnel connector the gateway runs"
    return ConfigError(str(path), None, None, None,
                       f"the name {name!r} is reserved for {what}; rename this file")


def _load_file(path: Path, raw: bytes | None) -> ServerSpec | list[ConfigError]:
    name = path.stem
    if not _NAME_RE.match(name):
        return [ConfigError(str(path), None, None, None,
                            f"{quote(name)} is not a valid server name (the file name is the name): use 1-63 "
                            "lowercase letters, digits and '-', starting with a letter or digit")]
    reserved = reserved_name_error(path)
    if reserved is not None:
        return [reserved]
    text = read_text(path, raw)
    if isinstance(text, ConfigError):
        return [text]
    data = parse_toml(path, text)
    if isinstance(data, ConfigError):
        return [data]
    if "name" in data and data["name"] != name:
        return [ConfigError(str(path), _Lines(text).find(("name",)), None, "name",
                            f"{quote(str(data['name']))} differs from the file name; the name of a server is its "
                            f"file name ({name}), so remove this key or rename the file")]
    data = {**data, "name": name}
    try:
        return ServerSpec.model_validate(data)
    except ValidationError as exc:
        return _errors_from(path, text, data, exc, ServerSpec)


def load_gateway_file(path: Path) -> GatewayFile | ConfigError:
    try:
        return _load_gateway_file(path)
    except RecursionError:
        return _too_deep(path)
    except Exception as exc:  # noqa: BLE001 - as in load_file
        return ConfigError(str(path), None, None, None, f"could not be checked ({type(exc).__name__}: {exc})")


def _load_gateway_file(path: Path) -> GatewayFile | ConfigError:
    text = read_text(path)
    if isinstance(text, ConfigError):
        return text
    data = parse_toml(path, text)
    if isinstance(data, ConfigError):
        return data
    try:
        return GatewayFile.model_validate(data)
    except ValidationError as exc:
        return _errors_from(path, text, data, exc, GatewayFile)[0]


# --- the folder --------------------------------------------------------------------------
def server_paths(folder: Path) -> list[Path]:
    """The server files of a folder, sorted. A link counts, dangling or looping as it may be
    (reading it then fails, which is an error on that file), so replacing a running server's
    file with a broken link keeps that server's last good version instead of stopping it."""
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        if not is_server_file(path):
            continue
        try:
            if path.is_symlink() or not path.is_dir():
                out.append(path)
        except OSError:
            out.append(path)
    return sorted(out)


def load_dir(folder: Path, previous: LoadResult | None = None,
             sticky_ports: Mapping[str, int] | None = None) -> LoadResult:
    """Every server file in ``folder``; broken files fall back to ``previous``.
    ``sticky_ports`` (name -> the port an automatic-port server was given) lets a fixed port
    that another server holds already be refused here, naming that server."""
    folder = Path(folder)
    errors: list[ConfigError] = []
    settings = previous.settings if previous else GatewayFile()
    gateway_path = folder / GATEWAY_FILE
    if os.path.lexists(gateway_path):  # a pipe or a folder of that name is an error, not "no settings"
        loaded = load_gateway_file(gateway_path)
        if isinstance(loaded, ConfigError):
            errors.append(loaded)
        else:
            settings = loaded
    else:
        settings = GatewayFile()

    fresh: dict[str, ServerSpec] = {}
    files: dict[str, str] = {}
    broken: set[str] = set()
    paths = server_paths(folder)
    cache = previous.parsed if previous else {}
    parsed: dict[str, tuple[Signature | None, bytes, ServerSpec | list[ConfigError]]] = {}
    for path in paths:
        hit = cache.get(str(path))
        read_at = time.time()
        sig = signature(path, read_at)  # before the read: a write after it changes the signature
        raw: bytes | None
        if hit is not None and sig is not None and hit[0] == sig:
            raw, result = hit[1], hit[2]  # settled and untouched since: not read again
        else:
            try:
                raw = read_regular(path)  # never a pipe, a socket or a device: it could block for good
            except OSError:
                raw = None  # load_file says why
            result = hit[2] if raw is not None and hit is not None and hit[1] == raw else load_file(path, raw)
        if raw is not None:
            parsed[str(path)] = (sig, raw, result)
        reserved = reserved_name_error(path)
        if reserved is not None:  # not a server at all: no last good version, no file entry
            errors.append(reserved)
            continue
        files[path.stem] = str(path)
        if isinstance(result, ServerSpec):
            fresh[result.name] = result
        else:
            errors.extend(result)
            broken.add(path.stem)

    old = previous.specs if previous else {}
    specs = dict(fresh)
    stale = set()
    for name in broken:
        if name in old:
            specs[name] = old[name]
            stale.add(name)

    _drop_port_clashes(specs, fresh, old, files, errors, stale, sticky_ports or {})
    _drop_bad_dependencies(specs, files, errors, stale, old)
    return LoadResult(specs=dict(sorted(specs.items())), errors=tuple(errors), settings=settings,
                      files=files, stale=frozenset(stale), parsed=parsed)


def _drop_port_clashes(specs: dict[str, ServerSpec], fresh: Mapping[str, ServerSpec],
                       old: Mapping[str, ServerSpec], files: Mapping[str, str],
                       errors: list[ConfigError], stale: set[str], sticky: Mapping[str, int]) -> None:
    """Two servers with one port: the one that held it before keeps it (else the first by
    name; an automatic port given to a server counts as held); the other gets an error
    naming both, and its last good version."""
    def held_before(name: str) -> bool:
        return specs[name].port == "auto" or (name in old and old[name].port == specs[name].port)

    by_port: dict[int, list[str]] = {}
    for name, spec in specs.items():
        if isinstance(spec.port, int) and spec.enabled:
            by_port.setdefault(spec.port, []).append(name)
    for name, port in sticky.items():
        given = specs.get(name)
        if given is not None and given.port == "auto" and given.enabled and port in by_port:
            by_port[port].append(name)
    for port, names in by_port.items():
        if len(names) < 2:
            continue
        holder = sorted(names, key=lambda n: (not held_before(n), n))[0]
        for name in names:
            if name == holder:
                continue
            path = files[name]
            line = _line_of(path, ("port",))
            how = " (the port it was given automatically)" if specs[holder].port == "auto" else ""
            errors.append(ConfigError(path, line, None, "port",
                                      f"{port} is already used by {holder}{how} ({files[holder]}); "
                                      "pick another port or \"auto\""))
            fallback = old.get(name)
            if fallback is not None and fallback.port != port:
                specs[name] = fallback
                stale.add(name)
            else:
                del specs[name]
                stale.discard(name)


def _drop_bad_dependencies(specs: dict[str, ServerSpec], files: Mapping[str, str],
                           errors: list[ConfigError], stale: set[str],
                           old: Mapping[str, ServerSpec]) -> None:
    """Unknown dependencies and cycles are errors on the files that name them; those
    servers keep their last good version (or are left out when they have none)."""
    rejected: set[str] = set()
    for name in sorted(specs):
        missing = [d for d in specs[name].depends_on if d not in specs]
        unknown = [d for d in missing if d not in files]
        broken = [d for d in missing if d in files]
        path = files.get(name, name)
        if unknown:
            known = ", ".join(sorted(set(files) - {name})) or "none"
            errors.append(ConfigError(path, _line_of(path, ("depends_on",)), None, "depends_on",
                                      f"unknown server {', '.join(map(repr, unknown))} (known: {known})"))
        if broken:
            errors.append(ConfigError(path, _line_of(path, ("depends_on",)), None, "depends_on",
                                      f"{', '.join(map(repr, broken))} is left out because of its own "
                                      "errors, so this server cannot start either"))
        if missing:
            rejected.add(name)
    for cycle in find_cycles({n: s.depends_on for n, s in specs.items()}):
        text = " -> ".join([*cycle, cycle[0]])
        for name in cycle:
            path = files.get(name, name)
            errors.append(ConfigError(path, _line_of(path, ("depends_on",)), None, "depends_on",
                                      f"dependency cycle {text}"))
        rejected.update(cycle)
    for name in rejected:
        fallback = old.get(name)
        if fallback is not None and fallback != specs[name]:
            specs[name] = fallback
            stale.add(name)
        else:
            del specs[name]
            stale.discard(name)
    # a fallback may itself name a server that is gone now, or close a cycle: leave those out
    for _ in range(len(specs)):
        bad = {n for n, s in specs.items() if any(d not in specs for d in s.depends_on)}
        bad |= {n for cycle in find_cycles({n: s.depends_on for n, s in specs.items()}) for n in cycle}
        if not bad:
            break
        for name in sorted(bad):
            missing = [d for d in specs[name].depends_on if d not in specs]
            if missing:
                path = files.get(name, name)
                errors.append(ConfigError(path, _line_of(path, ("depends_on",)), None, "depends_on",
                                          f"{', '.join(map(repr, missing))} is left out because of its own "
                                          "errors, so this server cannot start either"))
        for name in bad:
            del specs[name]
            stale.discard(name)


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each dependency cycle once, starting at its smallest name."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):]
                start = cycle.index(min(cycle))
                cycle = cycle[start:] + cycle[:start]
                if tuple(cycle) not in seen:
                    seen.add(tuple(cycle))
                    cycles.append(cycle)
            elif state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


# --- pydantic errors -> file positions --------------------------------------------------------
_KNOWN_KEYS: dict[str, list[str]] = {
    "": list(ServerSpec.model_fields),
    "health": sorted({key for kind in HEALTH_KINDS for key in kind.model_fields}),
    "restart": list(RestartSpec.model_fields),
    "stop": list(StopSpec.model_fields),
    "domain": list(DomainSpec.model_fields),
}


def _errors_from(path: Path, text: str, data: Mapping[str, Any], exc: ValidationError,
                 model: type[BaseModel]) -> list[ConfigError]:
    lines = _Lines(text)
    out: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        keys = _data_path(data, err["loc"])
        key = ".".join(str(k) for k in keys) or None
        line = lines.find(keys)
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
            known = _KNOWN_KEYS.get(".".join(str(k) for k in keys[:-1]), []) if model is ServerSpec else []
            if not known and model is GatewayFile and len(keys) > 1:
                sub = GatewayFile.model_fields.get(str(keys[0]))
                ann = getattr(sub, "annotation", None) if sub else None
                known = list(getattr(ann, "model_fields", {}))
            elif not known and model is GatewayFile:
                known = list(GatewayFile.model_fields)
            check = _health_kind(data) if model is ServerSpec and [str(k) for k in keys[:-1]] == ["health"] else None
            if check is not None and keys[-1] in known:  # a setting of another kind of check
                own = [k for k in check.model_fields if k != "type"]
                message = f'a "{data["health"]["type"]}" check has no {keys[-1]} (its settings: {", ".join(own)})'
                known = []
            close = difflib.get_close_matches(str(keys[-1]), [k for k in known if k != "name"], n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        elif kind == "missing":
            message = "is required"
            line = None
        else:
            message = _clean(err["msg"])
        out.append(ConfigError(str(path), line, None, key, message))
    return out


def _health_kind(data: Mapping[str, Any]) -> type[BaseModel] | None:
    """The model of the file's kind of check (`[health] type`), when it names one."""
    health = data.get("health")
    kind = health.get("type") if isinstance(health, dict) else None
    return next((m for m in HEALTH_KINDS if get_args(m.model_fields["type"].annotation) == (kind,)), None)


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _data_path(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The loc pydantic reports, minus the union-tag steps that are not in the file
    (``health.http.path`` -> ``health.path``)."""
    keys: list[Any] = []
    node = data
    for step in loc:
        if isinstance(node, dict):
            if step in node:
                keys.append(step)
                node = node[step]
            elif isinstance(step, str) and node.get("type") == step:
                continue
            else:
                keys.append(step)
                node = None
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            keys.append(step)
            node = node[step]
        else:
            keys.append(step)
            node = None
    return keys


class _Lines:
    """Where each key is written: ``[table]`` headers, ``key = value`` and dotted keys,
    and inline tables one level deep. Good enough for pointing at a line."""

    _HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")
    _ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\".]+)\s*=")

    def __init__(self, text: str) -> None:
        self.where: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, raw in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(raw)
            if header and not raw.lstrip().startswith("[["):
                table = tuple(p.strip().strip('"') for p in header.group(1).split("."))
                self.where.setdefault(table, number)
                continue
            assign = self._ASSIGN.match(raw)
            if assign:
                key = table + tuple(p.strip().strip('"') for p in assign.group(1).split("."))
                self.where.setdefault(key, number)
                for inner in re.finditer(r"[{,]\s*([A-Za-z0-9_\-]+)\s*=", raw):
                    self.where.setdefault(key + (inner.group(1),), number)

    def find(self, keys: Iterable[Any]) -> int | None:
        path = tuple(str(k) for k in keys if not isinstance(k, int))
        while path:
            if path in self.where:
                return self.where[path]
            path = path[:-1]
        return None


def _line_of(path: str, keys: tuple[str, ...]) -> int | None:
    text = read_text(Path(path))
    return None if isinstance(text, ConfigError) else _Lines(text).find(keys)


# --- writing -------------------------------------------------------------------------------
_DURATION_KEYS = {"interval", "timeout", "start_period", "min_uptime", "backoff_start", "backoff_max", "backoff_reset", "probation"}


def spec_to_toml(spec: ServerSpec) -> str:
    """The TOML text of a spec, without defaults and without the name (the file stem)."""
    data = spec.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
    if spec.health is not None:
        data["health"] = spec.health.model_dump(mode="json", exclude_defaults=True)
        data["health"]["type"] = spec.health.type
    return tomli_w.dumps(format_durations(data))


def format_durations(data: Any) -> Any:
    """Seconds back to duration strings (a spec's JSON, as PostgreSQL keeps it, validates again)."""
    if isinstance(data, dict):
        return {k: (format_duration(v) if k in _DURATION_KEYS and isinstance(v, (int, float))
                    else format_durations(v)) for k, v in data.items()}
    return data
