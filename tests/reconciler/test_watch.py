"""The folder watcher: real files, the real kernel's inotify (Linux) on the event loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from reconciler.host.watch import is_config_file, watch_folder
from reconciler.platform import inotify

pytestmark = pytest.mark.skipif(not inotify.available(), reason="no inotify on this system (watchfiles is used)")


async def next_batch(gen, timeout: float = 5.0) -> set[str]:
    return await asyncio.wait_for(gen.__anext__(), timeout)


async def test_a_save_a_rename_and_a_batch_of_files_each_wake_once(tmp_path: Path):
    stop = asyncio.Event()
    gen = inotify.watch(tmp_path, lambda name: is_config_file(None, name), 0.1, stop)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(next_batch(gen))
    await asyncio.sleep(0.05)
    (tmp_path / "blog.toml").write_text('command = ["x"]\n')
    assert await waiting == {"blog.toml"}
    waiting = asyncio.ensure_future(next_batch(gen))
    await asyncio.sleep(0.05)
    (tmp_path / ".blog.toml.tmp").write_text("x")  # an editor's atomic save: temp file, then rename
    os.replace(tmp_path / ".blog.toml.tmp", tmp_path / "blog.toml")
    assert await waiting == {"blog.toml"}
    waiting = asyncio.ensure_future(next_batch(gen))
    await asyncio.sleep(0.05)
    for i in range(30):  # a git pull
        (tmp_path / f"s{i}.toml").write_text("x")
    (tmp_path / "notes.txt").write_text("not a config file")
    assert await waiting == {f"s{i}.toml" for i in range(30)}
    stop.set()
    with pytest.raises(StopAsyncIteration):
        await next_batch(gen)


async def test_watch_folder_calls_back_and_ends_on_stop(tmp_path: Path):
    stop, calls = asyncio.Event(), []
    task = asyncio.ensure_future(watch_folder(tmp_path, lambda: calls.append(1), stop))
    await asyncio.sleep(0.05)
    (tmp_path / "gateway.toml").write_text("[ports]\n")
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    assert calls == [1]
    stop.set()
    await asyncio.wait_for(task, 2.0)
