"""What changed in a dataset's ledger records since a given point: a per-dataset change counter kept by triggers.

Incremental readers (the lineage Parquet) remember the counter they last read and ask for the attempts numbered
above it. Every write to a dataset's attempts, outputs or orphans moves the dataset's counter
(`dataset_totals.changes`) in the writer's own transaction:

- an attempt inserted or updated takes the counter's next value as its `change_seq` (index `attempts_changes`);
- an output stored, replaced or removed renumbers its attempt, so that attempt's rows count as changed;
- an orphan found or claimed, or an attempt deleted, moves the counter only; deleted attempts also count in
  `deletions`, after which a reader starts over (a deleted row has nowhere to carry its number).

The counter is commit-ordered, which is what lets a reader trust it: on SQLite every writer holds the file's
write lock; on PostgreSQL the counter moves under the dataset's admission lock and the counter row's lock,
both held until commit. So once a reader sees the counter at C, every record numbered C or less is committed
and visible: reading the counter first, then the attempts above the previous mark, misses nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass

from wan_pipeline.money.database import PG_SCHEMA, Database
from wan_pipeline.money.totals import ADMISSION_LOCK_PREFIX, TABLE, installed, record_installed, replace_triggers

_NAME = "changes"  # the row of `ledger_derived` recording the installed triggers
META_DDL = "CREATE TABLE IF NOT EXISTS ledger_meta (name {text} PRIMARY KEY, value {text} NOT NULL)"


@dataclass(frozen=True)
class ChangeMark:
    """Where a dataset's records stood: which ledger (its random id), how many changes and deletions."""

    ledger: str
    dataset: str
    changes: int
    deletions: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ChangeMark | None:
        try:
            raw = json.loads(text)
            return cls(str(raw["ledger"]), str(raw["dataset"]), int(raw["changes"]), int(raw["deletions"]))
        except (ValueError, TypeError, KeyError):
            return None

    def continues(self, earlier: ChangeMark) -> bool:
        """Whether the records at `earlier` are a past state of these (same ledger and dataset, nothing
        deleted since): then only the attempts numbered above `earlier.changes` differ."""
        return (
            (self.ledger, self.dataset, self.deletions) == (earlier.ledger, earlier.dataset, earlier.deletions)
            and self.changes >= earlier.changes
        )


def mark(db: Database, dataset: str) -> ChangeMark:
    rows = db.query(f"SELECT changes, deletions FROM {TABLE} WHERE dataset=?", (dataset,))
    changes, deletions = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    return ChangeMark(ledger_id(db), dataset, changes, deletions)


def ledger_id(db: Database) -> str:
    """A random id given to the ledger when change numbering started: marks of another ledger never match."""
    return str(db.query("SELECT value FROM ledger_meta WHERE name='ledger_id'")[0][0])


# -- the triggers -------------------------------------------------------------------------------------------


def _lock(r: str) -> str:
    return f"PERFORM pg_advisory_xact_lock(hashtext('{ADMISSION_LOCK_PREFIX}' || {r}.dataset));"


def _sqlite_ddl() -> list[str]:
    def bump(r: str, deletions: str = "") -> str:
        return (
            f"INSERT INTO {TABLE} (dataset, credits_nano, usd_nano) VALUES ({r}.dataset, 0, 0) "
            f"ON CONFLICT (dataset) DO NOTHING; UPDATE {TABLE} SET changes = changes + 1{deletions} "
            f"WHERE dataset = {r}.dataset;"
        )

    def number(r: str) -> str:
        return (
            f"UPDATE attempts SET change_seq = (SELECT changes FROM {TABLE} WHERE dataset = {r}.dataset) "
            f"WHERE identity = {r}.identity AND attempt = {r}.attempt;"
        )

    def touch(r: str) -> str:  # renumbers the attempt through attempts_changes_update
        return f"UPDATE attempts SET change_seq = change_seq WHERE identity = {r}.identity AND attempt = {r}.attempt;"

    return [
        f"CREATE TRIGGER attempts_changes_insert AFTER INSERT ON attempts BEGIN {bump('NEW')} {number('NEW')} END",
        # the renumbering's own update changes change_seq, so it does not come back here
        "CREATE TRIGGER attempts_changes_update AFTER UPDATE ON attempts WHEN NEW.change_seq IS OLD.change_seq "
        f"BEGIN {bump('NEW')} {number('NEW')} END",
        "CREATE TRIGGER attempts_changes_delete AFTER DELETE ON attempts "
        f"BEGIN {bump('OLD', ', deletions = deletions + 1')} END",
        f"CREATE TRIGGER outputs_changes_insert AFTER INSERT ON outputs BEGIN {touch('NEW')} END",
        f"CREATE TRIGGER outputs_changes_update AFTER UPDATE ON outputs BEGIN {touch('OLD')} {touch('NEW')} END",
        f"CREATE TRIGGER outputs_changes_delete AFTER DELETE ON outputs BEGIN {touch('OLD')} END",
        f"CREATE TRIGGER orphans_changes_insert AFTER INSERT ON orphans BEGIN {bump('NEW')} END",
        f"CREATE TRIGGER orphans_changes_update AFTER UPDATE ON orphans BEGIN {bump('OLD')} {bump('NEW')} END",
        f"CREATE TRIGGER orphans_changes_delete AFTER DELETE ON orphans BEGIN {bump('OLD')} END",
    ]


def _postgres_ddl() -> list[str]:
    t, s = f"{PG_SCHEMA}.{TABLE}", PG_SCHEMA

    def bump(r: str, deletions: str = "") -> str:
        return (
            f"{_lock(r)} INSERT INTO {t} (dataset, credits_nano, usd_nano) VALUES ({r}.dataset, 0, 0) "
            f"ON CONFLICT (dataset) DO NOTHING; UPDATE {t} SET changes = changes + 1{deletions} "
            f"WHERE dataset = {r}.dataset;"
        )

    def touch(r: str) -> str:
        return (
            f"UPDATE {s}.attempts SET change_seq = change_seq "
            f"WHERE identity = {r}.identity AND attempt = {r}.attempt;"
        )

    def function(name: str, body: str, result: str = "NULL") -> str:
        return (
            f"CREATE OR REPLACE FUNCTION {s}.{name}() RETURNS trigger LANGUAGE plpgsql AS $changes$ "
            f"BEGIN {body} RETURN {result}; END $changes$"
        )

    number = (
        f"{_lock('NEW')} INSERT INTO {t} (dataset, credits_nano, usd_nano) VALUES (NEW.dataset, 0, 0) "
        f"ON CONFLICT (dataset) DO NOTHING; "
        f"UPDATE {t} SET changes = changes + 1 WHERE dataset = NEW.dataset RETURNING changes INTO NEW.change_seq;"
    )
    outputs = f"IF TG_OP <> 'INSERT' THEN {touch('OLD')} END IF; IF TG_OP <> 'DELETE' THEN {touch('NEW')} END IF;"
    orphans = f"IF TG_OP <> 'INSERT' THEN {bump('OLD')} END IF; IF TG_OP <> 'DELETE' THEN {bump('NEW')} END IF;"
    return [
        function("attempts_numbered", number, result="NEW"),  # BEFORE: the row is written with its number
        function("attempts_deleted", bump("OLD", ", deletions = deletions + 1")),
        function("outputs_changed", outputs),
        function("orphans_changed", orphans),
        f"CREATE TRIGGER attempts_changes BEFORE INSERT OR UPDATE ON attempts FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.attempts_numbered()",
        f"CREATE TRIGGER attempts_changes_delete AFTER DELETE ON attempts FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.attempts_deleted()",
        f"CREATE TRIGGER outputs_changes AFTER INSERT OR UPDATE OR DELETE ON outputs FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.outputs_changed()",
        f"CREATE TRIGGER orphans_changes AFTER INSERT OR UPDATE OR DELETE ON orphans FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.orphans_changed()",
    ]


def trigger_ddl(db: Database) -> list[str]:
    return _sqlite_ddl() if db.dialect == "sqlite" else _postgres_ddl()


def _triggers(db: Database) -> tuple[tuple[str, str], ...]:
    if db.dialect == "sqlite":
        names = [f"{table}_changes_{op}" for table in ("attempts", "outputs", "orphans")
                 for op in ("insert", "update", "delete")]  # fmt: skip
        return tuple((name, name.split("_")[0]) for name in names)
    return (("attempts_changes", "attempts"), ("attempts_changes_delete", "attempts"),
            ("outputs_changes", "outputs"), ("orphans_changes", "orphans"))  # fmt: skip


def definition(db: Database) -> str:
    return hashlib.sha256("\n".join(trigger_ddl(db)).encode()).hexdigest()


def is_current(db: Database) -> bool:
    return installed(db, _NAME) == definition(db)


def install(db: Database) -> None:
    """(Re)creates the triggers, inside the caller's write transaction. Numbers already given stay valid."""
    db.execute(db.ddl(META_DDL))
    if not db.query("SELECT 1 FROM ledger_meta WHERE name='ledger_id'"):
        db.execute("INSERT INTO ledger_meta (name, value) VALUES ('ledger_id', ?)", (uuid.uuid4().hex,))
    replace_triggers(db, _triggers(db), trigger_ddl(db))
    record_installed(db, _NAME, definition(db))
