"""The write-behind sink against a real PostgreSQL: outages, journal replay, overflow, bad ops."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Op, OpError, Store
from reconciler.store.embedded import EmbeddedPostgres
from reconciler.store.sink import Sink
from tests.fix_db import event, rows


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def seqs_in_write_order(store: Store) -> list[int]:
    """Event seqs in the order their rows were inserted (a heap that only ever gets inserts)."""
    return [r[0] for r in await rows(store, "SELECT seq FROM events ORDER BY ctid")]


@asynccontextmanager
async def running(sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sink.run())
    try:
        yield task
    finally:
        await sink.close(timeout=1.0)
        assert task.done()


async def test_writes_everything_in_order(store: Store, tmp_path: Path) -> None:
    sink = Sink(store, tmp_path / "journal.jsonl")
    async with running(sink):
        for i in range(1, 1201):  # more than one batch
            sink.put(event(i))
        sink.put({"op": "state", "row": {"name": "blog", "phase": "running", "pid": 7}})
        assert sink.pending == 1201
        assert await sink.flush(30)
        assert sink.pending == 0 and sink.db_ok and sink.unreachable_since is None
    assert await seqs_in_write_order(store) == list(range(1, 1201))
    assert (await store.load_states())["blog"]["pid"] == 7
    assert lines(tmp_path / "journal.jsonl") == []


@pytest.mark.alone  # how long 1400 puts took
async def test_outage_spills_to_the_journal_and_replays_exactly_once(
    private_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    assert private_pg.dsn is not None
    store = await Store.connect(private_pg.dsn)
    try:
        sink = Sink(store, journal)
        async with running(sink):
            for i in range(1, 6):
                sink.put(event(i))
            assert await sink.flush(30)

            await asyncio.to_thread(private_pg.stop)
            started = time.monotonic()
            for i in range(6, 706):
                sink.put(event(i))
                sink.put({"op": "state", "row": {"name": "blog", "phase": "running", "restarts": i}})
            assert time.monotonic() - started < 2.0  # put() never waits on the database

            await eventually(lambda: not sink.db_ok and len(lines(journal)) == 1400)
            assert sink.unreachable_since is not None and sink.pending == 1400
            assert not await sink.flush(0.2)

            await asyncio.to_thread(private_pg.start)
            assert await sink.flush(60)
            assert sink.db_ok and sink.unreachable_since is None and sink.pending == 0
            assert lines(journal) == []
        assert await seqs_in_write_order(store) == list(range(1, 706))  # each exactly once, in order
        assert (await store.load_states())["blog"]["restarts"] == 705  # the last write won
    finally:
        await store.close()


async def test_overflow_spills_instead_of_dropping(store: Store, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    sink = Sink(store, journal, max_queue=100)
    for i in range(1, 251):  # run() is not even started: nothing drains the queue
        sink.put(event(i))
    assert len(lines(journal)) == 202 and sink.pending == 250  # 2 spills of 101; 48 still in memory
    async with running(sink):
        assert await sink.flush(30)
    assert await seqs_in_write_order(store) == list(range(1, 251))
    assert lines(journal) == []


async def test_journal_of_a_previous_run_goes_first(store: Store, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    old = [event(i) for i in range(1, 6)]
    old.append({"op": "intent", "name": "blog", "intent": "stop", "at": "2026-01-01"})
    journal.write_text("".join(json.dumps(op) + "\n" for op in old) + '{"op": "event", "id": "torn')
    sink = Sink(store, journal)
    assert sink.pending == 7  # 6 ops and a torn last line
    sink.put(event(6))
    sink.put({"op": "intent", "name": "blog", "intent": None})
    async with running(sink):
        assert await sink.flush(30)
    assert await seqs_in_write_order(store) == [1, 2, 3, 4, 5, 6]
    assert await store.load_intents() == {}  # the newer clear won over the journal's stop
    rejected = [json.loads(line) for line in lines(sink.rejected_path)]
    assert [r["line"] for r in rejected] == ['{"op": "event", "id": "torn']
    assert lines(journal) == []


async def test_a_rejected_op_does_not_hold_up_the_others(store: Store, tmp_path: Path) -> None:
    sink = Sink(store, tmp_path / "journal.jsonl")
    async with running(sink):
        sink.put(event(1))
        sink.put({"op": "intent", "name": "blog", "intent": "pause"})  # violates the CHECK constraint
        sink.put({"op": "event", "id": "not-a-uuid", "seq": 2, "at": "2026-01-01"})
        sink.put(event(3))
        assert await sink.flush(30) and sink.db_ok
    assert await seqs_in_write_order(store) == [1, 3]
    rejected = [json.loads(line) for line in lines(sink.rejected_path)]
    assert ["CheckViolation" in r["error"] for r in rejected] == [True, False]
    assert "OpError" in rejected[1]["error"]


def test_put_rejects_an_unknown_kind(tmp_path: Path) -> None:
    sink = Sink(lambda: asyncio.sleep(0), tmp_path / "journal.jsonl")  # type: ignore[arg-type,return-value]
    with pytest.raises(OpError, match="unknown op 'evnet'"):
        sink.put({"op": "evnet"})
    assert sink.pending == 0


async def test_close_leaves_the_unwritten_in_the_journal(store: Store, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    attempts: list[float] = []

    async def no_database() -> Store:
        attempts.append(time.monotonic())
        raise OSError("connection refused")

    sink = Sink(no_database, journal)
    async with running(sink):
        for i in range(1, 11):
            sink.put(event(i))
        await eventually(lambda: len(attempts) >= 3 and len(lines(journal)) == 10)
        assert not await sink.flush(0.1) and not sink.db_ok
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3  # backoff: 0.2 s, then 0.4 s
    sink.put(event(11))  # after close: straight to the journal
    assert len(lines(journal)) == 11

    calls: list[Any] = []

    async def late_database() -> Store:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("not yet")
        return store

    sink2 = Sink(late_database, journal)
    async with running(sink2):
        assert await sink2.flush(30)
    assert await seqs_in_write_order(store) == list(range(1, 12))
    assert lines(journal) == []


class GatedStore(Store):
    """A real Store whose next write waits for `gate`: holds a batch "in flight"."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.pool)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def apply(self, ops: list[Op]) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().apply(ops)


async def test_overflow_while_a_batch_is_in_flight(store: Store, tmp_path: Path) -> None:
    """The in-flight batch goes to the journal ahead of the queue; it lands once all the same."""
    journal = tmp_path / "journal.jsonl"
    gated = GatedStore(store)
    sink = Sink(gated, journal, max_queue=100)
    async with running(sink):
        for i in range(1, 51):
            sink.put(event(i))
        await asyncio.wait_for(gated.entered.wait(), 10)  # batch 1..50 is in flight
        for i in range(51, 202):
            sink.put(event(i))
        assert len(lines(journal)) == 50 + 101  # the batch, then the queue when it overflowed
        gated.gate.set()
        assert await sink.flush(30)
    assert await seqs_in_write_order(store) == list(range(1, 202))
    assert lines(journal) == []


async def test_an_unwritable_journal_keeps_ops_in_memory(store: Store, tmp_path: Path) -> None:
    journal = tmp_path / "missing-dir" / "journal.jsonl"
    sink = Sink(store, journal, max_queue=10)
    for i in range(1, 26):
        sink.put(event(i))  # overflows, cannot spill: logs, does not raise, loses nothing
    assert sink.pending == 25 and not journal.exists()
    async with running(sink):
        assert await sink.flush(30)
    assert await seqs_in_write_order(store) == list(range(1, 26))


async def test_samples_wait_to_share_a_transaction_but_events_do_not(store: Store, tmp_path: Path) -> None:
    sink = Sink(store, tmp_path / "journal.jsonl")
    async with running(sink):
        for i in range(3):
            sink.put({"op": "health", "server": "web", "ok": True, "latency_ms": float(i),
                      "at": f"2026-11-24T10:00:0{i}+00:00"})
        await asyncio.sleep(0.3)
        assert sink.pending == 3  # held back (up to SAMPLE_LINGER)
        sink.put(event(1))  # an event goes at once, and takes the samples with it
        await eventually(lambda: sink.pending == 0, timeout=0.5)
    assert await rows(store, "SELECT count(*) FROM health_changes") == [(3,)]
    assert await seqs_in_write_order(store) == [1]
