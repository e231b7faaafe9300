"""Write-behind for the loop: `put` never waits on PostgreSQL, and nothing put is lost.

Ops queue in memory and `run()` writes them in batches. While the database is unreachable, or
when the queue overflows, ops go to an append-only journal (JSON lines, fsynced per batch).
Invariant: the journal only holds ops older than everything in memory, so order is kept by
replaying the journal first (then truncating it) before the queue continues. Writes are
idempotent (see queries.py), so replaying a batch that partly landed is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from reconciler.platform.aio import wait_for
from reconciler.store.queries import KINDS, Op, OpError, Store

log = logging.getLogger("gateway.sink")
BATCH = 500
SAMPLES = frozenset({"health", "health_minute", "resource", "host"})
SAMPLE_LINGER = 1.0  # seconds samples may wait to share a transaction; anything else goes at once
BACKOFF_START, BACKOFF_CAP = 0.2, 5.0
APPLY_TIMEOUT = 30.0
# the database is away (PoolTimeout is an OperationalError); anything else is the op's fault
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, OSError, TimeoutError)


class Journal:
    """The spill file: whole JSON lines appended, read back from a byte offset, then truncated."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, ops: list[Op], sync: bool = False) -> None:
        """Append all or nothing: a failed write (disk full) is cut off again."""
        data = "".join(json.dumps(op, default=str, separators=(",", ":")) + "\n" for op in ops).encode()
        with open(self.path, "ab") as fh:
            size = fh.tell()
            try:
                fh.write(data)
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(size)
                raise

    def fsync(self) -> None:
        with contextlib.suppress(FileNotFoundError), open(self.path, "ab") as fh:
            os.fsync(fh.fileno())

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def adopt(self) -> int:
        """Lines left by a previous run (a torn last line is ended, to be rejected on replay)."""
        count, last = 0, b"\n"
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                count, last = count + chunk.count(b"\n"), chunk[-1:]
        if last != b"\n":
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
            count += 1
        return count

    def read(self, offset: int, limit: int) -> tuple[list[Op], int, list[str]]:
        """Up to `limit` complete lines from `offset`: (ops, offset after them, unreadable lines)."""
        ops: list[Op] = []
        bad: list[str] = []
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as fh:
            fh.seek(offset)
            while len(ops) + len(bad) < limit:
                line = fh.readline()
                if not line.endswith(b"\n"):
                    break  # end of file
                offset += len(line)
                try:
                    op = json.loads(line)
                    if not isinstance(op, dict) or op.get("op") not in KINDS:
                        raise ValueError("not an op")
                    ops.append(op)
                except ValueError:
                    bad.append(line.decode(errors="replace").rstrip("\n"))
        return ops, offset, bad


class Sink:
    def __init__(
        self,
        store_factory: Callable[[], Awaitable[Store]] | Store,
        journal_path: Path,
        max_queue: int = 10_000,
    ) -> None:
        self._store = store_factory if isinstance(store_factory, Store) else None
        self._factory = None if isinstance(store_factory, Store) else store_factory
        self.journal = Journal(Path(journal_path))
        self.rejected_path = self.journal.path.with_name(self.journal.path.name + ".rejected")
        self.max_queue = max_queue
        self._queue: deque[Op] = deque()
        self._inflight: list[Op] | None = None  # a batch from memory being written
        self._inflight_journaled = False
        self._replayed = 0  # journal bytes already written to the database
        self._written = 0
        self._accepted = self.journal.adopt()  # a previous run's journal goes first
        self._spilling = self._accepted > 0  # the journal holds ops not yet written
        self._unsynced = False  # journal lines not yet fsynced
        self._spill_retry_at = 0.0  # after a journal write error (disk full)
        self._db_ok = True
        self._down_since: datetime | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._closed = False
        self._urgent = False  # something other than a sample is queued: write without lingering
        self._queued_since: float | None = None  # when the queue last became non-empty

    @property
    def journal_path(self) -> Path:
        return self.journal.path

    # --- the loop's side -------------------------------------------------------------------
    def put(self, op: Op) -> None:
        """Queue one op. Never waits on the database; raises only for an unknown op kind."""
        if op.get("op") not in KINDS:
            raise OpError(f"unknown op {op.get('op')!r} (known: {', '.join(sorted(KINDS))})")
        if "at" not in op:  # when it happened, not when it was written
            op = {**op, "at": datetime.now(UTC).isoformat()}
        self._accepted += 1
        if not self._queue:
            self._queued_since = time.monotonic()
        if op["op"] not in SAMPLES:
            self._urgent = True
        self._queue.append(op)
        # While the database is away an op goes to the journal at once: kept in memory until
        # the next write attempt gives up (seconds), a crash of the gateway would lose it.
        spill = self._closed or not self._db_ok or len(self._queue) > self.max_queue
        if self._closed or (spill and time.monotonic() >= self._spill_retry_at):
            self._spill(sync=self._closed)
        self._wake.set()

    @property
    def pending(self) -> int:
        return self._accepted - self._written

    @property
    def db_ok(self) -> bool:
        return self._db_ok

    @property
    def unreachable_since(self) -> datetime | None:
        return self._down_since

    async def flush(self, timeout: float) -> bool:
        """Wait until everything put so far is in the database; False on timeout."""
        target, loop = self._accepted, asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._written < target:
            self._urgent = True  # someone waits: no lingering
            self._wake.set()
        while self._written < target:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await wait_for(self._progress.wait(), remaining)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within `timeout`, leave the rest in the journal, stop run().
        Ops put after close go straight to the journal."""
        if self._closed:
            return
        if self._task is not None and not self._task.done():
            await self.flush(timeout)
        self._closed = True
        self._spill()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._fsync)

    # --- the background task -----------------------------------------------------------------
    async def run(self) -> None:
        """Write batches until closed; on trouble journal and retry with backoff (0.2 s doubling to 5 s)."""
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        delay, retry_at = BACKOFF_START, 0.0
        while not self._closed:
            self._wake.clear()
            linger = self._linger()
            if linger > 0 and not self._spilling and self._db_ok:
                with contextlib.suppress(TimeoutError):  # samples only: let a few more join them
                    await wait_for(self._wake.wait(), linger)
                continue
            if (self._spilling or self._queue) and loop.time() >= retry_at:
                try:
                    await self._write_some()
                except Exception as exc:  # noqa: BLE001 - any failure here means "try again later"
                    self._mark_down(exc)
                    retry_at, delay = loop.time() + delay, min(delay * 2, BACKOFF_CAP)
                else:
                    self._mark_up()
                    delay, retry_at = BACKOFF_START, 0.0
                    if not self._queue:
                        self._urgent, self._queued_since = False, None
                    continue
            if not self._db_ok and self._queue:  # down: new ops go to the journal too
                self._spill()
            if self._unsynced:
                await asyncio.to_thread(self._fsync)
            wait = max(0.0, retry_at - loop.time()) if (self._spilling or self._queue) else None
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), wait)

    def _linger(self) -> float:
        """Seconds to hold back a queue of samples only (0: write now)."""
        if self._urgent or not self._queue or self._queued_since is None or self._closed:
            return 0.0
        return max(0.0, SAMPLE_LINGER - (time.monotonic() - self._queued_since))

    async def _write_some(self) -> None:
        if self._store is None:
            assert self._factory is not None
            self._store = await self._factory()
        if self._spilling:
            await self._replay_some(self._store)
            return
        batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
        self._inflight, self._inflight_journaled = batch, False
        try:
            await self._apply(self._store, batch)
        except BaseException:
            if not self._inflight_journaled:  # back in front of what queued after it
                self._queue.extendleft(reversed(batch))
            raise
        finally:
            self._inflight = None
        if not self._inflight_journaled:  # else it is counted when replayed from the journal
            self._done(len(batch))

    async def _replay_some(self, store: Store) -> None:
        ops, end, bad = await asyncio.to_thread(self.journal.read, self._replayed, BATCH)
        if ops:
            await self._apply(store, ops)
        for line in bad:
            self._reject(line, "unreadable journal line")
        self._replayed = end
        if self.journal.size() <= end:  # all written; no await between this check and the truncate
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.journal.path, 0)
            self._spilling, self._replayed = False, 0
            log.info("journal replayed: the database is up to date")
        self._done(len(ops) + len(bad))

    async def _apply(self, store: Store, ops: list[Op]) -> None:
        """Write ops in one transaction; if the database refuses the batch (not an outage),
        write them one by one and set the refused ones aside in the .rejected file."""
        try:
            await wait_for(store.apply(ops), APPLY_TIMEOUT)
            return
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad op: find it below
            log.warning("a batch of %d ops was refused (%s); writing them one by one", len(ops), exc)
        for op in ops:
            try:
                await wait_for(store.apply([op]), APPLY_TIMEOUT)
            except TRANSIENT:
                raise
            except Exception as exc:  # noqa: BLE001 - kept in the .rejected file and logged
                self._reject(json.dumps(op, default=str), f"{type(exc).__name__}: {exc}")

    # --- bookkeeping -------------------------------------------------------------------------
    def _spill(self, sync: bool = False) -> None:
        """Move the in-flight batch (unless already there) and the queue to the journal, in order.
        If the journal cannot be written (disk full) they stay in memory, and we try again later."""
        inflight = self._inflight if self._inflight is not None and not self._inflight_journaled else []
        ops = [*inflight, *self._queue]
        if not ops:
            return
        try:
            self.journal.append(ops, sync=sync)
        except OSError as exc:
            self._spill_retry_at = time.monotonic() + 1.0
            log.error("cannot write the journal %s (%s); %d ops stay in memory",
                      self.journal.path, exc, len(ops))
            return
        self._queue.clear()
        self._inflight_journaled = self._inflight_journaled or bool(inflight)
        self._spilling, self._unsynced = True, not sync

    def _fsync(self) -> None:
        self._unsynced = False
        try:
            self.journal.fsync()
        except OSError as exc:
            log.error("cannot fsync the journal %s: %s", self.journal.path, exc)

    def _done(self, count: int) -> None:
        if count:
            self._written += count
            self._progress.set()
            self._progress = asyncio.Event()

    def _mark_down(self, exc: BaseException) -> None:
        if self._db_ok:
            self._db_ok, self._down_since = False, datetime.now(UTC)
            log.warning("database unreachable (%s); writing to %s until it returns", exc, self.journal.path)

    def _mark_up(self) -> None:
        if not self._db_ok:
            log.info("database reachable again (down since %s)", self._down_since)
            self._db_ok, self._down_since = True, None

    def _reject(self, line: str, why: str) -> None:
        log.error("the database will never accept this op (%s); kept in %s: %s",
                  why, self.rejected_path, line[:500])
        with open(self.rejected_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"error": why, "line": line}) + "\n")
