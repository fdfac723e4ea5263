"""Submission pacing of one provider account, shared through the ledger's database (DESIGN §11).

The same interface as the engine's per-process `RateGate` (`pause`, `before_call`, `before_submit`), but
the schedule lives in the `rate_gates` row of the account: each create reserves the next free instant,
`1 / per_second` after the one reserved before it by any process on any machine, so N runs together
submit at the configured rate, not N times it. A 429's Retry-After pauses every run on the account.
Times come from the database's clock, so machines with skewed clocks still space their creates.
"""

from __future__ import annotations

import asyncio

from wan_pipeline.money.database import Database


class SharedRateGate:
    def __init__(self, db: Database, scope: str, per_second: float) -> None:
        self.db, self.scope = db, scope
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._lock = f"wan_pipeline:rate:{scope}"
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

    async def before_call(self) -> None:
        # Database work runs in a thread so the event loop's other polls and downloads go on meanwhile.
        delay = await asyncio.to_thread(self._pause_left)
        if delay > 0:
            await asyncio.sleep(delay)

    async def before_submit(self) -> None:
        delay = await asyncio.to_thread(lambda: self.reserve() - self.db.now())
        if delay > 0:
            await asyncio.sleep(delay)

    def _pause_left(self) -> float:
        rows = self.db.query("SELECT pause_until FROM rate_gates WHERE scope=?", (self.scope,))
        return float(rows[0][0]) - self.db.now() if rows else 0.0

    def reserve(self) -> float:
        """Takes the next free submission instant (database clock, epoch seconds) and returns it."""
        with self.db.transaction(self._lock):
            now = self.db.now()
            rows = self.db.query("SELECT next_submit_at, pause_until FROM rate_gates WHERE scope=?", (self.scope,))
            next_at, pause_until = (float(rows[0][0]), float(rows[0][1])) if rows else (0.0, 0.0)
            at = max(now, next_at, pause_until)
            self.db.execute(
                "UPDATE rate_gates SET next_submit_at=? WHERE scope=?", (at + self.interval, self.scope)
            )
        return at
