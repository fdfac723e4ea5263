"""Wake-ups between this process's engines: each runs its own event loop in its own thread (the range runs
`generate` runs side by side), so a task of one engine can't await an asyncio primitive of another.

A task that finds a shared resource taken (a concurrency lease, the create slot) waits here for a key, with a
timeout; whoever frees that resource wakes the oldest waiter of the key at once — one waiter, since one was
freed: waking them all would send every waiter of every engine to the database for it. Holders in other
processes and on other machines are still found when the timeout runs out, by asking the database again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Wakeups:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    async def wait(self, key: str, timeout_s: float) -> None:
        """Until `notify(key)` picks this waiter, or `timeout_s` passes."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter)
        with self._lock:
            self._waiters.setdefault(key, []).append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._lock, contextlib.suppress(ValueError):  # already picked by a notify
                self._waiters.get(key, []).remove(entry)

    def notify(self, key: str) -> None:
        """Wake the oldest waiter of `key`, if any."""
        with self._lock:
            queue = self._waiters.get(key, [])
            entry = queue.pop(0) if queue else None
        if entry is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed: its waiter is gone
                entry[0].call_soon_threadsafe(_wake, entry[1])


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
