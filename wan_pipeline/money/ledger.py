"""The durable task ledger: money is data.

A task attempt is written *before* its submission (with the idempotency key it will use) and its
provider task id *right after*, each in its own committed transaction, so a crash at any point leaves
enough on disk to resume the paid-for task instead of buying it again.

Where it lives (DESIGN §11): a SQLite file per dataset on one machine, or a PostgreSQL database shared
by every machine generating the dataset (`money.database` holds both backends; `money.migrations` the
versioned schema). The semantics are the same on both; only the storage differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from wan_pipeline.errors import AMBIGUOUS, names
from wan_pipeline.money import changes, totals
from wan_pipeline.money.changes import ChangeMark
from wan_pipeline.money.database import Database, PostgresDatabase, SqliteDatabase, Statements, is_postgres_url
from wan_pipeline.money.migrations import migrate
from wan_pipeline.money.totals import Totals

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


@dataclass(frozen=True)
class AttemptBrief:
    """Where an attempt stands and what it cost, without its request (a tenth of an `Attempt`'s memory): for
    readers that go over a whole dataset."""

    identity: str
    attempt: int
    state: str
    task_id: str | None
    error_code: str | None
    error_class: str | None
    error_message: str | None
    credits_reserved: float | None
    credits_final: float | None
    cost_usd: float | None


def surely_unbilled(a: Attempt | AttemptBrief) -> bool:
    """Failed before the provider could have created a task (`money.totals.unbilled_sql` agrees)."""
    return (
        a.state == FAILED and a.task_id is None and a.error_class is not None and a.error_class not in AMBIGUOUS_ERRORS
    )


def held_credits(a: Attempt) -> float:
    """What one attempt contributes to `Ledger.committed_credits` (`money.totals.held_credits_sql` agrees)."""
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
_BRIEF = ", ".join(f.name for f in fields(AttemptBrief))
_OUTPUT_COLS = [f.name for f in fields(StoredOutput)]
_ORPHAN_COLS = [f.name for f in fields(Orphan)]
_A = ", ".join(_ATTEMPT_COLS)
_O = ", ".join(_OUTPUT_COLS)


class Ledger:
    """Thread-safe; every write is its own committed transaction (SQLite WAL + synchronous=FULL, or PostgreSQL).

    `Ledger(path)` opens (or creates) a SQLite ledger; `Ledger(database)` any backend; `Ledger.open(url)`
    a PostgreSQL one from its URL.
    """

    def __init__(self, where: Path | Database) -> None:
        self.db: Database = SqliteDatabase(where) if isinstance(where, Path) else where
        self.path: Path | None = where if isinstance(where, Path) else None
        migrate(self.db)

    @classmethod
    def open(cls, url: str) -> Ledger:
        """`postgresql://user[:password]@host:port/db`, or a path to a SQLite file."""
        return cls(PostgresDatabase(url) if is_postgres_url(url) else Path(url))

    def describe(self) -> str:
        """Where this ledger lives (a path, or a database URL without its password)."""
        return self.db.describe()

    def close(self) -> None:
        self.db.close()

    def batch(self) -> AbstractContextManager[Callable[[], AbstractContextManager[None]]]:
        """One transaction for many operations (group commit): yields a factory of savepoints, one per
        operation, so an operation that raises is undone alone. Used by the engine's journal."""
        return self.db.batch()

    def write(self, fn: Callable[[Any], T]) -> T:
        """`fn` inside one write transaction (or the current batch), given an object whose
        `execute(sql, args)` answers `fetchone()`/`fetchall()` (`?` placeholders, on either backend): for
        small tables of their own, such as `money.slots`."""
        with self.db.transaction("wan_pipeline:write"):
            return fn(Statements(self.db))

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- attempts ------------------------------------------------------------------------------
    def attempts(self, identity: str) -> list[Attempt]:
        rows = self.db.query(f"SELECT {_A} FROM attempts WHERE identity=? ORDER BY attempt", (identity,))
        return [Attempt(*row) for row in rows]

    def latest(self, identity: str) -> Attempt | None:
        found = self.attempts(identity)
        return found[-1] if found else None

    def all_attempts(self, dataset: str | None = None, changed_since: int | None = None) -> list[Attempt]:
        """Every attempt (of one dataset; with `changed_since`, only those written after that point of the
        dataset's change counter, found through an index: `money.changes`)."""
        where, args = "", list[Any]()
        if dataset is not None:
            where, args = "WHERE dataset=?", [dataset]
        if dataset is not None and changed_since is not None:
            where, args = "WHERE dataset=? AND change_seq > ?", [dataset, changed_since]
        rows = self.db.query(f"SELECT {_A} FROM attempts {where} ORDER BY prompt_id, variant, attempt", args)
        return [Attempt(*row) for row in rows]

    def may_have_unconfirmed_creates(self, dataset: str) -> bool:
        """Whether any create of the dataset was handed to the wire with no task id known (a superset of
        `execution.reconcile.unconfirmed`): one indexed look-up, so a run reads the whole dataset's attempts to
        settle lost creates only when there may be one."""
        rows = self.db.query(
            "SELECT 1 FROM attempts WHERE dataset=? AND task_id IS NULL AND sent_at IS NOT NULL "
            "AND submit_calls > 0 LIMIT 1",
            (dataset,),
        )
        return bool(rows)

    def recent_latencies(self, dataset: str, model: str, mode: str, limit: int = 64) -> list[float]:
        """Seconds from submission to the terminal answer (our clock) of the dataset's latest finished tasks of
        `model` in `mode`: what the next run's first polls start from instead of a cold guess."""
        rows = self.db.query(
            "SELECT submitted_at, completed_at FROM attempts WHERE dataset=? AND model=? AND mode=? "
            "AND submitted_at IS NOT NULL AND completed_at IS NOT NULL ORDER BY completed_at DESC LIMIT ?",
            (dataset, model, mode, limit),
        )
        spans = (datetime.fromisoformat(str(done)) - datetime.fromisoformat(str(sent)) for sent, done in rows)
        return [span.total_seconds() for span in spans if span.total_seconds() >= 0]

    def briefs(self, dataset: str) -> list[AttemptBrief]:
        """Every attempt of the dataset, briefly (ordered by identity and attempt)."""
        rows = self.db.query(f"SELECT {_BRIEF} FROM attempts WHERE dataset=? ORDER BY identity, attempt", (dataset,))
        return [AttemptBrief(*row) for row in rows]

    def attempt_pages(
        self, dataset: str, changed_since: int | None = None, size: int = 500
    ) -> Iterator[tuple[list[Attempt], list[StoredOutput]]]:
        """`all_attempts(dataset, changed_since)` with their outputs, `size` attempts at a time, so a reader of
        a large dataset holds one page of records at once. Every attempt comes; with `changed_since`, one
        written again while the pages are read may come twice (its later version later)."""
        cols = ", ".join("a." + c for c in _ATTEMPT_COLS)
        if changed_since is None:
            # in primary-key order; `dataset || ''` keeps the planner off the dataset indexes, through which it
            # would sort the whole dataset for every page
            where, order = "a.dataset || '' = ? AND a.identity >= ? AND (a.identity > ? OR a.attempt > ?)", \
                "a.identity, a.attempt"  # fmt: skip
            after: list[Any] = ["", "", 0]
        else:
            where, order, after = "a.dataset = ? AND a.change_seq > ?", "a.change_seq", [changed_since]
        while True:
            rows = self.db.query(f"SELECT {cols}, a.change_seq FROM attempts a WHERE {where} ORDER BY {order} "
                                 "LIMIT ?", [dataset, *after, size])  # fmt: skip
            if not rows:
                return
            page = [Attempt(*row[:-1]) for row in rows]
            identities = sorted({a.identity for a in page})
            outs = self.db.query(f"SELECT {_O} FROM outputs WHERE identity IN ({_marks(identities)})", identities)
            keys = {(a.identity, a.attempt) for a in page}
            yield page, [o for o in (StoredOutput(*row) for row in outs) if (o.identity, o.attempt) in keys]
            last = page[-1]
            after = [last.identity, last.identity, last.attempt] if changed_since is None else [rows[-1][-1]]

    def begin_attempt(self, a: Attempt, check: Callable[[], None] | None = None) -> None:
        """Written before the submission leaves this process (insert or re-arm the same attempt).

        `check` (the budget) runs inside the same write transaction and may raise to abort it. The
        transaction holds the dataset's admission lock (SQLite: the file's write lock; PostgreSQL: an
        advisory lock named for the dataset), so check-then-insert is atomic across every process and
        machine sharing this ledger: concurrent runs cannot each see the same headroom and together
        spend past the budget.
        """
        a.updated_at = utcnow()
        with self.db.transaction(admission_lock(a.dataset)):
            if check is not None:
                check()
            self.db.execute(
                f"INSERT INTO attempts ({_A}) VALUES ({_marks(_ATTEMPT_COLS)}) "
                "ON CONFLICT(identity, attempt) DO UPDATE SET state=excluded.state, "
                "request_json=excluded.request_json, "
                "idempotency_key=excluded.idempotency_key, call_json=excluded.call_json, task_id=excluded.task_id, "
                "error_code=NULL, error_class=NULL, error_message=NULL, "
                "run_id=excluded.run_id, updated_at=excluded.updated_at",
                [getattr(a, c) for c in _ATTEMPT_COLS],
            )

    def update(self, identity: str, attempt: int, **values: Any) -> None:
        unknown = set(values) - set(_ATTEMPT_COLS)
        if unknown:  # column names are spliced into SQL: only the ledger's own
            raise ValueError(f"not ledger columns: {sorted(unknown)}")
        values["updated_at"] = utcnow()
        cols = ", ".join(f"{k}=?" for k in values)
        self.db.execute(
            f"UPDATE attempts SET {cols} WHERE identity=? AND attempt=?", [*values.values(), identity, attempt]
        )

    def count_submit_call(self, identity: str, attempt: int) -> None:
        self.db.execute(
            "UPDATE attempts SET submit_calls = submit_calls + 1, sent_at = ? WHERE identity=? AND attempt=?",
            (utcnow(), identity, attempt),
        )

    # -- outputs -------------------------------------------------------------------------------
    def record_output(self, o: StoredOutput) -> None:
        keys = ("identity", "attempt", "output_index")
        self.db.execute(
            f"INSERT INTO outputs ({_O}) VALUES ({_marks(_OUTPUT_COLS)}) "
            f"ON CONFLICT({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{c}=excluded.{c}" for c in _OUTPUT_COLS if c not in keys),
            [getattr(o, c) for c in _OUTPUT_COLS],
        )

    def outputs(self, identity: str, attempt: int) -> list[StoredOutput]:
        rows = self.db.query(
            f"SELECT {_O} FROM outputs WHERE identity=? AND attempt=? ORDER BY output_index", (identity, attempt)
        )
        return [StoredOutput(*row) for row in rows]

    def all_outputs(self, dataset: str | None = None, changed_since: int | None = None) -> list[StoredOutput]:
        """Every stored output (of one dataset: a shared ledger holds many; with `changed_since`, those of the
        attempts `all_attempts` gives for it)."""
        if dataset is None:
            return [StoredOutput(*row) for row in self.db.query(f"SELECT {_O} FROM outputs")]
        since, args = ("", (dataset,)) if changed_since is None else (" AND a.change_seq > ?", (dataset, changed_since))
        rows = self.db.query(
            f"SELECT {', '.join('o.' + c for c in _OUTPUT_COLS)} FROM outputs o JOIN attempts a "
            f"ON a.identity = o.identity AND a.attempt = o.attempt WHERE a.dataset=?{since}",
            args,
        )
        return [StoredOutput(*row) for row in rows]

    def change_mark(self, dataset: str) -> ChangeMark:
        """Where the dataset's records stand now (`money.changes`): what `changed_since` takes next time."""
        return changes.mark(self.db, dataset)

    # -- orphans -------------------------------------------------------------------------------
    def record_orphan(self, o: Orphan) -> None:
        self.db.execute(
            f"INSERT INTO orphans ({', '.join(_ORPHAN_COLS)}) VALUES ({_marks(_ORPHAN_COLS)}) ON CONFLICT(task_id) "
            "DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in _ORPHAN_COLS if c != "task_id"),
            [getattr(o, c) for c in _ORPHAN_COLS],
        )

    def claim_orphan(self, task_id: str) -> None:
        """An output adopted this task: it is no longer an orphan."""
        self.db.execute("DELETE FROM orphans WHERE task_id=?", (task_id,))

    def orphans(self, dataset: str) -> list[Orphan]:
        rows = self.db.query(
            f"SELECT {', '.join(_ORPHAN_COLS)} FROM orphans WHERE dataset=? ORDER BY created, task_id", (dataset,)
        )
        return [Orphan(*row) for row in rows]

    # -- money ---------------------------------------------------------------------------------
    def totals(self, dataset: str) -> Totals:
        """The dataset's committed money as the database keeps it (`money.totals`): one row, any N."""
        return totals.read(self.db, dataset)

    def recount_totals(self, dataset: str) -> Totals:
        """The same, summed from every attempt of the dataset (O(N)): for audits and tests."""
        return totals.recount(self.db, dataset)

    def committed_credits(self, dataset: str) -> float:
        """Credits spent or held: settled amounts where known, else reserved, else our estimate."""
        return self.totals(dataset).credits

    def committed_usd(self, dataset: str) -> float:
        return self.totals(dataset).usd

    def attempt_count(self, dataset: str, sent: bool = False) -> int:
        """Attempts of the dataset (`sent`: only those whose create was handed to the wire at least once)."""
        where = "dataset=? AND submit_calls > 0" if sent else "dataset=?"
        return int(self.db.query(f"SELECT COUNT(*) FROM attempts WHERE {where}", (dataset,))[0][0])

    def latest_state_counts(self, dataset: str, unsent: str | None = None) -> dict[str, int]:
        """How many outputs (identities) have their latest attempt in each state: one aggregate query, for
        progress counters that cost the same at 10 outputs as at 100,000. With `unsent`, attempts recorded but
        whose create was never handed to the wire (waiting for a slot) are counted under that name instead."""
        state = "a.state" if unsent is None else "CASE WHEN a.state=? AND a.submit_calls=0 THEN ? ELSE a.state END"
        args: tuple[str, ...] = (dataset,) if unsent is None else (SUBMITTING, unsent, dataset)
        rows = self.db.query(
            f"""SELECT {state}, COUNT(*) FROM attempts a
               JOIN (SELECT identity, MAX(attempt) AS last FROM attempts WHERE dataset=? GROUP BY identity) l
                 ON a.identity = l.identity AND a.attempt = l.last
               GROUP BY 1""",
            args,
        )
        return {str(state): int(n) for state, n in rows}

    def highest_charge(self, dataset: str) -> float | None:
        """The highest per-task charge the host has reported for this dataset (reserved or final), if any."""
        return self.totals(dataset).highest_charge

    def charges_unknown_in_flight(self, dataset: str, exclude: tuple[str, int]) -> int:
        """Creates in flight (or answered) whose charge is neither reported nor estimated yet. A `submitting`
        record untouched for IN_FLIGHT_STALE_S was left by a process that died: not in flight any more.
        Reads only the dataset's `submitting`/`submitted` rows (index `attempts_state`): those in flight, not N."""
        cutoff = (datetime.now(UTC) - timedelta(seconds=IN_FLIGHT_STALE_S)).isoformat(timespec="milliseconds")
        rows = self.db.query(
            "SELECT COUNT(*) FROM attempts WHERE dataset=? AND state IN (?, ?) AND credits_reserved IS NULL "
            "AND credits_final IS NULL AND credits_estimate IS NULL AND NOT (identity=? AND attempt=?) "
            "AND NOT (state=? AND updated_at < ?)",
            (dataset, SUBMITTING, SUBMITTED, *exclude, SUBMITTING, cutoff.replace("+00:00", "Z")),
        )
        return int(rows[0][0])


def admission_lock(dataset: str) -> str:
    """The lock every budget admission of one dataset takes (its committed spend is per dataset)."""
    return f"{totals.ADMISSION_LOCK_PREFIX}{dataset}"


def _marks(cols: list[Any]) -> str:
    return ", ".join("?" * len(cols))
