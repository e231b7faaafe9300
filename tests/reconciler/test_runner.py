"""The background tasks' runner: a task that raises is recorded and started again after its
backoff, never silently dead; one that returns is not started again; a cancel ends them all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from reconciler.core.backoff import Backoff
from reconciler.engine.runner import Runner
from reconciler.engine.runtime import Runtime


async def test_a_task_that_raises_is_recorded_and_started_again_with_backoff(tmp_path: Path) -> None:
    recorded: list[dict[str, Any]] = []
    runner = Runner(Runtime(tmp_path, tmp_path, recorded.append), Backoff(start=0.05, cap=0.1, reset=60.0))
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky() -> None:
        runs.append(loop.time())
        if len(runs) < 4:
            raise RuntimeError(f"bug {len(runs)}")
        await asyncio.Event().wait()  # the fourth run keeps running

    task = runner.add("flaky", flaky)
    while len(runs) < 4:
        await asyncio.sleep(0.01)
    assert not task.done()
    failed = [op for op in recorded if op.get("kind") == "internal_error"]
    assert [op["detail"]["failures"] for op in failed] == [1, 2, 3]
    assert [op["detail"]["retry_in"] for op in failed] == [0.0, 0.05, 0.1]  # at once, then doubling up to the cap
    assert "the flaky task failed: RuntimeError('bug 1')" in failed[0]["reason"]
    assert runs[2] - runs[1] >= 0.05 and runs[3] - runs[2] >= 0.1
    (cancelled,) = runner.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert cancelled.cancelled()


async def test_a_task_that_returns_is_not_started_again(tmp_path: Path) -> None:
    recorded: list[dict[str, Any]] = []
    runner = Runner(Runtime(tmp_path, tmp_path, recorded.append))
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    await runner.add("once", once)
    await asyncio.sleep(0.05)
    assert runs == [1] and not [op for op in recorded if op.get("kind") == "internal_error"]
