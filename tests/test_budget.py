"""money/budget.py: BudgetGate admits a submission only when what the dataset already holds plus its estimate fits.

Rivya's wan-2-7-image costs 5 credits per output (FIXED); Runware's wan@2.7-image $0.03. The ledger is real
(rig); nothing here sends a request, admission happens before any does.
"""

from __future__ import annotations

import pytest
from conftest import Rig, RigFactory

from wan_pipeline import errors as e
from wan_pipeline.money.budget import BudgetGate
from wan_pipeline.money.ledger import FAILED, SUBMITTED
from wan_pipeline.money.records import new_attempt


def gate(rig: Rig) -> BudgetGate:
    return BudgetGate(rig.ledger, rig.plan.spec.budget)


def fail(rig: Rig, index: int, error: type[e.ProviderError], task_id: str | None = None) -> None:
    task = rig.tasks[index]
    rig.ledger.update(task.identity, 1, state=FAILED, task_id=task_id, error_class=error.__name__, error_code="x")


def test_without_caps_everything_is_admitted(rig: RigFactory) -> None:
    r = rig()
    for task in r.tasks:
        r.record(task)
    gate(r).admit(r.tasks[0], 2)  # nothing summed, nothing refused


def test_a_submission_that_would_pass_max_credits_is_refused(rig: RigFactory) -> None:
    r = rig(budget={"max_credits": 10})
    r.record(r.tasks[0])
    r.record(r.tasks[1])
    with pytest.raises(e.BudgetExceeded, match="10 credits committed \\+ 5 would pass max_credits 10"):
        gate(r).admit(r.tasks[2], 1)


def test_the_cap_itself_is_reachable(rig: RigFactory) -> None:
    r = rig(budget={"max_credits": 15})
    r.record(r.tasks[0])
    r.record(r.tasks[1])
    gate(r).admit(r.tasks[2], 1)


def test_re_admitting_a_recorded_attempt_does_not_count_it_twice(rig: RigFactory) -> None:
    # a resend of attempt 1 of p0 (e.g. after a crash) holds the same 5 credits, not 10
    r = rig(budget={"max_credits": 10})
    r.record(r.tasks[0])
    r.record(r.tasks[1])
    gate(r).admit(r.tasks[0], 1)
    with pytest.raises(e.BudgetExceeded):
        gate(r).admit(r.tasks[0], 2)  # a new attempt is new money


def test_a_failure_that_cannot_have_been_billed_frees_its_credits(rig: RigFactory) -> None:
    r = rig(budget={"max_credits": 10})
    r.record(r.tasks[0])
    r.record(r.tasks[1])
    fail(r, 1, e.RejectedByProvider)  # refused at the door: no task, no charge
    gate(r).admit(r.tasks[2], 1)


@pytest.mark.parametrize("error", [e.Transient, e.RateLimited, e.AmbiguousSubmission])
def test_an_ambiguous_failure_still_holds_its_credits(rig: RigFactory, error: type[e.ProviderError]) -> None:
    # the host may hold (and bill) a task we never heard about
    r = rig(budget={"max_credits": 10})
    r.record(r.tasks[0])
    r.record(r.tasks[1])
    fail(r, 1, error)
    with pytest.raises(e.BudgetExceeded):
        gate(r).admit(r.tasks[2], 1)


def test_settled_charges_replace_the_estimate(rig: RigFactory) -> None:
    r = rig(budget={"max_credits": 10})
    r.record(r.tasks[0])
    r.record(r.tasks[1])
    r.ledger.update(r.tasks[1].identity, 1, state=SUBMITTED, task_id="t1", credits_final=0.0)  # refunded
    gate(r).admit(r.tasks[2], 1)


def test_max_usd_counts_dollars(rig: RigFactory) -> None:
    r = rig(provider="runware", model="alibaba:wan@2.7-image", budget={"max_usd": 0.07})
    assert [t.estimate.usd for t in r.tasks] == [0.03] * 3
    r.record(r.tasks[0])
    gate(r).admit(r.tasks[1], 1)
    r.record(r.tasks[1])
    with pytest.raises(e.BudgetExceeded, match=r"\$0\.0600 committed \+ \$0\.0300 would pass max_usd"):
        gate(r).admit(r.tasks[2], 1)


def test_a_refused_admission_records_nothing(rig: RigFactory) -> None:
    # the engine admits inside the ledger write that records the attempt: refused means not written
    r = rig(budget={"max_credits": 5})
    r.record(r.tasks[0])
    task = r.tasks[1]
    call = r.provider.submit(task.request(), task.idempotency_key(1))
    with pytest.raises(e.BudgetExceeded):
        r.ledger.begin_attempt(new_attempt(task, 1, call, None, "run"), check=lambda: gate(r).admit(task, 1))
    assert r.ledger.attempts(task.identity) == []
