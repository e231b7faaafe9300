"""Add / edit / delete a server from the page. The form becomes TOML: the existing file is read
with tomllib, the form's keys are merged in (keys the form does not know are kept), the result
is validated with `ServerSpec` like the loader does, and written atomically (temp + rename).
The watcher applies it like any edit; the page then waits briefly to show the outcome."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.core.digits import plain_digits
from reconciler.core.events import EventKind
from reconciler.core.names import RESERVED_NAMES
from reconciler.core.spec import HEALTH_KINDS, ServerSpec
from reconciler.ops import tomledit
from reconciler.platform.fsutil import NotRegularFile, read_regular
from reconciler.tunnel.connector import domain_problems
from webview.cmdline import CommandError, folder_problem, join_command, program_problem, split_command
from webview.infra import trying
from webview.infra import auth
from webview.infra.page import gateway_of, page_of
from webview.infra.render import redirect, render
from webview.pages import NAME_RE, known
from webview.portcheck import check_port, port_message
from webview.starters import STARTERS

FIELDS = ("name", "description", "command", "cwd", "port", "env", "group", "tags", "health_type", "health_path",
          "health_command", "domain")
# the form's check choices, in the order the list shows them: each kind the spec knows
# (reconciler/core/spec.py HEALTH_KINDS) with its words; "" is the automatic check
HEALTH_CHOICES = {"": "Automatic (its port answers)", "http": "A web page answers (HTTP)", "tcp": "Its port answers",
                  "command": "A command succeeds", "running": "It keeps running (no web page)", "none": "No check"}


def _every_kind_has_words() -> tuple[str, ...]:
    """The form's check types; a kind of check without words (or words for no kind) fails at import."""
    kinds = {get_args(kind.model_fields["type"].annotation)[0] for kind in HEALTH_KINDS}
    if kinds != HEALTH_CHOICES.keys() - {""}:
        raise RuntimeError(f"HEALTH_CHOICES and the spec's HEALTH_KINDS differ: {sorted(kinds ^ (HEALTH_CHOICES.keys() - {''}))}")
    return tuple(HEALTH_CHOICES)


HEALTH_TYPES = _every_kind_has_words()
# the settings of a check the form does not show, kept from the file when the form saves it
KEPT_HEALTH_KEYS = {"running": ("min_uptime", "needs_internet"), "none": ()}
CHECK_TIMING = ("interval", "timeout", "failures", "start_period")
APPLY_WAIT = 5.0  # seconds to wait for the watcher to pick the file up


class FormError(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def server_path(config_dir: Path, name: str) -> Path:
    """gateway.d/NAME.toml for a valid name, never a path outside the folder."""
    if not NAME_RE.match(name):
        raise FormError({"name": "use 1-63 lowercase letters, digits and '-', starting with a letter or digit"})
    if name in RESERVED_NAMES:
        raise FormError({"name": f"{name} is a name the gateway uses for itself; pick another"})
    path = (config_dir / f"{name}.toml").resolve()
    if path.parent != config_dir.resolve():
        raise FormError({"name": "that name points outside the server folder"})
    return path


def read_text(path: Path) -> str:
    try:
        return read_regular(path).decode("utf-8-sig") if path.exists() else ""
    except UnicodeDecodeError as exc:
        raise FormError({"": f"{path.name} cannot be read as text ({exc}); fix it in an editor first"}) from None
    except NotRegularFile as exc:
        raise FormError({"": f"{path.name} is not a regular file ({exc.kind}); remove it first"}) from None


def read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise FormError({"": f"{path.name} cannot be read as TOML ({exc}); fix it in an editor first"}) from None


def form_values(data: Mapping[str, Any], name: str = "") -> dict[str, str]:
    """An existing file's data as the form's text fields."""
    command = data.get("command", "")
    health = data.get("health") or {}
    hc = health.get("command", "")
    return {
        "name": name, "description": str(data.get("description", "")),
        "command": join_command(command) if isinstance(command, list) else str(command),
        "cwd": str(data.get("cwd", "")), "port": str(data.get("port", "")),
        "env": "\n".join(f"{k}={v}" for k, v in (data.get("env") or {}).items()),
        "group": str(data.get("group", "")), "tags": ", ".join(data.get("tags") or []),
        "health_type": str(health.get("type", "")), "health_path": str(health.get("path", "")),
        "health_command": join_command(hc) if isinstance(hc, list) else str(hc),
        "domain": str((data.get("domain") or {}).get("hostname", "")),
    }


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    if value in ("", None, [], {}):
        data.pop(key, None)
    else:
        data[key] = value


def merge(data: Mapping[str, Any], form: Mapping[str, str], errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The file's data with the form's fields applied; other keys untouched. Problems go
    into `errors` (all of them, one per field) when given, else raise FormError."""
    collect = errors is not None
    errors = errors if errors is not None else {}
    out = {k: v for k, v in data.items() if k != "name"}
    try:
        out["command"] = split_command(form.get("command", ""))
    except CommandError as exc:
        errors["command"] = f"cannot split the command: {exc}"
        out["command"] = form.get("command", "").split()
    _set(out, "description", form.get("description", "").strip())
    _set(out, "cwd", form.get("cwd", "").strip())
    port = form.get("port", "").strip()
    _set(out, "port", int(port) if plain_digits(port) else port)
    env: dict[str, str] = {}
    for number, line in enumerate(form.get("env", "").splitlines(), start=1):
        if line.strip():
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                errors["env"] = f"line {number}: write KEY=value"
            env[key.strip()] = value.strip()
    _set(out, "env", env)
    _set(out, "group", form.get("group", "").strip())
    _set(out, "tags", [t.strip() for t in form.get("tags", "").split(",") if t.strip()])
    kind = form.get("health_type", "")
    if kind not in HEALTH_TYPES:
        errors["health_type"] = "choose one of the listed checks"
    elif not kind:
        out.pop("health", None)
    else:
        old = dict(out.get("health") or {})
        health = {k: v for k, v in old.items() if k in KEPT_HEALTH_KEYS.get(kind, CHECK_TIMING)}
        health["type"] = kind
        if kind == "http":
            _set(health, "path", form.get("health_path", "").strip() or "/")
        if kind == "command":
            try:
                health["command"] = split_command(form.get("health_command", ""))
            except CommandError as exc:
                errors["health_command"] = f"cannot split the command: {exc}"
        out["health"] = health
    hostname = form.get("domain", "").strip()
    if hostname:
        out["domain"] = {**(out.get("domain") or {}), "hostname": hostname}
    else:
        out.pop("domain", None)
    if errors and not collect:
        raise FormError(errors)
    return out


_FIELD_OF = {"health": "health_type", "domain": "domain"}


def validate(name: str, data: Mapping[str, Any], others: Mapping[str, ServerSpec],
             errors: dict[str, str] | None = None) -> ServerSpec | None:
    """The spec the loader would make of `data`; every problem into `errors` (or raised)."""
    collect = errors is not None
    errors = errors if errors is not None else {}
    try:
        spec = ServerSpec.model_validate({**data, "name": name})
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = _FIELD_OF.get(loc[0], loc[0]) if loc else ""
            if loc[:1] == ["health"] and loc[-1] == "path":
                field = "health_path"
            if loc[:1] == ["health"] and "command" in loc:
                field = "health_command"
            message = err["msg"].removeprefix("Value error, ")
            errors.setdefault(field if field in FIELDS else "", message if field in FIELDS else
                              f"{'.'.join(loc)}: {message}")
        if not collect:
            raise FormError(errors) from None
        return None
    if isinstance(spec.port, int):
        for other, o in others.items():
            if other != name and o.port == spec.port:
                errors.setdefault("port", f"port {spec.port} is already {other}'s; pick another or choose auto")
    if errors and not collect:
        raise FormError(errors)
    return spec


def check_world(data: Mapping[str, Any], config_dir: Path, errors: dict[str, str]) -> None:
    """Before saving: the working folder exists and the program can be found in it."""
    folder, why = folder_problem(str(data.get("cwd") or ""), config_dir)
    if why:
        errors.setdefault("cwd", why)
    if folder is not None and not data.get("shell") and "command" not in errors:
        command = data.get("command")
        argv = command if isinstance(command, list) else split_command(str(command or ""))
        problem = program_problem(argv, folder, data.get("env") or {})
        if problem:
            errors.setdefault("command", problem)


def write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """`data` into the file, keeping its comments and the order of the keys that stay."""
    tomledit.write_atomic(path, tomledit.replace_all(read_text(path), data))


async def _wait_applied(request: Request, check: Callable[[Mapping[str, ServerSpec]], bool]) -> bool:
    daemon = gateway_of(request)
    return await daemon.rt.wait_until(
        lambda: daemon.reconciler.result is not None and check(daemon.reconciler.result.specs), APPLY_WAIT)


def _page(request: Request, values: dict[str, str], errors: dict[str, str], adding: bool, status: int = 200,
          note: str | None = None, start: str = "", tried: dict[str, Any] | None = None) -> Response:
    return render(request, "form.html", status=status, v=values, errors=errors, adding=adding,
                  health_choices=HEALTH_CHOICES, note=note, starters=STARTERS, start=start,
                  start_help=STARTERS.get(start, {}).get("help", ""), tried=tried)


@auth.page
async def new_form(request: Request) -> Response:
    start = request.query_params.get("start", "")
    values = form_values({"port": "auto"})
    if start in STARTERS:
        values.update(STARTERS[start]["values"])
    return _page(request, values, {}, adding=True, start=start if start in STARTERS else "")


@auth.page
async def edit_form(request: Request) -> Response:
    name = known(request, request.path_params["name"])
    path = server_path(gateway_of(request).settings.config_dir, name)
    try:
        values = form_values(read_file(path), name)
    except FormError as exc:
        return _page(request, form_values({}, name), exc.errors, adding=False, status=409)
    return _page(request, values, {}, adding=False)


@auth.action
async def save(request: Request) -> Response | trying.LiveTry:
    user, raw = auth.user_name(request), await request.form()
    form = {k: str(raw.get(k, "")) for k in FIELDS}
    adding = "name" not in request.path_params
    name = (form["name"].strip() if adding else request.path_params["name"])
    form["name"] = name
    daemon = gateway_of(request)
    if raw.get("action") == "check-port":
        return _page(request, form, {}, adding, note=await port_message(request, form["port"], name))
    errors: dict[str, str] = {}
    start = str(raw.get("start", ""))
    try:
        path = server_path(daemon.settings.config_dir, name)
    except FormError as exc:
        if not adding:
            raise HTTPException(404, f"no server named {name!r}") from None
        errors.update(exc.errors)
        path = None
    if path is not None and adding and path.exists():
        errors["name"] = f"there is already a server named {name}; pick another name"
    if path is not None and not adding and not path.exists():
        raise HTTPException(404, f"no server file for {name}")
    try:
        existing = read_file(path) if path is not None and not adding else {}
    except FormError as exc:
        return _page(request, form, exc.errors, adding, status=422, start=start)
    data = merge(existing, form, errors)
    specs = daemon.reconciler.result.specs if daemon.reconciler.result else {}
    spec = validate(name if path is not None else "x", data, specs, errors)
    await asyncio.to_thread(check_world, data, daemon.settings.config_dir, errors)
    if spec is not None and spec.domain is not None and "domain" not in errors and daemon.reconciler.result:
        problems = await asyncio.to_thread(domain_problems, daemon.reconciler.result, daemon.settings.config_dir,
                                           daemon.settings.data_dir, dict(daemon.rt.ports), spec)
        if problems:  # the tunnel would refuse it: said before it is saved, not after
            errors["domain"] = "; ".join(problems)
    if errors or spec is None or path is None:
        return _page(request, form, errors, adding, status=422, start=start)
    if raw.get("action") == "try":  # nothing is saved: webview/infra/trying.py
        if trying.wants_live(request):
            return trying.LiveTry(page_of(request).tries, daemon.settings, spec, adding)
        tried = await trying.tried(page_of(request).tries, daemon.settings, spec)
        return _page(request, form, {}, adding, start=start, tried=tried)
    await asyncio.to_thread(write_atomic, path, data)
    daemon.rt.event(EventKind.CONFIG_WRITTEN, name, f"{'added' if adding else 'edited'} from the page",
                    actor=f"operator:web:{user}")
    applied = await _wait_applied(request, lambda specs: specs.get(name) == spec)
    message = f"{name} {'added' if adding else 'saved'}" + ("" if applied else "; waiting for the gateway to load it")
    return redirect(request, f"/servers/{name}" if applied else "/", message)


@auth.page
async def delete_form(request: Request) -> Response:
    name = known(request, request.path_params["name"])
    return render(request, "delete.html", name=name)


@auth.action
async def delete(request: Request) -> Response:
    user = auth.user_name(request)
    name = request.path_params["name"]
    daemon = gateway_of(request)
    try:
        path = server_path(daemon.settings.config_dir, name)  # never gateway.toml: "gateway" is reserved
    except FormError:
        raise HTTPException(404, f"no server named {name!r}") from None
    if not path.exists():
        raise HTTPException(404, f"no server file for {name}")
    await asyncio.to_thread(path.unlink)
    daemon.rt.event(EventKind.CONFIG_WRITTEN, name, "file deleted from the page", actor=f"operator:web:{user}")
    gone = await _wait_applied(request, lambda specs: name not in specs)
    return redirect(request, "/", f"{name} deleted" + ("; it is stopping" if gone else ""))


routes = [
    Route("/new", new_form),
    Route("/new", save, methods=["POST"]),
    Route("/servers/{name}/edit", edit_form),
    Route("/servers/{name}/edit", save, methods=["POST"]),
    Route("/servers/{name}/delete", delete_form),
    Route("/servers/{name}/delete", delete, methods=["POST"]),
    Route("/check-port", check_port),
]
