"""money/totals.py: the per-dataset money totals the database keeps beside the attempts, on both backends.

They must always equal the sum over the attempts (exactly, in nano-units), after any mix of writes — failures,
refunds, re-armed attempts, savepoints undone, a process killed mid-transaction — and a ledger written before
them gets them counted once when it is opened. Budget admission reads them instead of summing: the statements
it runs and the rows it reads do not grow with the number of attempts already in the ledger.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import write_dataset

from wan_pipeline.money.budget import BudgetGate
from wan_pipeline.money.database import Row, SqliteDatabase
from wan_pipeline.money.ledger import (
    FAILED,
    STORED,
    SUBMITTED,
    SUBMITTING,
    Attempt,
    Ledger,
    held_credits,
    held_usd,
)
from wan_pipeline.money.migrations import LATEST
from wan_pipeline.money.records import new_attempt
from wan_pipeline.money.totals import Totals
from wan_pipeline.planning.plan import PlannedTask, build_plan
from wan_pipeline.planning.spec import Budget, load_spec
from wan_pipeline.providers.registry import get_provider


@pytest.fixture
def ledger(ledger_where: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_where) as opened:
        yield opened


def attempt(identity: str, n: int = 1, dataset: str = "ds", **fields: object) -> Attempt:
    values: dict[str, object] = dict(
        identity=identity, attempt=n, dataset=dataset, prompt_id=f"p-{identity}", variant=0, fingerprint="f" * 16,
        provider="evolink", model="wan-2.7-image", mode="text_to_image", prompt="a fox", params_json="{}", seed=7,
        seed_source="derived", extra_json="{}", idempotency_key=f"key-{identity}-{n}", request_json="{}",
        state=SUBMITTING, credits_estimate=5.0, cost_usd=0.03,
    )  # fmt: skip
    values.update(fields)
    return Attempt(**values)  # type: ignore[arg-type]


def expected(ledger: Ledger, dataset: str) -> tuple[float, float, float | None]:
    """What the totals mean, from the attempts and the ledger's own per-attempt rules (in Python)."""
    rows = ledger.all_attempts(dataset)
    charges = [max(a.credits_reserved or 0, a.credits_final or 0) for a in rows
               if (a.credits_reserved or 0) > 0 or (a.credits_final or 0) > 0]  # fmt: skip
    return sum(held_credits(a) for a in rows), sum(held_usd(a) for a in rows), max(charges) if charges else None


def assert_consistent(ledger: Ledger, *datasets: str) -> None:
    for dataset in datasets:
        kept = ledger.totals(dataset)
        assert kept == ledger.recount_totals(dataset), dataset  # exactly, in nano-units
        credits, usd, highest = expected(ledger, dataset)
        assert (kept.credits, kept.usd) == (pytest.approx(credits, abs=1e-9), pytest.approx(usd, abs=1e-9))
        assert kept.highest_charge == highest
        assert ledger.committed_credits(dataset) == kept.credits and ledger.highest_charge(dataset) == highest


def test_totals_follow_every_kind_of_write(ledger: Ledger) -> None:
    steps: list[Callable[[], object]] = [
        lambda: ledger.begin_attempt(attempt("a")),
        lambda: ledger.begin_attempt(attempt("learned", credits_estimate=None, cost_usd=None)),
        lambda: ledger.begin_attempt(attempt("elsewhere", dataset="other", credits_estimate=100.0)),
        lambda: ledger.update("a", 1, state=SUBMITTED, task_id="t-a", credits_reserved=6.0),
        lambda: ledger.update("a", 1, state=STORED, credits_final=4.0),  # settled below the reservation
        lambda: ledger.update("learned", 1, state=SUBMITTED, task_id="t-l", credits_reserved=3.0),
        lambda: ledger.update("learned", 1, state=FAILED, credits_final=0.0, cost_usd=0.0),  # refunded
        lambda: ledger.begin_attempt(attempt("refused")),
        lambda: ledger.update("refused", 1, state=FAILED, error_class="RejectedByProvider", error_code="400"),
        lambda: ledger.begin_attempt(attempt("refused")),  # re-armed: counts again
        lambda: ledger.update("refused", 1, state=FAILED, error_class="RejectedByProvider", error_code="400"),
        lambda: ledger.begin_attempt(attempt("refused", 2)),  # a new attempt after a terminal failure
        lambda: ledger.begin_attempt(attempt("ambiguous")),
        lambda: ledger.update("ambiguous", 1, state=FAILED, error_class="Transient", error_code="503"),  # may bill
        lambda: ledger.update("ambiguous", 1, task_id="t-amb"),  # found on the host afterwards
        lambda: ledger.update("a", 1, credits_reserved=1.0),  # the highest charge is lowered: recounted
        lambda: ledger.update("a", 1, credits_reserved=None, credits_final=None),  # back to its estimate
        lambda: ledger.count_submit_call("ambiguous", 1),  # no amount moves
        lambda: ledger.db.execute("DELETE FROM attempts WHERE identity=?", ("learned",)),
    ]
    steps += [lambda i=i: ledger.begin_attempt(attempt(f"tenth{i}", credits_estimate=0.1, cost_usd=0.01))
              for i in range(30)]  # fmt: skip
    for step in steps:
        step()
        assert_consistent(ledger, "ds", "other", "nothing")
    assert ledger.totals("nothing") == Totals()
    # a: its estimate again; refused: 0 then 5 (attempt 2); ambiguous: 5; thirty 0.1s make exactly 3
    assert ledger.totals("ds").credits_nano == 18 * 10**9


def test_an_operation_undone_in_a_group_commit_leaves_the_totals_as_they_were(ledger: Ledger) -> None:
    ledger.begin_attempt(attempt("a"))
    before = ledger.totals("ds")
    with ledger.batch() as savepoint:
        with pytest.raises(RuntimeError), savepoint():
            ledger.update("a", 1, credits_final=50.0)
            ledger.begin_attempt(attempt("b"))
            raise RuntimeError("refused")
        with savepoint():
            ledger.begin_attempt(attempt("c", credits_estimate=2.0))
    assert ledger.totals("ds") == Totals(before.credits_nano + 2 * 10**9, before.usd_nano + 30_000_000, None)
    assert_consistent(ledger, "ds")


def test_totals_equal_the_sum_after_a_random_mix_of_writes(ledger: Ledger) -> None:
    rng = random.Random(7)
    errors = ["RejectedByProvider", "Transient", "AmbiguousSubmission", "GenerationFailed", None]
    amounts = [None, 0.0, 0.1, 0.25, 1.0, 6.0, 7.5]
    live: list[tuple[str, int]] = []
    for step in range(300):
        pick = rng.random()
        if pick < 0.3 or not live:
            key = (f"id{rng.randrange(60)}", rng.randint(1, 2))
            ledger.begin_attempt(attempt(*key, dataset=rng.choice(["ds", "ds2"]), credits_estimate=rng.choice(amounts),
                                         cost_usd=rng.choice(amounts)))  # fmt: skip
            live.append(key)
        elif pick < 0.9:
            values = rng.choice([
                {"state": SUBMITTED, "task_id": f"t{step}", "credits_reserved": rng.choice(amounts)},
                {"state": STORED, "credits_final": rng.choice(amounts), "cost_usd": rng.choice(amounts)},
                {"state": FAILED, "task_id": None, "error_class": rng.choice(errors)},
                {"state": FAILED, "credits_final": 0.0, "cost_usd": 0.0},
                {"credits_reserved": None, "credits_final": None},
            ])  # fmt: skip
            ledger.update(*rng.choice(live), **values)
        else:
            gone = live.pop(rng.randrange(len(live)))
            ledger.db.execute("DELETE FROM attempts WHERE identity=? AND attempt=?", gone)
        if step % 50 == 49:
            assert_consistent(ledger, "ds", "ds2")
    assert_consistent(ledger, "ds", "ds2")


KILLED_MID_BATCH = textwrap.dedent("""
    import dataclasses, sys, time
    from wan_pipeline.money.ledger import Attempt, Ledger
    ledger = Ledger.open(sys.argv[1])
    with ledger.batch() as savepoint:
        kept = ledger.latest("kept0")
        for i in range(20):
            with savepoint():
                ledger.begin_attempt(dataclasses.replace(kept, identity=f"dying{i}", credits_estimate=9.0))
                ledger.update(f"kept{i % 3}", 1, credits_final=0.0)
        print("written", flush=True)
        time.sleep(120)  # killed here, before the commit
""")


def test_a_process_killed_mid_transaction_leaves_totals_and_attempts_together(
    ledger: Ledger, ledger_where: str, tmp_path: Path
) -> None:
    for i in range(3):
        ledger.begin_attempt(attempt(f"kept{i}"))
    before = ledger.totals("ds")
    script = tmp_path / "dying.py"
    script.write_text(KILLED_MID_BATCH, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), ledger_where], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()  # by its PID: SIGKILL, no cleanup of any kind
        proc.wait()
    with Ledger.open(ledger_where) as reopened:
        assert reopened.totals("ds") == before == reopened.recount_totals("ds")
        assert len(reopened.all_attempts("ds")) == 3


def _forget_totals(ledger: Ledger) -> None:
    """Takes the ledger back to schema 5, as a version before the totals and the change numbers left it."""
    db = ledger.db
    if db.dialect == "postgresql":
        triggers = db.query("SELECT DISTINCT trigger_name, event_object_table FROM information_schema.triggers "
                            "WHERE trigger_schema = 'wan_pipeline'")  # fmt: skip
    else:
        triggers = db.query("SELECT name, tbl_name FROM sqlite_master WHERE type='trigger'")
    assert len(triggers) >= 3
    for name, table in triggers:
        db.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if db.dialect == "postgresql" else ""))
    for statement in ("DROP INDEX attempts_state", "DROP INDEX attempts_changes",
                      "ALTER TABLE attempts DROP COLUMN change_seq", "DROP TABLE dataset_totals",
                      "DROP TABLE ledger_derived", "DROP TABLE ledger_meta",
                      "DELETE FROM ledger_schema WHERE version >= 6"):  # fmt: skip
        db.execute(statement)


def test_a_ledger_from_before_the_totals_gets_them_counted_once_on_open(ledger_where: str) -> None:
    with Ledger.open(ledger_where) as ledger:
        _forget_totals(ledger)
        for i in range(5):  # written as the old code writes: no trigger keeps anything
            ledger.begin_attempt(attempt(f"old{i}", credits_estimate=1.5))
        ledger.update("old0", 1, state=FAILED, error_class="RejectedByProvider")
        ledger.update("old1", 1, state=STORED, task_id="t1", credits_reserved=8.0, credits_final=2.0)
    with Ledger.open(ledger_where) as ledger:
        assert ledger.totals("ds") == Totals(6_500_000_000, 120_000_000, 8.0)
        assert_consistent(ledger, "ds")
        versions = [int(v) for (v,) in ledger.db.query("SELECT version FROM ledger_schema ORDER BY version")]
        assert versions[-1] == LATEST
        ledger.begin_attempt(attempt("new", credits_estimate=1.0))
        assert ledger.committed_credits("ds") == 7.5


def test_triggers_from_other_money_rules_are_replaced_and_the_totals_recounted(ledger_where: str) -> None:
    with Ledger.open(ledger_where) as ledger:
        ledger.begin_attempt(attempt("a", credits_estimate=3.0))
        # as if written by a version whose rules differed: another definition, other numbers
        ledger.db.execute("UPDATE ledger_derived SET definition_sha256='older'")
        ledger.db.execute("UPDATE dataset_totals SET credits_nano=1")
    with Ledger.open(ledger_where) as ledger:
        assert ledger.totals("ds").credits == 3.0
        assert_consistent(ledger, "ds")


# -- admission costs the same at any N ----------------------------------------------------------------------


def _plan(root: Path, provider: str, model: str) -> tuple[list[PlannedTask], Budget]:
    rows = [{"prompt_id": f"p{i}", "prompt": f"A lighthouse number {i}"} for i in range(4)]
    spec = load_spec(write_dataset(root, rows, name="scale", provider=provider, model=model, endpoint="emulator",
                                   budget={"max_credits": 10**9}))  # fmt: skip
    return list(build_plan(spec).tasks), spec.budget


def _fill(ledger: Ledger, dataset: str, settled: int, in_flight: int) -> None:
    """`settled` attempts already charged (6 credits each) and a few in flight with no charge known yet."""
    with ledger.batch():
        for i in range(settled):
            ledger.begin_attempt(attempt(f"old{i}", dataset=dataset, credits_estimate=None, cost_usd=None))
            ledger.update(f"old{i}", 1, state=STORED, task_id=f"t{i}", credits_reserved=6.0, credits_final=6.0)
        for i in range(in_flight):
            ledger.begin_attempt(attempt(f"flying{i}", dataset=dataset, credits_estimate=None, cost_usd=None))
            ledger.update(f"flying{i}", 1, state=SUBMITTED, task_id=f"f{i}")


class Meter:
    """Counts what the ledger's database does: statements sent, and (SQLite) virtual-machine steps, which
    grow with every row a statement reads or writes."""

    def __init__(self, ledger: Ledger) -> None:
        self.statements: list[str] = []
        self.steps = 0
        db = ledger.db
        self.run = run = db._run  # uncounted

        def counted(sql: str, args: tuple[object, ...]) -> tuple[list[Row], int]:
            self.statements.append(sql)
            return run(sql, args)

        db._run = counted  # type: ignore[method-assign]
        if isinstance(db, SqliteDatabase):
            db._db.set_progress_handler(self._step, 1)

    def _step(self) -> int:
        self.steps += 1
        return 0


def _admissions(ledger: Ledger, tasks: list[PlannedTask], budget: Budget) -> list[tuple[int, int, int]]:
    """Admits and records each task as the engine does; per admission: statements, VM steps, rows read."""
    meter, gate = Meter(ledger), BudgetGate(ledger, budget)
    provider = get_provider(tasks[0].provider)
    costs = []
    for task in tasks:
        record = new_attempt(task, 1, provider.submit(task.request(), task.idempotency_key(1)), None, "run")
        with ledger.batch():  # one transaction, so PostgreSQL's per-transaction counters see all of it
            before = (len(meter.statements), meter.steps, _attempt_rows_read(ledger, meter))
            ledger.begin_attempt(record, check=lambda task=task, record=record: gate.admit(task, 1, record))
            after = (len(meter.statements), meter.steps, _attempt_rows_read(ledger, meter))
            costs.append((after[0] - before[0], after[1] - before[1], after[2] - before[2]))
    return costs


def _attempt_rows_read(ledger: Ledger, meter: Meter) -> int:
    """Rows of `attempts` read by this connection so far (PostgreSQL's own accounting, which does not flush
    within a transaction; 0 on SQLite, where VM steps count the same)."""
    if ledger.db.dialect != "postgresql":
        return 0
    rows = meter.run("SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) "
                          "FROM pg_stat_xact_user_tables WHERE relname = 'attempts'", ())[0]  # fmt: skip
    return int(rows[0][0])


@pytest.mark.parametrize("provider, model", [("rivya", "wan-2-7-image"), ("evolink", "wan-2.7-image")],
                         ids=["declared-price", "learned-price"])  # fmt: skip
def test_an_admission_costs_the_same_whatever_the_ledger_holds(
    ledger_where: str, tmp_path: Path, provider: str, model: str
) -> None:
    tasks, budget = _plan(tmp_path, provider, model)
    assert (tasks[0].estimate.credits is None) == (provider == "evolink")
    costs = {}
    for settled in (20, 1500):
        where = ledger_where if ledger_where.startswith("postgresql") else str(tmp_path / f"{settled}.sqlite")
        with Ledger.open(where) as ledger:
            ledger.db.execute("DELETE FROM attempts")
            _fill(ledger, tasks[0].dataset, settled, in_flight=2)
            if ledger.db.dialect == "postgresql":
                ledger.db.execute("ANALYZE attempts")  # as autovacuum does once a table has grown
            assert len(ledger.all_attempts(tasks[0].dataset)) == settled + 2
            costs[settled] = _admissions(ledger, tasks, budget)
            assert_consistent(ledger, tasks[0].dataset)
    small, large = costs[20], costs[1500]
    assert [c[:2] for c in small] == [c[:2] for c in large]  # the same statements, the same VM steps
    # rows of attempts read at N=1,500: the task's own attempts and the two in flight, never the settled ones
    assert all(rows <= 8 for _, _, rows in large)
