"""Wake-ups between this process's engines: each runs its own event loop in its own thread (the range runs
`generate` runs side by side), so a task of one engine can't await an asyncio primitive of another.

A task that finds a shared resource taken (a concurrency lease, the create slot) waits here for a key, with a
timeout; whoever frees that resource wakes one waiter of the key at once — one, since one was freed: waking
them all would send every waiter of every engine to the database for it. Holders in other processes and on
other machines are found by asking the database again when the timeout runs out — by one waiter per key, the
poller, at that pace; the others wait `FOLLOWER_FACTOR` times longer (a safety net). With every waiter polling,
an account's slot leases were asked for a few hundred times a second by the tasks held beyond the account's
concurrency (as many again per engine, several engines per process): most of a core on two, for slots that
are freed here and handed over by `notify` anyway.

A wake-up goes to the oldest waiter of the engine that opened first (`loop_rank`), the poller last. With a fair
share each, range runs side by side of one size all ended together, and the account's slots stood idle while
the next runs started (issue 7). Served in the order they opened, the earliest run has every slot it can use
and the others fill in behind it: runs end one after the other, and the next one starts while the others keep
the slots busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: how much longer than the poller a waiter that is not the poller waits without a wake-up
FOLLOWER_FACTOR = 8

_Entry = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", int]


class Wakeups:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Entry]] = {}
        self._pollers: dict[str, _Entry] = {}

    async def wait(self, key: str, timeout_s: float, shared: bool = True) -> bool:
        """Until `notify(key)` picks this waiter (True), or the timeout passes (False: ask the database again).
        The timeout is `timeout_s` for the key's poller (the first waiter when there is none), else
        `FOLLOWER_FACTOR` times that. `shared=False` where each waiter waits for something of its own (an
        output leased elsewhere): what one finds in the database says nothing for the others, so each polls.
        A caller that looks at the resource first registers with `expecting` instead."""
        with self.expecting(key, shared) as waiting:
            return await waiting.wait(timeout_s)

    async def ask_until(
        self, key: str, ask: Callable[[], Awaitable[T | None]], timeout_s: float, shared: bool = True
    ) -> tuple[T, bool]:
        """`ask` (a look at a shared resource: a database transaction in a thread) until it answers something
        other than None, waiting for a wake-up of `key` (or the timeout, as `wait`) between asks: (the answer,
        whether a notify picked this task while it asked — a release it may not have been the one to take).
        Registered as a waiter before each ask (`expecting`), so a release during the ask is not missed."""
        while True:
            with self.expecting(key, shared) as waiting:
                answer = await ask()
                if answer is not None:
                    return answer, waiting.picked
                await waiting.wait(timeout_s)

    @contextlib.contextmanager
    def expecting(self, key: str, shared: bool = True) -> Iterator[Waiting]:
        """This task registered as a waiter of `key` before it looks whether the resource is free, and until the
        block ends: a release between its look (a database transaction in a thread) and its wait wakes it, where
        a waiter registered after its look missed that release and slept its whole timeout (60 s in a test)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter, loop_rank(loop))
        with self._lock:
            self._waiters.setdefault(key, []).append(entry)
            polling = shared and self._pollers.setdefault(key, entry) is entry
        try:
            yield Waiting(waiter, shared and not polling)
        finally:
            with self._lock:
                queue = self._waiters.get(key, [])
                with contextlib.suppress(ValueError):  # already picked by a notify
                    queue.remove(entry)
                if not queue:  # keys come and go (one per output waited for): none is kept empty
                    self._waiters.pop(key, None)
                if polling:
                    del self._pollers[key]

    def notify(self, key: str) -> None:
        """Wake the oldest waiter of the first-opened engine of `key` other than its poller, else the poller, if
        any waits."""
        with self._lock:
            queue = self._waiters.get(key, [])
            poller = self._pollers.get(key)
            others = [i for i, entry in enumerate(queue) if entry is not poller]
            index = min(others, key=lambda i: queue[i][2]) if others else 0  # min() keeps the oldest of a rank
            entry = queue.pop(index) if queue else None
        if entry is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed: its waiter is gone
                entry[0].call_soon_threadsafe(_wake, entry[1])


_RANKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
_RANKS_LOCK = threading.Lock()
_OPENED = itertools.count()


def loop_rank(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """Where this engine (its event loop: each engine of a process runs its own) stands in the order this
    process's engines opened: `open_session` asks first thing, so sessions rank in the order they opened."""
    loop = loop or asyncio.get_running_loop()
    with _RANKS_LOCK:
        rank = _RANKS.get(loop)
        if rank is None:
            rank = _RANKS[loop] = next(_OPENED)
        return rank


class Waiting:
    """A registration of `Wakeups.expecting`: `wait` returns True once picked by a notify (at once if that
    happened while the task was looking), False after the timeout."""

    def __init__(self, waiter: asyncio.Future[None], follower: bool) -> None:
        self._waiter, self._follower = waiter, follower

    @property
    def picked(self) -> bool:
        return self._waiter.done()

    async def wait(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), timeout_s * (FOLLOWER_FACTOR if self._follower else 1))
            return True
        except TimeoutError:
            return False


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
