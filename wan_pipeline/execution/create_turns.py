"""Whose turn it is to create: one create in flight per dataset on a host without idempotency keys, across every
engine of this process and every process sharing the ledger (DESIGN §9; the ledger's slot is `money.slots`).

- In this process, engines (the range runs `generate` runs side by side, each on its own event loop in its own
  thread) queue for one turn per slot, handed directly from one create to the next: to the oldest waiting create
  of the engine that opened first (`money.wakeups.loop_rank`), so the earliest range run sends all it can and
  the runs end one after the other.
- The ledger's slot is held by the process for a *streak* of creates, not taken per create: while a create of
  this process waits its turn the slot stays ours (its lease renewed as it ages), so a create costs one send
  mark and one round trip instead of four transactions. A streak ends when no create of ours waits, or after
  `STREAK_S`; the slot is then given back, and the next take waits `HANDOVER_S` so that another process
  polling for it (every `POLL_S`) gets its turn.
- A create's task id is written after its turn passes on (`Submitter._send`): to a create of the same engine
  that is safe as is (one journal commits in order, and the next create awaits its own send mark), to another
  engine's create only once it is committed — so a create is never sent before the previous one's task id is
  durable, which is what lets a lost answer be found in its own window of the host's list. Serving the
  first-opened engine first also keeps the turn within one engine, which needs no such wait.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from wan_pipeline.execution.journal import Journal
from wan_pipeline.money.slots import CreateSlots, new_holder
from wan_pipeline.money.wakeups import Wakeups, loop_rank

#: longest a streak keeps the ledger's slot while creates of this process still wait
STREAK_S = 30.0
#: pause before re-taking a slot given back at a streak's end (another process's turn)
HANDOVER_S = 0.1
#: how often a process waiting for a slot held elsewhere asks again
POLL_S = 0.05
#: longest a download waits for this process's creates to pass (`creates_quiet`), and how often it looks
QUIET_CAP_S, QUIET_STEP_S = 0.3, 0.005
#: who holds ledger slots for this process (every engine in it: the process's turns keep them apart)
PROCESS_HOLDER = new_holder()
_GIVEN_BACK = Wakeups()


class _ProcessTurn:
    """One slot's turn within this process: a queue of waiting creates, each on its own event loop.

    The turn goes to the oldest waiter of the first-opened engine (`loop_rank`). To another engine's create
    it goes only once the last create's task id is committed (its own engine's journal commits in order, so a
    create of the same engine needs no wait) — handed over by that write's completion, never by waiting in the turn."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = False
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.held = False  # the ledger's slot is ours
        self.streak_start = 0.0
        self.renew_at = 0.0
        self.not_before = 0.0
        #: the engine (loop) of the last create, and that create's task id write
        self.last: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any] | None] | None = None

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self.lock:
            if not self.busy:
                self.busy = True
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self.waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self.lock:
                if (loop, waiter) in self.waiters:
                    self.waiters.remove((loop, waiter))
                    raise
            self.release()  # the turn was handed to us as we were cancelled: pass it on
            raise

    def waiting(self) -> bool:
        with self.lock:
            return bool(self.waiters)

    def release(
        self, loop: asyncio.AbstractEventLoop | None = None, pending: asyncio.Future[Any] | None = None
    ) -> None:
        """Pass the turn on; `loop` and `pending` name the create that just ran and its task id write (a turn
        used without a create, or whose create's writes were awaited in it, leaves the last one standing)."""
        with self.lock:
            if loop is not None and pending is not None:
                self.last = (loop, pending)
            entry = self._next()
            if entry is None:
                self.busy = False
                return
        last_loop, last_write = self.last or (None, None)
        if entry[0] is last_loop or last_write is None or last_write.done() or last_loop is None:
            self._wake(entry)
            return
        try:  # another engine's create: once the last task id is committed (a callback in its own loop)
            last_loop.call_soon_threadsafe(last_write.add_done_callback, lambda _: self._wake(entry))
        except RuntimeError:  # its loop has closed, so its writes are done
            self._wake(entry)

    def _next(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None:
        if not self.waiters:
            return None
        first = min(range(len(self.waiters)), key=lambda i: loop_rank(self.waiters[i][0]))  # the oldest of a rank
        return self.waiters.pop(first)

    def _wake(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]) -> None:
        try:
            entry[0].call_soon_threadsafe(_hand_over, entry[1], self)
        except RuntimeError:  # that loop closed: its create is gone
            self.release()


def _hand_over(waiter: asyncio.Future[None], turn: _ProcessTurn) -> None:
    if waiter.done():  # cancelled meanwhile: the next one
        turn.release()
    else:
        waiter.set_result(None)


_TURNS: dict[str, _ProcessTurn] = {}
_TURNS_LOCK = threading.Lock()


def _process_turn(slot: str) -> _ProcessTurn:
    with _TURNS_LOCK:
        return _TURNS.setdefault(slot, _ProcessTurn())


async def creates_quiet(cap_s: float = QUIET_CAP_S) -> None:
    """Until no create of this process holds or waits for a create turn, at most `cap_s`: work that can wait
    (downloading and storing a finished task's output) lets the creates go first.

    On a host without idempotency keys the creates are one chain, and the slots freed at the end of a wave
    wait on it. Every finished task's download, decoding, hashing and ledger writes competed with that chain
    for the interpreter: a slot's next create left 1-3 ms after its terminal answer at the median but 90-140 ms
    at the 90th percentile (engine alone, 640 tasks at 32: 41.1 s; letting downloads wait for the chain:
    40.8-40.9 s, the ideal being 40 s — benchmarks/RESULTS.md). A download a few tenths of a second later costs
    nothing: result URLs stay valid for hours and the slot is already free."""
    deadline = time.monotonic() + cap_s
    while time.monotonic() < deadline and _creating():
        await asyncio.sleep(QUIET_STEP_S)


def _creating() -> bool:
    with _TURNS_LOCK:
        turns = list(_TURNS.values())
    return any(turn.busy for turn in turns)


class CreateTurns:
    """One engine's way into its process's turns (see the module docstring)."""

    def __init__(self, slots: CreateSlots, journal: Journal, lease_s: float) -> None:
        self.slots = CreateSlots(slots.ledger, holder=PROCESS_HOLDER)
        self.journal, self.lease_s = journal, lease_s
        self._slots_seen: set[str] = set()
        #: the task id write of the create that just had the turn (`Submitter._send` sets it)
        self.pending: asyncio.Future[Any] | None = None

    @asynccontextmanager
    async def turn(self, slot: str) -> AsyncIterator[None]:
        """This process's turn, holding the ledger's `slot`; exactly one create runs inside."""
        proc = _process_turn(slot)
        await proc.acquire()
        self._slots_seen.add(slot)
        try:
            await self._hold(proc, slot)
            yield
        finally:
            await self._pass_on(proc, slot)

    async def meanwhile(self, slot: str, work: Callable[[], Awaitable[None]]) -> None:
        """`work` (waiting for a concurrency slot) while holding the turn of `slot`, the ledger's slot renewed
        as it ages however long that takes."""
        proc = _process_turn(slot)
        job = asyncio.ensure_future(work())
        try:
            while not (await asyncio.wait({job}, timeout=self.lease_s / 4))[0]:
                await self._hold(proc, slot)
            job.result()
        finally:
            job.cancel()

    async def _hold(self, proc: _ProcessTurn, slot: str) -> None:
        now = time.monotonic()
        if proc.held and now < proc.renew_at:
            return
        if not proc.held and now < proc.not_before:
            await asyncio.sleep(proc.not_before - now)
        await _GIVEN_BACK.ask_until(slot, self._take(slot), POLL_S)
        now = time.monotonic()
        if not proc.held:
            proc.streak_start = now
        proc.held, proc.renew_at = True, now + self.lease_s / 2

    def _take(self, slot: str) -> Callable[[], Awaitable[bool | None]]:
        """One try at the ledger's `slot`, for `ask_until`: True if taken, None if another process has it."""

        async def take() -> bool | None:
            return await self.journal.run(lambda: self.slots.take(slot, self.lease_s)) or None

        return take

    async def _pass_on(self, proc: _ProcessTurn, slot: str) -> None:
        pending, self.pending = self.pending, None
        try:
            if proc.held and (not proc.waiting() or time.monotonic() - proc.streak_start > STREAK_S):
                await self._give_back(proc, slot)
        finally:
            proc.release(asyncio.get_running_loop(), pending)

    async def _give_back(self, proc: _ProcessTurn, slot: str) -> None:
        proc.held = False
        if time.monotonic() - proc.streak_start > STREAK_S:
            proc.not_before = time.monotonic() + HANDOVER_S
        await self.journal.run(lambda: self.slots.give_back(slot))
        _GIVEN_BACK.notify(slot)

    async def give_back(self) -> None:
        """When the engine stops: frees a ledger slot this process holds if no create of it waits."""
        for slot in self._slots_seen:
            proc = _process_turn(slot)
            await proc.acquire()
            try:
                if proc.held and not proc.waiting():
                    await self._give_back(proc, slot)
            finally:
                proc.release()
