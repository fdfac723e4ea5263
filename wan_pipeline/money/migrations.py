"""Versioned migrations of the ledger schema, the same on SQLite and PostgreSQL.

Ledgers outlive code versions: each migration is applied once, in order, inside one write transaction
(PostgreSQL's DDL is transactional; SQLite's write lock keeps a second process out meanwhile), and the
version reached is recorded in `ledger_schema`. Ledgers written before versioning existed have the
tables but no version row: every step is written to be a no-op on what already exists, so they are
brought up to date like any other.
"""

from __future__ import annotations

from collections.abc import Callable

from wan_pipeline.errors import ConfigError
from wan_pipeline.money import changes, totals
from wan_pipeline.money.database import Database

ATTEMPTS = """
CREATE TABLE IF NOT EXISTS attempts (
    identity {text} NOT NULL,
    attempt {int} NOT NULL,
    dataset {text} NOT NULL,
    prompt_id {text} NOT NULL,
    variant {int} NOT NULL,
    fingerprint {text} NOT NULL,
    provider {text} NOT NULL,
    model {text} NOT NULL,
    mode {text} NOT NULL,
    prompt {text} NOT NULL,
    params_json {text} NOT NULL,
    seed {int} NOT NULL,
    seed_source {text} NOT NULL,
    extra_json {text} NOT NULL,
    idempotency_key {text} NOT NULL,
    request_json {text} NOT NULL,
    state {text} NOT NULL,
    task_id {text},
    error_code {text},
    error_class {text},
    error_message {text},
    credits_estimate {real},
    credits_reserved {real},
    credits_final {real},
    cost_usd {real},
    cost_source {text},
    provider_seed {int},
    output_urls {text},
    submit_calls {int} NOT NULL DEFAULT 0,
    submitted_at {text},
    completed_at {text},
    run_id {text},
    updated_at {text} NOT NULL,
    PRIMARY KEY (identity, attempt)
)"""
ATTEMPTS_INDEX = "CREATE INDEX IF NOT EXISTS attempts_prompt ON attempts (dataset, prompt_id)"
OUTPUTS = """
CREATE TABLE IF NOT EXISTS outputs (
    identity {text} NOT NULL,
    attempt {int} NOT NULL,
    output_index {int} NOT NULL,
    source_url {text},
    media_uri {text},
    media_sha256 {text},
    mime_type {text},
    bytes {int},
    width {int},
    height {int},
    duration_s {real},
    fps {real},
    warnings {text},
    stored_at {text} NOT NULL,
    PRIMARY KEY (identity, attempt, output_index)
)"""
#: concurrency slots of one provider account; `subject` (an output's identity) is held by one lease at a time
LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    scope {text} NOT NULL,
    slot {int} NOT NULL,
    holder {text} NOT NULL,
    subject {text} NOT NULL,
    expires_at {real} NOT NULL,
    PRIMARY KEY (scope, slot)
)"""
#: submission pacing of one provider account: the next free submit time and a shared 429 pause
RATE_GATES = """
CREATE TABLE IF NOT EXISTS rate_gates (
    scope {text} PRIMARY KEY,
    next_submit_at {real} NOT NULL,
    pause_until {real} NOT NULL
)"""


#: tasks the host holds that no output claims (found through a host's task list)
ORPHANS = """
CREATE TABLE IF NOT EXISTS orphans (
    task_id {text} PRIMARY KEY,
    dataset {text} NOT NULL,
    provider {text} NOT NULL,
    model {text} NOT NULL,
    status {text},
    created {text},
    cost_usd {real},
    cost_source {text},
    found_at {text} NOT NULL
)"""


def _v1_tables(db: Database) -> None:
    for ddl in (ATTEMPTS, ATTEMPTS_INDEX, OUTPUTS):
        db.execute(db.ddl(ddl))


def _v2_call_json(db: Database) -> None:
    """The whole recorded create call (method, path, headers without secrets, body)."""
    if "call_json" not in db.columns("attempts"):
        db.execute("ALTER TABLE attempts ADD COLUMN call_json TEXT")


def _v3_shared_limits(db: Database) -> None:
    for ddl in (LEASES, RATE_GATES):
        db.execute(db.ddl(ddl))


def _v4_orphans_and_sent_at(db: Database) -> None:
    """When each create was last handed to the wire, and the host's tasks no output claims."""
    if "sent_at" not in db.columns("attempts"):
        db.execute("ALTER TABLE attempts ADD COLUMN sent_at TEXT")
    db.execute(db.ddl(ORPHANS))


def _v5_provenance(db: Database) -> None:
    """The inputs and code that made each attempt (spec/table/reference SHA-256s, master seed, code version)."""
    have = db.columns("attempts")
    for column, kind in (("spec_sha256", "text"), ("table_sha256", "text"), ("reference_sha256s", "text"),
                         ("master_seed", "int"), ("code_version", "text")):  # fmt: skip
        if column not in have:
            db.execute(f"ALTER TABLE attempts ADD COLUMN {column} {db.types[kind]}")


def _v6_totals(db: Database) -> None:
    """Per-dataset running totals of committed money kept by triggers (`money.totals`), counted once here from
    the attempts already recorded; an index that finds a dataset's attempts in flight without reading the rest."""
    db.execute("CREATE INDEX IF NOT EXISTS attempts_state ON attempts (dataset, state)")
    totals.install(db)


def _v7_changes(db: Database) -> None:
    """A per-dataset change counter and each attempt's number in it (`money.changes`), for incremental readers.
    Attempts already recorded keep number 0: a reader without a mark from this ledger starts from scratch."""
    if "change_seq" not in db.columns("attempts"):
        db.execute(f"ALTER TABLE attempts ADD COLUMN change_seq {db.types['int']} NOT NULL DEFAULT 0")
    have = db.columns(totals.TABLE)
    for column in ("changes", "deletions"):
        if column not in have:
            db.execute(f"ALTER TABLE {totals.TABLE} ADD COLUMN {column} {db.types['int']} NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX IF NOT EXISTS attempts_changes ON attempts (dataset, change_seq)")
    changes.install(db)


MIGRATIONS: list[Callable[[Database], None]] = [
    _v1_tables,
    _v2_call_json,
    _v3_shared_limits,
    _v4_orphans_and_sent_at,
    _v5_provenance,
    _v6_totals,
    _v7_changes,
]
LATEST = len(MIGRATIONS)


def schema_version(db: Database) -> int:
    db.execute(db.ddl("CREATE TABLE IF NOT EXISTS ledger_schema (version {int} NOT NULL)"))
    rows = db.query("SELECT MAX(version) FROM ledger_schema")
    return int(rows[0][0] or 0)


def migrate(db: Database) -> int:
    """Brings the ledger to the latest schema; returns the version it had before."""
    if db.dialect == "sqlite" and "ledger_schema" in _sqlite_tables(db):
        # the common case, without taking the write lock: already current
        current = int(db.query("SELECT MAX(version) FROM ledger_schema")[0][0] or 0)
        if current == LATEST and _triggers_current(db):
            return current
    with db.transaction("wan_pipeline:migrate"):
        before = schema_version(db)
        if before > LATEST:
            raise ConfigError(
                f"the ledger at {db.describe()} has schema version {before}, newer than this wan-pipeline "
                f"knows ({LATEST}): upgrade wan-pipeline before using it"
            )
        for version in range(before + 1, LATEST + 1):
            MIGRATIONS[version - 1](db)
            db.execute("INSERT INTO ledger_schema (version) VALUES (?)", (version,))
        if totals.installed(db) != totals.definition(db):
            # written by a version whose money expressions differ (e.g. another list of ambiguous errors):
            # the triggers are replaced and the totals counted again, once
            totals.install(db)
        if not changes.is_current(db):
            changes.install(db)
    return before


def _triggers_current(db: Database) -> bool:
    return totals.installed(db) == totals.definition(db) and changes.is_current(db)


def _sqlite_tables(db: Database) -> set[str]:
    return {str(r[0]) for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
