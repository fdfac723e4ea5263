"""The create slot: at most one create in flight per dataset on a host without idempotency keys, across every
process that shares the ledger (DESIGN §9).

One in flight at a time makes our send order the host's creation order, which is what lets a create whose
answer was lost be found again between its neighbours (`execution.reconcile`). The slot is a row in the
ledger, taken and given back in write transactions. A holder that dies keeps it only until it is seen to be
dead (same machine: its process is gone) or its lease runs out (another machine).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

from wan_pipeline.money.ledger import Ledger

SCHEMA = """
CREATE TABLE IF NOT EXISTS create_slots (
    slot TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires TEXT NOT NULL
)
"""


def _now() -> datetime:
    return datetime.now(UTC)


def new_holder() -> str:
    """Who holds a slot: this machine, this process, and a nonce (one engine of several in a process)."""
    return f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


def holder_alive(holder: str) -> bool:
    """False only when the holder surely died: a process of this machine that no longer exists."""
    host, _, rest = holder.partition("|")
    pid_text = rest.partition("|")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine: only its lease can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CreateSlots:
    def __init__(self, ledger: Ledger, holder: str | None = None) -> None:
        self.ledger = ledger
        self.holder = holder or new_holder()

    def take(self, slot: str, lease_s: float) -> bool:
        """Take `slot` (or extend it, if ours) unless a live holder's lease still runs; True when taken."""

        def attempt(db: sqlite3.Connection) -> bool:
            db.execute(SCHEMA)  # ledgers written before the slot existed get its table here
            row = db.execute("SELECT holder, expires FROM create_slots WHERE slot=?", (slot,)).fetchone()
            now = _now()
            if row is not None and row[0] != self.holder:
                expired = datetime.fromisoformat(row[1]) <= now
                if not expired and holder_alive(row[0]):
                    return False
            until = (now + timedelta(seconds=lease_s)).isoformat()
            db.execute(
                "INSERT INTO create_slots (slot, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(slot) DO UPDATE SET holder=excluded.holder, expires=excluded.expires",
                (slot, self.holder, until),
            )
            return True

        return self.ledger.write(attempt)

    def give_back(self, slot: str) -> None:
        self.ledger.write(
            lambda db: db.execute("DELETE FROM create_slots WHERE slot=? AND holder=?", (slot, self.holder))
        )
