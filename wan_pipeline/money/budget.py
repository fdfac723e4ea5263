"""Budget admission (DESIGN §9): before each submission, what is already committed plus this task must fit.

A price is known when declared or documented (the task's estimate). Where it is not, but the host reports
its charge when a task is created (EvoLink's and Rivya's reservations), the price is *learned*: one task is
admitted until the first charge is known, then tasks are admitted while

    committed + (tasks in flight whose charge is not yet known + this one) × the highest charge seen ≤ cap,

and the attempt records that highest charge as its `learned` estimate until the host reports its own. So a
cap is overshot by at most one task's cost, under concurrency and across processes: admission runs inside
the ledger's write transaction (`Ledger.begin_attempt`), which serialises every process sharing the ledger.
"""

from __future__ import annotations

from wan_pipeline import errors as e
from wan_pipeline.money.ledger import Attempt, Ledger, held_credits, held_usd
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.planning.pricing import LEARNED
from wan_pipeline.planning.spec import Budget

_EPS = 1e-9


class AwaitingFirstCharge(Exception):
    """Another task's charge (the first one, from which the price is learned) is not known yet: wait."""


class BudgetGate:
    """Admits a task when the dataset's committed spend plus its estimate stays within the spec's caps.

    Called inside the ledger write that records the attempt, so a concurrent submission cannot slip past."""

    def __init__(self, ledger: Ledger, budget: Budget) -> None:
        self.ledger = ledger
        self.budget = budget

    def admit(self, task: PlannedTask, attempt_no: int, record: Attempt | None = None) -> None:
        """Raise BudgetExceeded (or AwaitingFirstCharge) unless the task fits; `record` is the attempt about to
        be written, which receives the learned price as its estimate."""
        if self.budget.max_credits is None and self.budget.max_usd is None:
            return  # no cap: nothing to sum
        # Re-sending an attempt already counted must not count it twice.
        same = next((a for a in self.ledger.attempts(task.identity) if a.attempt == attempt_no), None)
        self._admit_credits(task, attempt_no, held_credits(same) if same is not None else 0.0, same or record)
        self._admit_usd(task, held_usd(same) if same is not None else 0.0)

    def _admit_credits(self, task: PlannedTask, attempt_no: int, already: float, record: Attempt | None) -> None:
        cap = self.budget.max_credits
        if cap is None:
            return
        held = self.ledger.committed_credits(task.dataset) - already
        cost = task.estimate.credits
        if cost is None:
            cost = self._learned(task, attempt_no, held, cap)
            if record is not None and cost is not None and record.credits_reserved is None:
                record.credits_estimate, record.cost_source = cost, LEARNED
        if held + (cost or 0.0) > cap + _EPS:
            raise e.BudgetExceeded(
                code="budget_exceeded",
                message=f"{held:g} credits committed + {cost or 0:g} would pass max_credits {cap:g}",
            )

    def _learned(self, task: PlannedTask, attempt_no: int, held: float, cap: float) -> float | None:
        """The learned price of one task, or None while no charge is known (then this task goes alone)."""
        highest = self.ledger.highest_charge(task.dataset)
        unknown = self.ledger.charges_unknown_in_flight(task.dataset, exclude=(task.identity, attempt_no))
        if highest is None:
            if unknown:
                raise AwaitingFirstCharge(f"{unknown} create(s) in flight; the price is learned from the first")
            return None
        pending = unknown * highest
        if held + pending + highest > cap + _EPS:
            raise e.BudgetExceeded(
                code="budget_exceeded",
                message=f"{held:g} credits committed + {unknown} in flight and this task at up to {highest:g} "
                f"each (the highest charge seen) would pass max_credits {cap:g}",
            )
        return highest

    def _admit_usd(self, task: PlannedTask, already: float) -> None:
        cap = self.budget.max_usd
        if cap is None or task.estimate.usd is None:
            return
        spent = self.ledger.committed_usd(task.dataset) - already
        if spent + task.estimate.usd > cap + _EPS:
            raise e.BudgetExceeded(
                code="budget_exceeded",
                message=f"${spent:.4f} committed + ${task.estimate.usd:.4f} would pass max_usd",
            )
