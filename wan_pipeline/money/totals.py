"""Per-dataset running totals of committed money, kept by the database itself in the attempt's own transaction.

Budget admission needs, per dataset, the credits and dollars committed (what `ledger.held_credits` and
`ledger.held_usd` add up to over every attempt) and the highest charge a host has reported. Summing the
attempts on every admission reads O(N) rows under the write lock; instead, triggers on `attempts` keep one
`dataset_totals` row per dataset up to date in the same statement as the attempt write that changes an amount
(so in the same transaction: a crash cannot leave the two apart), whoever writes: every process, every code path.

Amounts are integer nano-units (1e-9 credit or dollar): adding and later removing an attempt's amount leaves
no floating-point residue however many writes pass, so a total is exactly the sum of its rows' (rounded)
amounts in any write order — `recount` recomputes it from the attempts, and the tests hold the two equal.

The trigger SQL is generated from the same expressions as the recount, and a digest of it is recorded in the
ledger: when a code version changes the expressions (say a new ambiguous error class), opening the ledger
reinstalls the triggers and recounts, once. The highest charge only grows in practice (a settlement below the
reservation leaves the reservation as the row's charge); a write that lowers the row holding it recounts
that one dataset's maximum.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from wan_pipeline.errors import AMBIGUOUS, names
from wan_pipeline.money.database import PG_SCHEMA, Database

#: = ledger.FAILED (the ledger imports this module)
_FAILED = "failed"
#: every budget admission of a dataset takes the lock named this + the dataset (`ledger.admission_lock`)
ADMISSION_LOCK_PREFIX = "wan_pipeline:budget:"
NANO = 1_000_000_000
TABLE = "dataset_totals"
_NAME = "dataset_totals"  # the row of `ledger_derived` recording the installed triggers

TOTALS_DDL = """
CREATE TABLE IF NOT EXISTS dataset_totals (
    dataset {text} PRIMARY KEY,
    credits_nano {int} NOT NULL,
    usd_nano {int} NOT NULL,
    highest_charge {real}
)"""
DERIVED_DDL = "CREATE TABLE IF NOT EXISTS ledger_derived (name {text} PRIMARY KEY, definition_sha256 {text} NOT NULL)"


@dataclass(frozen=True)
class Totals:
    """One dataset's committed money: credits and dollars in nano-units, and the highest charge reported."""

    credits_nano: int = 0
    usd_nano: int = 0
    highest_charge: float | None = None

    @property
    def credits(self) -> float:
        return self.credits_nano / NANO

    @property
    def usd(self) -> float:
        return self.usd_nano / NANO


# -- the per-row expressions (`r` names the row: a table alias, NEW or OLD) -----------------------------------


def unbilled_sql(r: str = "") -> str:
    """Failed before the host could have created a task (`ledger.surely_unbilled` in SQL)."""
    p = f"{r}." if r else ""
    ambiguous = ", ".join(f"'{c}'" for c in names(AMBIGUOUS))
    return (
        f"({p}state = '{_FAILED}' AND {p}task_id IS NULL AND {p}error_class IS NOT NULL "
        f"AND {p}error_class NOT IN ({ambiguous}))"
    )


def held_credits_sql(r: str = "") -> str:
    """`ledger.held_credits`: settled where known, nothing when surely unbilled, else reserved, else estimated."""
    p = f"{r}." if r else ""
    return (
        f"(CASE WHEN {p}credits_final IS NOT NULL THEN {p}credits_final WHEN {unbilled_sql(r)} THEN 0 "
        f"WHEN {p}credits_reserved IS NOT NULL THEN {p}credits_reserved ELSE COALESCE({p}credits_estimate, 0) END)"
    )


def held_usd_sql(r: str = "") -> str:
    p = f"{r}." if r else ""
    return f"(CASE WHEN {unbilled_sql(r)} THEN 0 ELSE COALESCE({p}cost_usd, 0) END)"


def charge_sql(r: str = "") -> str:
    """The charge the host reported for the row (the larger of reserved and final), NULL when none."""
    p = f"{r}." if r else ""
    # CASE, not the two-argument MAX (SQLite) or GREATEST (PostgreSQL): the same SQL on both backends
    return (
        f"(CASE WHEN {p}credits_reserved > 0 OR {p}credits_final > 0 THEN (CASE WHEN COALESCE({p}credits_reserved, 0)"
        f" > COALESCE({p}credits_final, 0) THEN {p}credits_reserved ELSE COALESCE({p}credits_final, 0) END) END)"
    )


def _nano(db: Database, expr: str) -> str:
    return f"CAST(ROUND({expr} * {NANO}) AS {db.types['int']})"


# -- the triggers -------------------------------------------------------------------------------------------


def _table(db: Database) -> str:
    return f"{PG_SCHEMA}.{TABLE}" if db.dialect == "postgresql" else TABLE


def _add(db: Database, r: str) -> list[str]:
    t, charge = _table(db), charge_sql(r)
    highest = f"CASE WHEN highest_charge IS NULL OR ({charge} IS NOT NULL AND {charge} > highest_charge) " \
        f"THEN {charge} ELSE highest_charge END"  # fmt: skip
    return [
        f"INSERT INTO {t} (dataset, credits_nano, usd_nano) VALUES ({r}.dataset, 0, 0) "
        "ON CONFLICT (dataset) DO NOTHING",
        f"UPDATE {t} SET credits_nano = credits_nano + {_nano(db, held_credits_sql(r))}, "
        f"usd_nano = usd_nano + {_nano(db, held_usd_sql(r))}, highest_charge = {highest} WHERE dataset = {r}.dataset",
    ]


def _remove(db: Database, old: str, new: str | None) -> list[str]:
    """Takes the old row's amounts out; recounts the maximum when the row holding it lost its charge."""
    t, was = _table(db), charge_sql(old)
    source = f"{PG_SCHEMA}.attempts" if db.dialect == "postgresql" else "attempts"
    lowered = "" if new is None else f" AND ({new}.dataset <> {old}.dataset OR COALESCE({charge_sql(new)}, 0) < {was})"
    return [
        f"UPDATE {t} SET credits_nano = credits_nano - {_nano(db, held_credits_sql(old))}, "
        f"usd_nano = usd_nano - {_nano(db, held_usd_sql(old))} WHERE dataset = {old}.dataset",
        f"UPDATE {t} SET highest_charge = (SELECT MAX({charge_sql('a')}) FROM {source} a WHERE a.dataset = "
        f"{old}.dataset) WHERE dataset = {old}.dataset AND {was} IS NOT NULL AND highest_charge <= {was}{lowered}",
    ]


def _changed(db: Database) -> str:
    """An update that moves no amount (most: state, task id, timestamps) leaves the totals alone."""
    differs = "IS NOT" if db.dialect == "sqlite" else "IS DISTINCT FROM"
    pairs = [("NEW.dataset", "OLD.dataset")]
    for expr in (held_credits_sql, held_usd_sql):
        pairs.append((_nano(db, expr("NEW")), _nano(db, expr("OLD"))))
    pairs.append((charge_sql("NEW"), charge_sql("OLD")))
    return " OR ".join(f"{a} {differs} {b}" for a, b in pairs)


#: the columns an update must name for the totals to possibly change
_AMOUNT_COLUMNS = "dataset, state, task_id, error_class, credits_estimate, credits_reserved, credits_final, cost_usd"
_TRIGGERS = tuple((name, "attempts") for name in ("attempts_totals_insert", "attempts_totals_update",
                                                    "attempts_totals_delete"))  # fmt: skip


def trigger_ddl(db: Database) -> list[str]:
    """The statements that install the triggers on this backend."""
    if db.dialect == "sqlite":
        return [
            f"CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts BEGIN {_body(_add(db, 'NEW'))} END",
            f"CREATE TRIGGER attempts_totals_update AFTER UPDATE OF {_AMOUNT_COLUMNS} ON attempts WHEN {_changed(db)} "
            f"BEGIN {_body(_remove(db, 'OLD', 'NEW') + _add(db, 'NEW'))} END",
            f"CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts "
            f"BEGIN {_body(_remove(db, 'OLD', None))} END",
        ]
    # PostgreSQL: an amount moves only under the dataset's admission lock, taken before the totals row's lock,
    # in the order begin_attempt takes them: a group commit mixing admissions and updates cannot deadlock.
    lock = f"PERFORM pg_advisory_xact_lock(hashtext('{ADMISSION_LOCK_PREFIX}' || {{r}}.dataset));"
    function = f"""CREATE OR REPLACE FUNCTION {PG_SCHEMA}.attempts_totals() RETURNS trigger LANGUAGE plpgsql AS $totals$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {lock.format(r="NEW")} {_body(_add(db, "NEW"))}
  ELSIF TG_OP = 'UPDATE' THEN
    {lock.format(r="OLD")} {lock.format(r="NEW")} {_body(_remove(db, "OLD", "NEW") + _add(db, "NEW"))}
  ELSE
    {lock.format(r="OLD")} {_body(_remove(db, "OLD", None))}
  END IF;
  RETURN NULL;
END
$totals$"""
    run = f"FOR EACH ROW EXECUTE FUNCTION {PG_SCHEMA}.attempts_totals()"
    return [
        function,
        f"CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts {run}",
        f"CREATE TRIGGER attempts_totals_update AFTER UPDATE OF {_AMOUNT_COLUMNS} ON attempts "
        f"FOR EACH ROW WHEN ({_changed(db)}) EXECUTE FUNCTION {PG_SCHEMA}.attempts_totals()",
        f"CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts {run}",
    ]


def _body(statements: list[str]) -> str:
    return " ".join(f"{s};" for s in statements)


def definition(db: Database) -> str:
    """The digest of what `install` puts in place on this backend."""
    return hashlib.sha256("\n".join(trigger_ddl(db)).encode()).hexdigest()


def installed(db: Database, name: str = _NAME) -> str | None:
    """The digest recorded when triggers named `name` were last installed (None before they existed)."""
    rows = db.query("SELECT definition_sha256 FROM ledger_derived WHERE name=?", (name,))
    return str(rows[0][0]) if rows else None


def record_installed(db: Database, name: str, digest: str) -> None:
    db.execute("DELETE FROM ledger_derived WHERE name=?", (name,))
    db.execute("INSERT INTO ledger_derived (name, definition_sha256) VALUES (?, ?)", (name, digest))


def replace_triggers(db: Database, triggers: tuple[tuple[str, str], ...], ddl: list[str]) -> None:
    """Drops the (trigger, table) pairs, then runs `ddl` (which creates them anew)."""
    for name, table in triggers:
        db.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if db.dialect == "postgresql" else ""))
    for statement in ddl:
        db.execute(statement)


def install(db: Database) -> None:
    """(Re)creates the triggers and recounts every dataset's totals; inside the caller's write transaction.

    On PostgreSQL, replacing a trigger locks the attempts table against writers until the transaction
    commits, so no write can slip between the recount and the triggers that take over from it. The rows'
    other counters (`money.changes`) are kept."""
    db.execute(db.ddl(TOTALS_DDL))
    db.execute(db.ddl(DERIVED_DDL))
    replace_triggers(db, _TRIGGERS, trigger_ddl(db))
    db.execute(f"UPDATE {TABLE} SET credits_nano = 0, usd_nano = 0, highest_charge = NULL")
    db.execute(
        f"INSERT INTO {TABLE} (dataset, credits_nano, usd_nano, highest_charge) SELECT dataset, "
        f"SUM({_nano(db, held_credits_sql())}), SUM({_nano(db, held_usd_sql())}), MAX({charge_sql()}) "
        "FROM attempts WHERE TRUE GROUP BY dataset ON CONFLICT (dataset) DO UPDATE SET "
        "credits_nano = excluded.credits_nano, usd_nano = excluded.usd_nano, highest_charge = excluded.highest_charge"
    )
    record_installed(db, _NAME, definition(db))


def read(db: Database, dataset: str) -> Totals:
    """The dataset's totals: one primary-key read, whatever the number of attempts."""
    rows = db.query(f"SELECT credits_nano, usd_nano, highest_charge FROM {TABLE} WHERE dataset=?", (dataset,))
    if not rows:
        return Totals()
    credits, usd, highest = rows[0]
    return Totals(int(credits), int(usd), None if highest is None else float(highest))


def recount(db: Database, dataset: str) -> Totals:
    """The same totals summed from the attempts (O(N)): what `read` must always equal."""
    rows = db.query(
        f"SELECT COALESCE(SUM({_nano(db, held_credits_sql())}), 0), COALESCE(SUM({_nano(db, held_usd_sql())}), 0), "
        f"MAX({charge_sql()}) FROM attempts WHERE dataset=?",
        (dataset,),
    )
    credits, usd, highest = rows[0]
    return Totals(int(credits), int(usd), None if highest is None else float(highest))
