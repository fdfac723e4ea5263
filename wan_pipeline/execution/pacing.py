"""Pacing of calls to one host: submissions spaced to a rate, a shared pause after a 429, backoff delays."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class Pacer(Protocol):
    """What calls need of a gate: this process's `RateGate`, or the account-wide `money.rate.SharedRateGate`."""

    def pause(self, seconds: float) -> None: ...
    async def before_call(self) -> None: ...
    async def before_submit(self) -> None: ...


class SlotLease(Protocol):
    """One output held: `busy()` takes a slot before its create or poll, `idle()` gives it back once the host's
    answer is terminal (both idempotent)."""

    async def busy(self) -> None: ...
    async def idle(self) -> None: ...


class Slots(Protocol):
    """Concurrency: the account's (`money.leases.SlotLeases`, the output to one holder) or this engine's alone
    (`LocalSlots`). A slot counts a task at the host, from create to terminal answer."""

    def hold(self, subject: str) -> AbstractAsyncContextManager[SlotLease]: ...


class LocalSlots:
    """`limit` slots of one engine, for an engine that shares no ledger limits (tests that drive it alone)."""

    def __init__(self, limit: int) -> None:
        self._sem = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def hold(self, subject: str) -> AsyncIterator[SlotLease]:
        lease = _LocalLease(self._sem)
        try:
            yield lease
        finally:
            await lease.idle()


class _LocalLease:
    def __init__(self, sem: asyncio.Semaphore) -> None:
        self._sem, self._busy = sem, False

    async def busy(self) -> None:
        if not self._busy:
            await self._sem.acquire()
            self._busy = True

    async def idle(self) -> None:
        if self._busy:
            self._busy = False
            self._sem.release()


class RateGate:
    """Spaces submissions and honours a shared pause after a 429 (Retry-After applies to all calls)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next_submit = 0.0
        self._pause_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def remaining_pause(self) -> float:
        """Seconds every call through this gate still waits (0 when not paused)."""
        return max(0.0, self._pause_until - time.monotonic())

    async def before_call(self) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def before_submit(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = max(self._next_submit - now, self._pause_until - now, 0.0)
            self._next_submit = max(now, self._next_submit) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base·2^retry)]."""
    return rng.uniform(0, min(cap, base * (2**retry)))
