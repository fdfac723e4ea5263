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

from wan_pipeline.errors import Transient
from wan_pipeline.money.database import Database, InThread, Runner
from wan_pipeline.money.lulls import LULLS
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


#: this process's waiters for a slot, woken one per slot one of its engines frees
RELEASES = Wakeups()


class LeaseLost(Transient):
    """Our lease on an output lapsed while we held it (the event loop stalled past the TTL): another holder may
    be working on it now, so this run leaves the output alone (it fails for this run; the next resumes it)."""


class Lease:
    """An output held by this process (`SlotLeases.hold`). `busy()` before the output's create or poll takes
    one of the account's slots, waiting for one; `idle()` once the host's answer is terminal gives it to the
    next create while this process downloads and stores, keeping the output its own. So the slots count what
    the provider counts, tasks at the host, and a finished task's download never holds up the next create."""

    def __init__(self, leases: SlotLeases, slot: int) -> None:
        self._leases, self.slot = leases, slot

    @property
    def counted(self) -> bool:
        return self.slot >= 0

    async def busy(self) -> None:
        leases = self._leases
        if self.counted:
            return
        (self.slot, spare), picked = await RELEASES.ask_until(
            leases.scope, lambda: leases.runner.run(lambda: leases.try_promote(self.slot)), leases.settings.wait_s
        )
        LULLS.started(self)
        # more counted slots are free (freed by a holder elsewhere, found by asking), or a release picked us
        # while we asked and may have freed another slot than ours: wake a waiter (at worst it asks in vain)
        if spare or picked:
            RELEASES.notify(leases.scope)

    async def idle(self) -> None:
        if self.counted:
            leases = self._leases
            LULLS.ended(self)
            self.slot = await asyncio.shield(leases.runner.run(lambda: leases.demote(self.slot)))
            RELEASES.notify(leases.scope)


class SlotLeases:
    """`async with leases.hold(subject) as lease`: the output to ourselves; `lease.busy()` one of the account's
    `limit` slots for it. Rows of the `leases` table: slots 0..limit-1 are counted, a negative slot holds
    only its subject (older versions count those too, which only makes them more careful)."""

    def __init__(
        self, db: Database, scope: str, settings: LeaseSettings, holder: str | None = None, runner: Runner | None = None
    ) -> None:
        self.db, self.scope, self.settings = db, scope, settings
        self.holder = holder or holder_name()
        self.runner: Runner = runner or InThread()
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def hold(self, subject: str) -> AsyncIterator[Lease]:
        """Waits while another holder has `subject`; released on exit (or lapses if we die)."""
        # Database work runs off the loop (`runner`): a commit (an fsync on SQLite) must not stall its polls.
        slot, _ = await RELEASES.ask_until(
            self._subject_key(subject), lambda: self.runner.run(lambda: self.try_claim(subject)),
            self.settings.wait_s, shared=False,
        )  # fmt: skip
        lease = Lease(self, slot)
        self._held.add(subject)
        self._start_heartbeat()
        try:
            yield lease
        finally:
            self._held.discard(subject)
            if not self._held:
                self._stop_heartbeat()
            if lease.counted:
                LULLS.ended(lease, answered=False)
            await asyncio.shield(self.runner.run(lambda: self.release(lease.slot)))
            if lease.counted:
                RELEASES.notify(self.scope)
            RELEASES.notify(self._subject_key(subject))

    def _subject_key(self, subject: str) -> str:
        """One key per output: its release in this process wakes the task waiting for that output, at once.
        With one key for every output a release woke some waiter — most likely for another output, which asked
        the database in vain — while the one waiting for it found it on its own timer, up to `wait_s` later;
        the waiters for the head start's outputs (`cli.head_start`), a run's first wave of them, asked the
        database 4 times a second each meanwhile."""
        return f"{self.scope}#subject:{subject}"

    def try_acquire(self, subject: str) -> int | None:
        """Claim `subject` and a counted slot at once: the slot number, or None (and nothing taken)."""
        with self.db.transaction(self._lock):
            now = self.db.now()
            live = self._live(now)
            slot = self._counted_free(live)
            if slot is None or any(held == subject for _, _, held in live):
                return None
            self._insert(subject, slot, now)
            return slot

    def try_claim(self, subject: str) -> int | None:
        """`subject` to ourselves (a row with a negative slot), or None when another holder has it."""
        with self.db.transaction(self._lock):
            now = self.db.now()
            live = self._live(now)
            if any(held == subject for _, _, held in live):
                return None
            slot = _free_negative(live)
            self._insert(subject, slot, now)
            return slot

    def try_promote(self, slot: int) -> tuple[int, int] | None:
        """Our row `slot` becomes a counted slot: (its number, how many counted slots are still free), or None
        while all `limit` are taken."""
        with self.db.transaction(self._lock):
            now = self.db.now()
            live = self._live(now)
            new = self._counted_free(live)
            if new is None:
                return None
            self._move(slot, new, now)
            return new, self.settings.limit - 1 - sum(1 for taken, _, _ in live if taken >= 0)

    def demote(self, slot: int) -> int:
        """Our counted `slot` given back, its subject kept: the row's new (negative) slot."""
        with self.db.transaction(self._lock):
            now = self.db.now()
            new = _free_negative(self._live(now))
            self._move(slot, new, now)
            return new

    def release(self, slot: int) -> None:
        self.db.execute("DELETE FROM leases WHERE scope=? AND slot=? AND holder=?", (self.scope, slot, self.holder))

    @property
    def _lock(self) -> str:
        return f"wan_pipeline:leases:{self.scope}"

    def _live(self, now: float) -> list[tuple[int, str, str]]:
        """Every row of the scope unexpired at `now` (the database's clock, read once per transaction), less
        (and deleting) those of a holder gone from this host."""
        self.db.execute("DELETE FROM leases WHERE scope=? AND expires_at < ?", (self.scope, now))
        rows = self.db.query("SELECT slot, holder, subject FROM leases WHERE scope=?", (self.scope,))
        gone = {h for h in {str(holder) for _, holder, _ in rows} - {self.holder} if _gone_neighbour(h, self.holder)}
        live = []
        for slot, holder, subject in rows:
            if str(holder) in gone:  # each holder looked up once: a run holds many rows
                self.db.execute("DELETE FROM leases WHERE scope=? AND slot=?", (self.scope, slot))
            else:
                live.append((int(slot), str(holder), str(subject)))
        return live

    def _counted_free(self, live: list[tuple[int, str, str]]) -> int | None:
        """The lowest free counted slot, or None when all `limit` are taken."""
        taken = {slot for slot, _, _ in live if slot >= 0}
        if len(taken) >= self.settings.limit:
            return None
        return next(n for n in range(len(taken) + 1) if n not in taken)

    def _insert(self, subject: str, slot: int, now: float) -> None:
        self.db.execute(
            "INSERT INTO leases (scope, slot, holder, subject, expires_at) VALUES (?, ?, ?, ?, ?)",
            (self.scope, slot, self.holder, subject, now + self.settings.ttl_s),
        )

    def _move(self, slot: int, new: int, now: float) -> None:
        moved = self.db.execute(
            "UPDATE leases SET slot=?, expires_at=? WHERE scope=? AND slot=? AND holder=?",
            (new, now + self.settings.ttl_s, self.scope, slot, self.holder),
        )
        if moved != 1:
            raise LeaseLost(code="lease_lost", message=f"our lease of {self.scope} lapsed while it was held")

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


def _free_negative(live: list[tuple[int, str, str]]) -> int:
    """A slot number below every row's: a row holding only its subject."""
    return min([slot for slot, _, _ in live] + [0]) - 1
