"""Budget admission (DESIGN §9): before each submission, what is already committed plus this task must fit."""

from __future__ import annotations

from wan_pipeline import errors as e
from wan_pipeline.money.ledger import Ledger, held_credits, held_usd
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.planning.spec import Budget

_EPS = 1e-9


class BudgetGate:
    """Admits a task when the dataset's committed spend plus its estimate stays within the spec's caps.

    Called inside the ledger write that records the attempt, so a concurrent submission cannot slip past."""

    def __init__(self, ledger: Ledger, budget: Budget) -> None:
        self.ledger = ledger
        self.budget = budget

    def admit(self, task: PlannedTask, attempt_no: int) -> None:
        if self.budget.max_credits is None and self.budget.max_usd is None:
            return  # no cap: nothing to sum
        # Re-sending an attempt already counted must not count it twice.
        same = next((a for a in self.ledger.attempts(task.identity) if a.attempt == attempt_no), None)
        self._admit_credits(task, held_credits(same) if same is not None else 0.0)
        self._admit_usd(task, held_usd(same) if same is not None else 0.0)

    def _admit_credits(self, task: PlannedTask, already: float) -> None:
        cap = self.budget.max_credits
        if cap is None:
            return
        held = self.ledger.committed_credits(task.dataset) - already
        cost = task.estimate.credits or 0.0
        if held + cost > cap + _EPS:
            raise e.BudgetExceeded(
                code="budget_exceeded", message=f"{held:g} credits committed + {cost:g} would pass max_credits {cap:g}"
            )

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
