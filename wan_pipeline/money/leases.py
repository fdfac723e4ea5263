"""Concurrency slots of one provider account, leased through the ledger's database (DESIGN §11).

Every run on every machine that shares the ledger takes a lease before it works on an output, so:
- at most `limit` outputs of one account are in flight at once, whatever the number of runs;
- one output is leased by one holder at a time: two machines generating the same dataset never work on
  (and so never buy) the same output at once; the second waits, then finds it stored or resumes its record.

A lease survives its holder only briefly: it carries an expiry that a heartbeat renews while it is held.
A holder that is killed stops renewing, and its leases lapse after `ttl_s`; a holder on this same host
and PID namespace whose process is gone is reaped at once (the usual crash-and-rerun on one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from wan_pipeline.money.database import Database, InThread, Runner
from wan_pipeline.money.wakeups import Wakeups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    limit: int
    #: how long a lease outlives its last heartbeat (the heartbeat runs every ttl_s / 4)
    ttl_s: float = 60.0
    #: how often a task waiting for a slot (or for its output, leased elsewhere) asks again
    wait_s: float = 0.25


def holder_name() -> str:
    """host/pid-namespace:pid:nonce — unique per process, and telling whether a holder is our neighbour."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}/{namespace}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _gone_neighbour(holder: str, me: str) -> bool:
    """A holder in our host and PID namespace whose process no longer exists."""
    place, _, rest = holder.partition(":")
    my_place = me.partition(":")[0]
    pid_text = rest.partition(":")[0]
    if place != my_place or not pid_text.isdigit() or "/?" in place:
        return False
    pid = int(pid_text)
    # our own PID: this process (several sessions may run in it); a dead namesake lapses by its TTL
    return pid != os.getpid() and not Path(f"/proc/{pid}").exists()


#: this process's waiters for a lease, woken one per lease one of its engines gives back
RELEASES = Wakeups()


class SlotLeases:
    """`async with leases.hold(subject)`: one slot of the account's `limit`, and the subject to ourselves."""

    def __init__(
        self, db: Database, scope: str, settings: LeaseSettings, holder: str | None = None, runner: Runner | None = None
    ) -> None:
        self.db, self.scope, self.settings = db, scope, settings
        self.holder = holder or holder_name()
        self.runner: Runner = runner or InThread()
        self._held: set[int] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def hold(self, subject: str) -> AsyncIterator[int]:
        """Waits for a free slot while nobody else holds `subject`; released on exit (or lapses if we die)."""
        # Database work runs off the loop (`runner`): a commit (an fsync on SQLite) must not stall its polls.
        while (slot := await self.runner.run(lambda: self.try_acquire(subject))) is None:
            await RELEASES.wait(self.scope, self.settings.wait_s)
        self._held.add(slot)
        self._start_heartbeat()
        try:
            yield slot
        finally:
            self._held.discard(slot)
            if not self._held:
                self._stop_heartbeat()
            await asyncio.shield(self.runner.run(lambda: self.release(slot)))
            RELEASES.notify(self.scope)

    def try_acquire(self, subject: str) -> int | None:
        """A slot number, or None when every slot is taken or another holder has `subject`."""
        with self.db.transaction(f"wan_pipeline:leases:{self.scope}"):
            now = self.db.now()
            self.db.execute("DELETE FROM leases WHERE scope=? AND expires_at < ?", (self.scope, now))
            live = self.db.query("SELECT slot, holder, subject FROM leases WHERE scope=?", (self.scope,))
            for slot, holder, _ in live:
                if _gone_neighbour(str(holder), self.holder):
                    self.db.execute("DELETE FROM leases WHERE scope=? AND slot=?", (self.scope, slot))
            live = [row for row in live if not _gone_neighbour(str(row[1]), self.holder)]
            if any(held == subject for _, _, held in live) or len(live) >= self.settings.limit:
                return None
            taken = {int(row[0]) for row in live}
            slot = next(n for n in range(len(live) + 1) if n not in taken)
            self.db.execute(
                "INSERT INTO leases (scope, slot, holder, subject, expires_at) VALUES (?, ?, ?, ?, ?)",
                (self.scope, slot, self.holder, subject, now + self.settings.ttl_s),
            )
            return slot

    def release(self, slot: int) -> None:
        self.db.execute("DELETE FROM leases WHERE scope=? AND slot=? AND holder=?", (self.scope, slot, self.holder))

    def renew(self) -> int:
        """Pushes the expiry of every lease we hold; returns how many were still ours."""
        until = self.db.now() + self.settings.ttl_s
        kept = self.db.execute(
            "UPDATE leases SET expires_at=? WHERE scope=? AND holder=?", (until, self.scope, self.holder)
        )
        if kept < len(self._held):
            # Our event loop stalled past the TTL and another holder may have taken a lapsed slot.
            log.warning("%d lease(s) of %s lapsed before renewal", len(self._held) - kept, self.scope)
        return kept

    def holders(self) -> list[tuple[int, str, str]]:
        """(slot, holder, subject) of every unexpired lease of this scope: for status and tests."""
        rows = self.db.query(
            "SELECT slot, holder, subject FROM leases WHERE scope=? AND expires_at >= ? ORDER BY slot",
            (self.scope, self.db.now()),
        )
        return [(int(s), str(h), str(subj)) for s, h, subj in rows]

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ttl_s / 4)
            try:
                await self.runner.run(self.renew)
            except Exception as exc:  # a database hiccup: the next beat tries again well within the TTL
                log.warning("could not renew the leases of %s: %s", self.scope, type(exc).__name__)
