"""Submission pacing of one provider account, shared through the ledger's database (DESIGN §11).

The same interface as the engine's per-process `RateGate` (`pause`, `before_call`, `before_submit`), but
the schedule lives in the `rate_gates` row of the account: each create reserves the next free instant,
`1 / per_second` after the one reserved before it by any process on any machine, so N runs together
submit at the configured rate, not N times it. A 429's Retry-After pauses every run on the account.
Times come from the database's clock, so machines with skewed clocks still space their creates.
"""

from __future__ import annotations

import asyncio
import time

from wan_pipeline.money.database import Database, InThread, Runner

#: how stale this process's copy of the account's pause may get: another run's Retry-After is honoured here
#: within this, without a database read before every call
PAUSE_REFRESH_S = 0.5
#: how much submission time one reservation takes at most: at high rates a run reserves several instants in
#: one transaction instead of one per create (an unused instant is simply skipped, never given twice)
BLOCK_S = 0.1


class SharedRateGate:
    def __init__(self, db: Database, scope: str, per_second: float, runner: Runner | None = None) -> None:
        self.db, self.scope = db, scope
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.runner: Runner = runner or InThread()
        self._lock = f"wan_pipeline:rate:{scope}"
        self._pause_until = 0.0  # database clock, as last read
        self._pause_read_at = -PAUSE_REFRESH_S  # time.monotonic() of that read
        self._clock_offset = 0.0  # database clock minus time.time(), as last read
        self._block: list[float] = []  # instants reserved and not yet used (database clock)
        self._block_lock = asyncio.Lock()
        self.db.execute(
            "INSERT INTO rate_gates (scope, next_submit_at, pause_until) VALUES (?, 0, 0) "
            "ON CONFLICT(scope) DO NOTHING",
            (scope,),
        )

    def pause(self, seconds: float) -> None:
        """Every call of every run on this account waits `seconds` from now (a host's Retry-After)."""
        with self.db.transaction(self._lock):
            until = self.db.now() + seconds
            self.db.execute(
                "UPDATE rate_gates SET pause_until=? WHERE scope=? AND pause_until < ?", (until, self.scope, until)
            )
        self._pause_until = max(self._pause_until, until)

    async def before_call(self) -> None:
        if time.monotonic() - self._pause_read_at >= PAUSE_REFRESH_S:
            self._pause_read_at = time.monotonic()
            self._pause_until, now = await self.runner.run(self._read_pause)
            self._clock_offset = now - time.time()
        delay = self._pause_until - (time.time() + self._clock_offset)
        if delay > 0:
            await asyncio.sleep(delay)

    async def before_submit(self) -> None:
        async with self._block_lock:
            # an instant is used within its own interval or not at all: late ones are dropped, so a run that
            # reserved ahead can never send a burst of them at once
            late = time.time() + self._clock_offset - self.interval
            self._block = [t for t in self._block if t >= late]
            if not self._block:
                self._block = await self.runner.run(self._reserve_block)
            at = self._block.pop(0)
        await self.before_call()
        delay = max(at, self._pause_until) - (time.time() + self._clock_offset)
        if delay > 0:
            await asyncio.sleep(delay)

    def _read_pause(self) -> tuple[float, float]:
        rows = self.db.query("SELECT pause_until FROM rate_gates WHERE scope=?", (self.scope,))
        return (float(rows[0][0]) if rows else 0.0), self.db.now()

    def _reserve_block(self) -> list[float]:
        count = max(1, int(BLOCK_S / self.interval)) if self.interval > 0 else 1
        first = self.reserve(count)
        self._clock_offset = self.db.now() - time.time()
        return [first + i * self.interval for i in range(count)]

    def reserve(self, count: int = 1) -> float:
        """Takes the next `count` free submission instants (database clock, epoch seconds), `interval` apart,
        and returns the first."""
        with self.db.transaction(self._lock):
            now = self.db.now()
            rows = self.db.query("SELECT next_submit_at, pause_until FROM rate_gates WHERE scope=?", (self.scope,))
            next_at, pause_until = (float(rows[0][0]), float(rows[0][1])) if rows else (0.0, 0.0)
            at = max(now, next_at, pause_until)
            self.db.execute(
                "UPDATE rate_gates SET next_submit_at=? WHERE scope=?", (at + count * self.interval, self.scope)
            )
        return at
