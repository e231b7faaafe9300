"""Issue 27: the DNS task and the cloudflared getter wait for the tunnel's plan to be loaded
again instead of looking at it every 2 s (reconciler/tunnel/hook.py `plan_changes`)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.runtime import Runtime
from reconciler.tunnel import dns_task, getter, hook
from reconciler.tunnel.memory import Memory


class CountedMemory(Memory):
    """The tunnel's memory, counting the looks at its plan (none is ever made: nothing to do)."""

    looks = 0

    @property  # type: ignore[override]
    def plan(self) -> Any:
        self.looks += 1
        return None

    @plan.setter
    def plan(self, value: Any) -> None:
        pass


@pytest.mark.parametrize("task", ["dns", "getter"])
async def test_the_plan_is_read_once_then_only_when_it_is_loaded_again(
        task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(tmp_path, tmp_path, lambda op: None)
    tunnel = hook.Tunnel(rt, tmp_path, reload=lambda: None)
    tunnel.memory = memory = CountedMemory()
    monkeypatch.setattr(dns_task, "plan_of", lambda runtime: memory.plan)
    monkeypatch.setattr(getter, "LOOK_EVERY", 0.01)  # the getter's first look, after the start
    run = asyncio.ensure_future(dns_task.dns_forever(tunnel, None, tmp_path) if task == "dns"
                                else getter.cloudflared_forever(tunnel, tmp_path))
    try:
        while not memory.looks:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # (was: a look every 2 s; here nothing may come at all)
        assert memory.looks == 1 and len(memory.waiters) == 1
        for changed in memory.waiters:  # what the tunnel's hook does at every load of the plan
            changed.set()
        while memory.looks < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert memory.looks == 2 and not memory.waiters[0].is_set()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_a_load_that_makes_the_same_plan_wakes_nobody(tmp_path: Path) -> None:
    """The 30 s resync loads the folder again: a plan equal to the last one sets no waiter (the
    DNS task and the getter woke every 30 s for nothing); another plan does."""
    from reconciler.engine.config import load_dir

    rt = Runtime(tmp_path, tmp_path, lambda op: None)
    tunnel = hook.Tunnel(rt, tmp_path, reload=lambda: None)
    changed = hook.plan_changes(tunnel.memory)
    changed.clear()
    await tunnel.load(load_dir(tmp_path))
    assert changed.is_set()  # the first plan
    changed.clear()
    await tunnel.load(load_dir(tmp_path))
    assert not changed.is_set()  # the same plan again
    tunnel.memory.plan = dataclasses.replace(tunnel.memory.plan, missing="as if cloudflared were gone")
    await tunnel.load(load_dir(tmp_path))
    assert changed.is_set()
