"""Whose turn it is to create: one create in flight per dataset on a host without idempotency keys, across this
process's tasks and every process sharing the ledger (DESIGN §9; the ledger's slot is `money.slots`).

The ledger's slot is taken once per *streak* of creates, not once per create: while another create of this
process waits its turn the slot stays ours (its lease renewed as it ages), so a create costs one send mark and
one round trip instead of four transactions. A streak ends when no create of ours waits, or after
`STREAK_S`, when the slot is given back and the next take waits `HANDOVER_S` so that another process polling
for it (every `POLL_S`) gets its turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from wan_pipeline.execution.journal import Journal
from wan_pipeline.money.slots import CreateSlots

#: longest a streak keeps the ledger's slot while creates of this process still wait
STREAK_S = 30.0
#: pause before re-taking a slot given back at a streak's end (another process's turn)
HANDOVER_S = 0.1
#: how often a process waiting for a slot held elsewhere asks again
POLL_S = 0.05


class CreateTurns:
    def __init__(self, slots: CreateSlots, journal: Journal, lease_s: float) -> None:
        self.slots, self.journal, self.lease_s = slots, journal, lease_s
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._held: str | None = None
        self._streak_start = 0.0
        self._renew_at = 0.0
        self._not_before = 0.0

    @asynccontextmanager
    async def turn(self, slot: str) -> AsyncIterator[None]:
        """This process's turn, holding the ledger's `slot`; exactly one create runs inside."""
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            await self._hold(slot)
            yield
        finally:
            try:
                if self._waiting == 0 or time.monotonic() - self._streak_start > STREAK_S:
                    await self.give_back()
            finally:
                self._lock.release()

    async def _hold(self, slot: str) -> None:
        if self._held is not None and self._held != slot:
            await self.give_back()
        now = time.monotonic()
        if self._held == slot and now < self._renew_at:
            return
        if self._held is None and now < self._not_before:
            await asyncio.sleep(self._not_before - now)
        while not await self.journal.run(lambda: self.slots.take(slot, self.lease_s)):
            await asyncio.sleep(POLL_S)
        now = time.monotonic()
        if self._held is None:
            self._streak_start = now
        self._held, self._renew_at = slot, now + self.lease_s / 2

    async def give_back(self) -> None:
        """Frees the ledger's slot if we hold it (also when the engine stops)."""
        held, self._held = self._held, None
        if held is None:
            return
        if time.monotonic() - self._streak_start > STREAK_S:
            self._not_before = time.monotonic() + HANDOVER_S
        await self.journal.run(lambda: self.slots.give_back(held))
