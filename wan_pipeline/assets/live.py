"""Run the async engine on a worker thread and hand each final outcome to the op's thread as it lands.

A Dagster op body is synchronous, and what it yields is written to the instance when it is yielded; the
engine is async. So the engine runs on its own event loop in a worker thread, its per-outcome hook puts each
outcome on a queue, and the op drains the queue and yields a partition's events the moment its last output
is final, while the run goes on. Notes for the run's log travel the same queue, so only the op's thread
talks to Dagster. Closing the stream early (the run was terminated, the op raised) cancels the engine and
waits for it: what it recorded stays in the ledger, and a cancelled attempt resumes like a crashed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from wan_pipeline.execution.engine import Outcome, OutcomeSink


@dataclass(frozen=True)
class Note:
    """A line for the run's log, written by the op's thread."""

    text: str


class _Done:
    pass


_DONE = _Done()


class OutcomeStream:
    """`with OutcomeStream(work) as stream: for item in stream: ...` — `work(on_outcome, note)` is a coroutine
    function run to completion on a worker thread; items are outcomes and notes, in the order they happened."""

    def __init__(self, work: Callable[[OutcomeSink, Callable[[str], None]], Awaitable[object]]) -> None:
        self._work = work
        self._queue: queue.SimpleQueue[Outcome | Note | _Done] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[object] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wan-engine", daemon=True)
        #: what the work raised, if anything (re-raised by the caller on its own thread)
        self.error: BaseException | None = None

    def __enter__(self) -> OutcomeStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Outcome | Note]:
        while True:
            try:
                # A bounded wait, so a run's termination (raised in this thread by its signal handler) is
                # noticed within a second even while nothing lands.
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if isinstance(item, _Done):
                return
            yield item

    def close(self) -> None:
        """Cancel the work if it is still running, and wait for its thread."""
        if self._thread.is_alive():
            self._started.wait()
            if self._loop is not None and self._main is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing left to cancel
                    self._loop.call_soon_threadsafe(self._main.cancel)
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._main_coro())
        except BaseException as exc:  # handed to the op's thread, which decides what it means
            self.error = exc
        finally:
            self._started.set()
            self._queue.put(_DONE)

    async def _main_coro(self) -> object:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._started.set()
        return await self._work(self._queue.put, lambda text: self._queue.put(Note(text)))
