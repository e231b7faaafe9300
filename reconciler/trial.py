"""Try a server before it runs for real (`gateway try FILE`, the page's Try button): run the
candidate once, on a scratch port when it uses one, with its real environment and folder, for
up to its `start_period`; report what happened in words; then stop its whole process tree.

A try never touches the running version (another port, its own log file) and leaves no
process behind, whatever happens to the caller: the stop runs in a `finally`, and a caller
that cancels the try (a page that was closed) cancels it only once: the stop still finishes.
What the program prints reaches `on_line` as it is written, so a page or a terminal can show
it live; `on_start` hears the scratch port once the program runs.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.act import child_cwd, child_env, command_argv
from reconciler.children import Child, ExitStatus, SpawnError
from reconciler.facts import ExitFact
from reconciler.platform import current
from reconciler.health import probe
from reconciler.spec import ServerSpec

NO_CHECK_WATCH = 3.0  # seconds a server with no health check must keep running to pass
PAUSE = 0.05  # seconds between checks while waiting for the first answer


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str  # in words: "answered on port 8123 in 0.4 s", "exited with code 2: Error: ..."
    seconds: float
    port: int | None
    last_lines: tuple[str, ...] = ()
    exit: ExitFact | None = None  # it ended before answering: how (None: it ran, or never answered in time)


def scratch_port() -> int:
    """A port nothing listens on now (the OS picks it), away from the running version's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def try_length(spec: ServerSpec) -> float:
    """The longest a try of `spec` runs, in seconds: its start period; for a program that
    only has to keep running, its `min_uptime`; with no check, a few seconds."""
    health = spec.effective_health()
    if health.type == "running":
        return health.min_uptime
    waiting = float(getattr(health, "start_period", 30.0))
    return min(waiting, NO_CHECK_WATCH) if health.type == "none" else waiting


async def try_spec(spec: ServerSpec, config_dir: Path, log_path: Path,
                   on_line: Callable[[str], None] = lambda line: None,
                   on_start: Callable[[int | None], None] = lambda port: None) -> Verdict:
    port = scratch_port() if spec.port is not None else None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    started = time.monotonic()
    try:
        child = await Child.spawn(command_argv(spec, port), shell=spec.shell, cwd=child_cwd(config_dir, spec),
                                  env=child_env(spec, port), log_path=log_path,
                                  contain=lambda pid: current().contain(log_path.parent, f"try-{log_path.stem}", pid))
    except SpawnError as exc:
        return Verdict(False, f"could not start: {exc}", 0.0, port)
    follower = _Follower(log_path, on_line)
    follow = asyncio.ensure_future(follower.run())
    try:
        on_start(port)
        verdict = await first_answer(spec, child, port, started)
    finally:
        try:
            await _stop_surely(child, spec)
        finally:
            follow.cancel()
            follower.read(final=True)  # the last lines it printed
    lines = tuple(program_lines(log_path)[-5:])
    if not verdict.ok and lines and "exited" in verdict.text:
        verdict = Verdict(False, f"{verdict.text}: {lines[-1]}", verdict.seconds, port, lines, verdict.exit)
    return Verdict(verdict.ok, verdict.text, verdict.seconds, port, lines, verdict.exit)


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


async def _stop_surely(child: Child, spec: ServerSpec) -> None:
    """Stop the whole tree with the server's own stop settings. Cancelling the caller again
    meanwhile does not interrupt it (it would leave the tree running); the cancel is passed on
    once the tree is gone."""
    stopping = asyncio.ensure_future(child.stop(spec.stop.signal, spec.stop.timeout))
    cancelled = False
    while True:
        try:
            await asyncio.shield(stopping)
            break
        except asyncio.CancelledError:
            if stopping.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def program_lines(log_path: Path) -> list[str]:
    """What the program printed (the gateway's own `--- gateway: ...` markers left out)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith("--- gateway:")]


class _Follower:
    """Hands each new line of the log to `on_line` as it is written (a small poll: a try lasts
    seconds, and a file offers no portable wait); `read()` once more at the end."""

    def __init__(self, log_path: Path, on_line: Callable[[str], None]) -> None:
        self.log_path, self.on_line = log_path, on_line
        self.offset, self.partial = 0, b""

    def read(self, final: bool = False) -> None:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            chunk = b""
        self.offset += len(chunk)
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        if final and self.partial:
            complete, self.partial = [*complete, self.partial], b""
        for raw in complete:
            line = raw.decode(errors="replace")
            if line.strip() and not line.startswith("--- gateway:"):
                self.on_line(line)

    async def run(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(0.1)
