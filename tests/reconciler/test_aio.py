"""reconciler.platform.aio.wait_for keeps a cancel that arrives as the awaited thing finishes: the case
Python 3.11's asyncio.wait_for loses (gh-86296), which made a gateway stop hang on the sampler."""

import asyncio

import pytest

from reconciler.platform.aio import wait_for


async def _cancel_as_it_finishes(wait) -> bool:
    """True when a task, cancelled in the same loop turn its awaited future finishes in, ends."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    ended_by_cancel = False

    async def looper() -> None:
        nonlocal ended_by_cancel
        try:
            while True:
                await wait(fut, 5.0)
                await asyncio.sleep(3600)  # what the sampler does after its check: it never woke
        except asyncio.CancelledError:
            ended_by_cancel = True
            raise

    task = asyncio.create_task(looper())
    await asyncio.sleep(0)  # it waits on fut now
    fut.set_result(1)
    task.cancel()  # the same turn: both wake-ups are queued
    done, _ = await asyncio.wait([task], timeout=0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return bool(done) and ended_by_cancel


@pytest.mark.asyncio
async def test_a_cancel_that_arrives_as_the_wait_ends_is_kept():
    assert await _cancel_as_it_finishes(wait_for)


@pytest.mark.asyncio
async def test_a_timeout_raises_timeout_error_and_a_result_comes_back():
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(10), 0.01)
    assert await wait_for(asyncio.sleep(0, result="ok"), 1.0) == "ok"
    assert await wait_for(asyncio.sleep(0, result="ok"), None) == "ok"


@pytest.mark.asyncio
async def test_the_case_is_the_one_that_stdlib_wait_for_loses_on_3_11():
    """The scenario above is the real race: 3.11's own wait_for goes on after the cancel."""
    import sys
    lost = not await _cancel_as_it_finishes(asyncio.wait_for)  # noqa: TID251
    assert lost == (sys.version_info < (3, 12))
