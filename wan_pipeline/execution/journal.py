"""The engine's way to the ledger: one thread does every ledger read and write, off the event loop, and
concurrent writes share one commit.

Why: every ledger write is a committed transaction (SQLite WAL with synchronous=FULL fsyncs, about 5 ms
here; PostgreSQL a network round trip). Done on the event loop, six of them per output stalled every poll:
profiled at 2,000 outputs they were the largest single cost of a run. Done in a thread but one commit each,
they would serialize at about 200 writes per second. So the journal takes whatever is queued, runs it in ONE
transaction (each operation inside its own savepoint, so one refused admission does not undo its
neighbours), commits once, and only then answers every caller: a caller that awaits a write still knows it
is durable (an attempt is on disk before its create is sent), it just shares the fsync with its neighbours.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from wan_pipeline.money.ledger import Attempt, Ledger, StoredOutput, admission_lock

T = TypeVar("T")

#: how many queued operations one transaction takes at most (bounds a commit's latency)
MAX_BATCH = 256


@dataclass
class _Op:
    fn: Callable[[], Any]
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None


class Journal:
    """A writer thread owning the ledger for the engine's lifetime (`start` ... `close`)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0  # for tests and benchmarks: transactions committed
        self.operations = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="wan-pipeline-journal", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` (ledger reads and writes) in the journal's transaction; returns once it is committed."""
        return await self.enqueue(fn)

    def enqueue(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn` now, in order, and answer a future settled once it is committed.

        Operations commit in the order they were queued (a later one never commits before an earlier one),
        so a caller may queue a write, let another task go on, and rely on that task's later awaited write
        being durable only once this one is too."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:  # not started (tests that drive pieces directly): plain synchronous calls
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)
            return future
        self._queue.put(_Op(fn, future, loop))
        return future

    def post(self, fn: Callable[[], object]) -> None:
        """Queue a write nobody waits for (counters): committed with the next batch, in order."""
        if self._thread is None:
            fn()
            return
        self._queue.put(_Op(fn, None, None))

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Op]) -> None:
        results: list[tuple[_Op, bool, Any]] = []
        try:
            with self.ledger.batch() as savepoint:
                for op in batch:
                    try:
                        with savepoint():
                            results.append((op, True, op.fn()))
                    except Exception as exc:  # answered to its own caller; its neighbours go on
                        results.append((op, False, exc))
        except Exception as exc:  # the commit itself failed: nothing of the batch is durable
            results = [(op, False, exc) for op in batch]
        self.commits += 1
        self.operations += len(batch)
        for op, ok, value in results:  # answers leave only after the commit
            if op.future is not None and op.loop is not None:
                op.loop.call_soon_threadsafe(_settle, op.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class AsyncLedger:
    """The ledger calls the engine makes, awaited through the journal."""

    def __init__(self, ledger: Ledger, journal: Journal) -> None:
        self.sync = ledger
        self.journal = journal

    async def latest(self, identity: str) -> Attempt | None:
        return await self.journal.run(lambda: self.sync.latest(identity))

    async def attempts(self, identity: str) -> list[Attempt]:
        return await self.journal.run(lambda: self.sync.attempts(identity))

    async def recent_latencies(self, dataset: str, model: str, mode: str) -> list[float]:
        return await self.journal.run(lambda: self.sync.recent_latencies(dataset, model, mode))

    async def outputs(self, identity: str, attempt: int) -> list[StoredOutput]:
        return await self.journal.run(lambda: self.sync.outputs(identity, attempt))

    async def begin_attempt(self, a: Attempt, check: Callable[[], None] | None = None) -> None:
        await self.journal.run(lambda: self.sync.begin_attempt(a, check=check))

    async def update(self, identity: str, attempt: int, **values: Any) -> Attempt | None:
        """Writes the columns and answers the attempt as it now stands (one trip through the journal)."""
        return await self.update_queued(identity, attempt, **values)

    def update_queued(self, identity: str, attempt: int, **values: Any) -> asyncio.Future[Attempt | None]:
        """`update`, queued now (in order with every later write) and answered when committed."""

        def write() -> Attempt | None:
            self.sync.update(identity, attempt, **values)
            return self.sync.latest(identity)

        return self.journal.enqueue(write)

    async def admit_and_update(
        self, check: Callable[[], None], dataset: str, identity: str, attempt: int, **values: Any
    ) -> None:
        """`check` (a budget admission) and the write in one transaction, under the dataset's admission lock
        (as `begin_attempt` takes it), so a re-armed attempt is admitted atomically across machines too."""

        def write() -> None:
            with self.sync.db.transaction(admission_lock(dataset)):
                check()
                self.sync.update(identity, attempt, **values)

        await self.journal.run(write)

    async def store(self, outputs: list[StoredOutput], identity: str, attempt: int, **values: Any) -> None:
        """Every output of an attempt and its final state, in one transaction."""

        def write() -> None:
            for out in outputs:
                self.sync.record_output(out)
            self.sync.update(identity, attempt, **values)

        await self.journal.run(write)

    async def count_submit_call(self, identity: str, attempt: int) -> None:
        """Durable before the create leaves: a record that says "never sent" must be true, since a host
        without idempotency keys gets an unsent create re-sent without looking for it first."""
        await self.journal.run(lambda: self.sync.count_submit_call(identity, attempt))
