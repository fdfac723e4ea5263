"""The durable task ledger: money is data.

One SQLite file per dataset. A task attempt is written *before* its submission (with the idempotency
key it will use) and its provider task id *right after*, each in its own committed transaction, so a
crash at any point leaves enough on disk to resume the paid-for task instead of buying it again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from wan_pipeline.errors import AMBIGUOUS, names

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    identity TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    dataset TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    variant INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params_json TEXT NOT NULL,
    seed INTEGER NOT NULL,
    seed_source TEXT NOT NULL,
    extra_json TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_json TEXT NOT NULL,
    call_json TEXT,
    state TEXT NOT NULL,
    task_id TEXT,
    error_code TEXT,
    error_class TEXT,
    error_message TEXT,
    credits_estimate REAL,
    credits_reserved REAL,
    credits_final REAL,
    cost_usd REAL,
    cost_source TEXT,
    provider_seed INTEGER,
    output_urls TEXT,
    submit_calls INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT,
    completed_at TEXT,
    run_id TEXT,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    spec_sha256 TEXT,
    table_sha256 TEXT,
    reference_sha256s TEXT,
    master_seed INTEGER,
    code_version TEXT,
    PRIMARY KEY (identity, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_prompt ON attempts (dataset, prompt_id);
CREATE TABLE IF NOT EXISTS orphans (
    task_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT,
    created TEXT,
    cost_usd REAL,
    cost_source TEXT,
    found_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    identity TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    output_index INTEGER NOT NULL,
    source_url TEXT,
    media_uri TEXT,
    media_sha256 TEXT,
    mime_type TEXT,
    bytes INTEGER,
    width INTEGER,
    height INTEGER,
    duration_s REAL,
    fps REAL,
    warnings TEXT,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (identity, attempt, output_index)
);
"""

T = TypeVar("T")

# Attempt states. `submitting` = written before the HTTP call; `submitted` = the provider holds a task.
SUBMITTING = "submitting"
SUBMITTED = "submitted"
SUCCEEDED = "succeeded"  # provider finished; outputs may still be downloading
STORED = "stored"  # every output verified and stored
FAILED = "failed"


#: names of the error classes after which the provider may hold (and bill) a task we never heard about
#: (errors.AMBIGUOUS, the one list): such a failed attempt without a task id still counts against the budget
AMBIGUOUS_ERRORS = names(AMBIGUOUS)
_SURELY_UNBILLED = (
    "state = 'failed' AND task_id IS NULL AND error_class IS NOT NULL "
    f"AND error_class NOT IN ({', '.join(repr(c) for c in AMBIGUOUS_ERRORS)})"
)


#: a `submitting` record older than this was left by a process that died mid-create (requests time out sooner)
IN_FLIGHT_STALE_S = 900.0


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Attempt:
    identity: str
    attempt: int
    dataset: str
    prompt_id: str
    variant: int
    fingerprint: str
    provider: str
    model: str
    mode: str
    prompt: str
    params_json: str
    seed: int
    seed_source: str
    extra_json: str
    idempotency_key: str
    request_json: str
    state: str
    call_json: str | None = None
    task_id: str | None = None
    error_code: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    credits_estimate: float | None = None
    credits_reserved: float | None = None
    credits_final: float | None = None
    cost_usd: float | None = None
    cost_source: str | None = None
    provider_seed: int | None = None
    output_urls: str | None = None
    submit_calls: int = 0
    submitted_at: str | None = None
    completed_at: str | None = None
    run_id: str | None = None
    updated_at: str = ""
    #: when the create was last handed to the wire: orders an output's create among its neighbours
    sent_at: str | None = None
    # Provenance, fixed when the attempt is first written: the inputs and code that made it, which a later
    # edit of the spec or table cannot change (lineage names them per row). None in ledgers written before.
    spec_sha256: str | None = None
    table_sha256: str | None = None
    reference_sha256s: str | None = None  # JSON list, one entry per reference (null for a URL reference)
    master_seed: int | None = None
    code_version: str | None = None

    @property
    def urls(self) -> list[str]:
        return list(json.loads(self.output_urls)) if self.output_urls else []


@dataclass
class Orphan:
    """A task the host holds (and may bill) that no output of the dataset claims."""

    task_id: str
    dataset: str
    provider: str
    model: str
    status: str | None
    created: str | None
    cost_usd: float | None
    cost_source: str | None
    found_at: str


@dataclass
class StoredOutput:
    identity: str
    attempt: int
    output_index: int
    source_url: str | None
    media_uri: str
    media_sha256: str
    mime_type: str
    bytes: int
    width: int | None
    height: int | None
    duration_s: float | None
    fps: float | None
    warnings: str | None
    stored_at: str


def surely_unbilled(a: Attempt) -> bool:
    """Failed before the provider could have created a task (the SQL in `committed_credits` agrees)."""
    return (
        a.state == FAILED and a.task_id is None and a.error_class is not None and a.error_class not in AMBIGUOUS_ERRORS
    )


def held_credits(a: Attempt) -> float:
    """What one attempt contributes to `Ledger.committed_credits`."""
    if a.credits_final is not None:
        return a.credits_final
    if surely_unbilled(a):
        return 0.0
    if a.credits_reserved is not None:
        return a.credits_reserved
    return a.credits_estimate or 0.0


def held_usd(a: Attempt) -> float:
    """What one attempt contributes to `Ledger.committed_usd`."""
    return 0.0 if surely_unbilled(a) else (a.cost_usd or 0.0)


_ATTEMPT_COLS = [f.name for f in fields(Attempt)]
#: columns added after the first ledgers were written, all nullable: (name, SQLite type), oldest first
_ADDED_COLUMNS = (
    ("call_json", "TEXT"),
    ("sent_at", "TEXT"),
    ("spec_sha256", "TEXT"),
    ("table_sha256", "TEXT"),
    ("reference_sha256s", "TEXT"),
    ("master_seed", "INTEGER"),
    ("code_version", "TEXT"),
)
_OUTPUT_COLS = [f.name for f in fields(StoredOutput)]
_ORPHAN_COLS = [f.name for f in fields(Orphan)]


class Ledger:
    """Thread-safe; every write is its own committed transaction (WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Re-entrant: a `check` inside a write transaction reads the ledger on the same connection.
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added after a ledger was first written (ledgers outlive code versions)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(attempts)")}
        for column, sql_type in _ADDED_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE attempts ADD COLUMN {column} {sql_type}")

    def close(self) -> None:
        self._db.close()

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` on the connection inside one write transaction (or the current batch): for small tables of
        their own, such as `money.slots`."""
        with self._tx() as db:
            return fn(db)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._batch_depth:  # inside a batch: its transaction (and savepoint) already hold the lock
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[Callable[[], AbstractContextManager[None]]]:
        """One transaction for many operations (group commit): yields a factory of savepoints, one per
        operation, so an operation that raises is undone alone. Used by the engine's journal."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._batch_depth += 1
            try:
                yield self._savepoint
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._batch_depth -= 1
            self._db.execute("COMMIT")

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._db.execute("SAVEPOINT op")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO SAVEPOINT op")
            self._db.execute("RELEASE SAVEPOINT op")
            raise
        self._db.execute("RELEASE SAVEPOINT op")

    # -- attempts ------------------------------------------------------------------------------
    def attempts(self, identity: str) -> list[Attempt]:
        with self._lock:
            cur = self._db.execute(
                f"SELECT {', '.join(_ATTEMPT_COLS)} FROM attempts WHERE identity=? ORDER BY attempt", (identity,)
            )
            return [Attempt(*row) for row in cur.fetchall()]

    def latest(self, identity: str) -> Attempt | None:
        found = self.attempts(identity)
        return found[-1] if found else None

    def all_attempts(self, dataset: str | None = None) -> list[Attempt]:
        sql = f"SELECT {', '.join(_ATTEMPT_COLS)} FROM attempts"
        args: tuple[Any, ...] = ()
        if dataset is not None:
            sql += " WHERE dataset=?"
            args = (dataset,)
        with self._lock:
            return [Attempt(*row) for row in self._db.execute(sql + " ORDER BY prompt_id, variant, attempt", args)]

    def begin_attempt(self, a: Attempt, check: Callable[[], None] | None = None) -> None:
        """Written before the submission leaves this process (insert or re-arm the same attempt).

        `check` (the budget) runs inside the same write transaction and may raise to abort it: SQLite's
        write lock makes check-then-insert atomic across every process sharing this ledger, so concurrent
        runs cannot each see the same headroom and together spend past the budget.
        """
        a.updated_at = utcnow()
        with self._tx() as db:
            if check is not None:
                check()
            db.execute(
                f"INSERT INTO attempts ({', '.join(_ATTEMPT_COLS)}) VALUES ({', '.join('?' * len(_ATTEMPT_COLS))}) "
                "ON CONFLICT(identity, attempt) DO UPDATE SET state=excluded.state, "
                "request_json=excluded.request_json, "
                "idempotency_key=excluded.idempotency_key, call_json=excluded.call_json, task_id=excluded.task_id, "
                "error_code=NULL, error_class=NULL, error_message=NULL, "
                "run_id=excluded.run_id, updated_at=excluded.updated_at",
                [getattr(a, c) for c in _ATTEMPT_COLS],
            )

    def update(self, identity: str, attempt: int, **values: Any) -> None:
        values["updated_at"] = utcnow()
        cols = ", ".join(f"{k}=?" for k in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE attempts SET {cols} WHERE identity=? AND attempt=?", [*values.values(), identity, attempt]
            )

    def count_submit_call(self, identity: str, attempt: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET submit_calls = submit_calls + 1, sent_at = ? WHERE identity=? AND attempt=?",
                (utcnow(), identity, attempt),
            )

    # -- outputs -------------------------------------------------------------------------------
    def record_output(self, o: StoredOutput) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO outputs ({', '.join(_OUTPUT_COLS)}) "
                f"VALUES ({', '.join('?' * len(_OUTPUT_COLS))})",
                [getattr(o, c) for c in _OUTPUT_COLS],
            )

    def outputs(self, identity: str, attempt: int) -> list[StoredOutput]:
        with self._lock:
            cur = self._db.execute(
                f"SELECT {', '.join(_OUTPUT_COLS)} FROM outputs WHERE identity=? AND attempt=? ORDER BY output_index",
                (identity, attempt),
            )
            return [StoredOutput(*row) for row in cur.fetchall()]

    def all_outputs(self) -> list[StoredOutput]:
        with self._lock:
            cur = self._db.execute(f"SELECT {', '.join(_OUTPUT_COLS)} FROM outputs")
            return [StoredOutput(*row) for row in cur.fetchall()]

    # -- orphans -------------------------------------------------------------------------------
    def record_orphan(self, o: Orphan) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO orphans ({', '.join(_ORPHAN_COLS)}) "
                f"VALUES ({', '.join('?' * len(_ORPHAN_COLS))})",
                [getattr(o, c) for c in _ORPHAN_COLS],
            )

    def claim_orphan(self, task_id: str) -> None:
        """An output adopted this task: it is no longer an orphan."""
        with self._tx() as db:
            db.execute("DELETE FROM orphans WHERE task_id=?", (task_id,))

    def orphans(self, dataset: str) -> list[Orphan]:
        with self._lock:
            cur = self._db.execute(
                f"SELECT {', '.join(_ORPHAN_COLS)} FROM orphans WHERE dataset=? ORDER BY created, task_id", (dataset,)
            )
            return [Orphan(*row) for row in cur.fetchall()]

    # -- money ---------------------------------------------------------------------------------
    def committed_credits(self, dataset: str) -> float:
        """Credits spent or held: settled amounts where known, else reserved, else our estimate."""
        with self._lock:
            row = self._db.execute(
                f"""SELECT COALESCE(SUM(CASE
                       WHEN credits_final IS NOT NULL THEN credits_final
                       WHEN {_SURELY_UNBILLED} THEN 0
                       WHEN credits_reserved IS NOT NULL THEN credits_reserved
                       ELSE COALESCE(credits_estimate, 0) END), 0)
                   FROM attempts WHERE dataset=?""",
                (dataset,),
            ).fetchone()
            return float(row[0])

    def latest_state_counts(self, dataset: str) -> dict[str, int]:
        """How many outputs (identities) have their latest attempt in each state: one aggregate query, for
        progress counters that cost the same at 10 outputs as at 100,000."""
        with self._lock:
            rows = self._db.execute(
                """SELECT a.state, COUNT(*) FROM attempts a
                   JOIN (SELECT identity, MAX(attempt) AS last FROM attempts WHERE dataset=? GROUP BY identity) l
                     ON a.identity = l.identity AND a.attempt = l.last
                   GROUP BY a.state""",
                (dataset,),
            ).fetchall()
            return {str(state): int(n) for state, n in rows}

    def committed_usd(self, dataset: str) -> float:
        with self._lock:
            row = self._db.execute(
                f"SELECT COALESCE(SUM(cost_usd), 0) FROM attempts WHERE dataset=? AND NOT ({_SURELY_UNBILLED})",
                (dataset,),
            ).fetchone()
            return float(row[0])

    def highest_charge(self, dataset: str) -> float | None:
        """The highest per-task charge the host has reported for this dataset (reserved or final), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(MAX(COALESCE(credits_reserved, 0), COALESCE(credits_final, 0))) FROM attempts "
                "WHERE dataset=? AND (credits_reserved > 0 OR credits_final > 0)",
                (dataset,),
            ).fetchone()
            return None if row[0] is None else float(row[0])

    def charges_unknown_in_flight(self, dataset: str, exclude: tuple[str, int]) -> int:
        """Creates in flight (or answered) whose charge is neither reported nor estimated yet. A `submitting`
        record untouched for IN_FLIGHT_STALE_S was left by a process that died: not in flight any more."""
        cutoff = (datetime.now(UTC) - timedelta(seconds=IN_FLIGHT_STALE_S)).isoformat(timespec="milliseconds")
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM attempts WHERE dataset=? AND state IN (?, ?) AND credits_reserved IS NULL "
                "AND credits_final IS NULL AND credits_estimate IS NULL AND NOT (identity=? AND attempt=?) "
                "AND NOT (state=? AND updated_at < ?)",
                (dataset, SUBMITTING, SUBMITTED, *exclude, SUBMITTING, cutoff.replace("+00:00", "Z")),
            ).fetchone()
            return int(row[0])
