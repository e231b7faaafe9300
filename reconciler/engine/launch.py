"""The launch floor: how a server's process is started and how its first answer is awaited,
shared by every actuator that starts one (`act.py` for a start, `replace.py` for a change
without a gap, `trial.py` for a try). It imports no actuator; they all build on it.

- `command_argv`, `child_env`, `child_cwd`: the argv, environment and folder of a spec;
- `spawn`: the process, its output in `log_path`, contained (Windows: its own job object);
- `first_answer`: wait for a started child to pass its check within its start period;
- `program_lines`: what the program printed (the gateway's own markers left out).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.facts import ExitFact
from reconciler.core.spec import ServerSpec
from reconciler.engine.children import Child, ExitStatus
from reconciler.engine.health import probe
from reconciler.platform import console_python, current
from reconciler.platform.fsutil import server_log

NO_CHECK_WATCH = 3.0  # seconds a server with no health check must keep running to pass
PAUSE = 0.05  # seconds between checks while waiting for the first answer


def command_argv(spec: ServerSpec, port: int | None) -> list[str]:
    """The argv with `{port}` filled in; a bare `python`/`python3` means this Python (its console
    build on Windows: reconciler.platform.console_python)."""
    argv = [part.replace("{port}", str(port)) if port is not None else part for part in spec.command]
    if not spec.shell and argv and argv[0] in ("python", "python3", "python.exe"):
        argv[0] = console_python()
    return argv


def child_env(spec: ServerSpec, port: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(spec.env)
    if port is not None:
        env["PORT"] = str(port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def child_cwd(config_dir: Path, spec: ServerSpec) -> str:
    """A relative `cwd` is relative to the config folder, which is also the default."""
    if spec.cwd is None:
        return str(config_dir)
    path = Path(spec.cwd).expanduser()
    return str(path if path.is_absolute() else config_dir / path)


def log_path(data_dir: Path, name: str) -> Path:
    """Where server `name`'s output goes."""
    return server_log(data_dir, name)


async def spawn(spec: ServerSpec, port: int | None, *, config_dir: Path, log_to: Path,
                job_dir: Path, job_name: str) -> Child:
    """Start `spec` on `port`, its output appended to `log_to`, contained in the job `job_name`
    kept under `job_dir` (Windows; elsewhere its process group). Raises `SpawnError`."""
    return await Child.spawn(
        command_argv(spec, port), shell=spec.shell, cwd=child_cwd(config_dir, spec), env=child_env(spec, port),
        log_path=log_to, contain=lambda pid: current().contain(job_dir, job_name, pid),
    )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str  # in words: "answered on port 8123 in 0.4 s", "exited with code 2: Error: ..."
    seconds: float
    port: int | None
    last_lines: tuple[str, ...] = ()
    exit: ExitFact | None = None  # it ended before answering: how (None: it ran, or never answered in time)


def try_length(spec: ServerSpec) -> float:
    """The longest the first answer of `spec` is awaited, in seconds: its start period; for a
    program that only has to keep running, its `min_uptime`; with no check, a few seconds."""
    health = spec.effective_health()
    if health.type == "running":
        return health.min_uptime
    waiting = float(getattr(health, "start_period", 30.0))
    return min(waiting, NO_CHECK_WATCH) if health.type == "none" else waiting


def _exit(status: ExitStatus) -> ExitFact:
    return ExitFact.of(status.code, status.signal)


async def first_answer(spec: ServerSpec, child: Child, port: int | None, started: float) -> Verdict:
    """Wait for the started `child` to pass its check within its start period (or, with no
    check, to keep running a few seconds); the verdict in words. Stops nothing."""
    health = spec.effective_health()
    waiting = try_length(spec)
    exited = asyncio.ensure_future(child.wait())
    try:
        if health.type in ("none", "running"):
            done, _ = await asyncio.wait([exited], timeout=waiting)
            seconds = round(time.monotonic() - started, 2)
            if done:
                return Verdict(False, f"{exited.result().describe()} after {seconds:g} s", seconds, port,
                               exit=_exit(exited.result()))
            if health.type == "running":
                return Verdict(True, f"kept running for {waiting:g} s (that is its check)", seconds, port)
            return Verdict(True, f"kept running for {seconds:g} s (it has no check to answer)", seconds, port)
        deadline = started + waiting
        while time.monotonic() < deadline:
            if exited.done():
                seconds = round(time.monotonic() - started, 2)
                return Verdict(False, exited.result().describe(), seconds, port, exit=_exit(exited.result()))
            result = await probe(health, port)
            if result.ok:
                seconds = round(time.monotonic() - started, 2)
                where = f"on port {port}" if port is not None else "its check"
                return Verdict(True, f"answered {where} in {seconds:g} s", seconds, port)
            await asyncio.wait([exited], timeout=PAUSE)
        return Verdict(False, f"did not answer within {waiting:g} s", round(time.monotonic() - started, 2), port)
    finally:
        exited.cancel()


def program_lines(log_file: Path) -> list[str]:
    """What the program printed (the gateway's own `--- gateway: ...` markers left out)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith("--- gateway:")]
