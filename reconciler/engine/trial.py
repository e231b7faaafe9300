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
from pathlib import Path

from reconciler.core.spec import ServerSpec
from reconciler.engine.children import Child, SpawnError
from reconciler.engine.launch import Verdict, first_answer, program_lines, spawn


def scratch_port() -> int:
    """A port nothing listens on now (the OS picks it), away from the running version's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def try_spec(spec: ServerSpec, config_dir: Path, log_path: Path,
                   on_line: Callable[[str], None] = lambda line: None,
                   on_start: Callable[[int | None], None] = lambda port: None) -> Verdict:
    port = scratch_port() if spec.port is not None else None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    started = time.monotonic()
    try:
        child = await spawn(spec, port, config_dir=config_dir, log_to=log_path,
                            job_dir=log_path.parent, job_name=f"try-{log_path.stem}")
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
