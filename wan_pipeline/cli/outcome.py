"""What `generate` starts from and what its runs leave behind, as data. The starting point is read from the
ledger before Dagster loads: the head start (`cli.head_start`) buys the first wave while it does, and the
summary and progress count from before that."""

from __future__ import annotations

from dataclasses import dataclass, field

from wan_pipeline.execution.session import open_ledger
from wan_pipeline.outputs.status import unstored_by_prompt
from wan_pipeline.planning.plan import Plan
from wan_pipeline.planning.spec import DatasetSpec


@dataclass
class RunOutcome:
    """What the Dagster runs left behind, as data."""

    before: set[str] = field(default_factory=set)  # attempts with a task id before the runs ("identity#n")
    #: outputs per latest state before the runs (progress counts from there)
    counts_before: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    failed_partitions: dict[str, str] = field(default_factory=dict)
    run_failed: bool = False


def starting_point(spec: DatasetSpec, plan: Plan, selected: list[str] | None) -> tuple[RunOutcome, dict[str, int]]:
    """The outcome so far, and the selected partitions with an output not yet stored with how many each still
    needs (in plan order)."""
    with open_ledger(spec) as ledger:
        attempts = ledger.all_attempts(spec.name)  # once: the same rows give both answers
        counts = ledger.latest_state_counts(spec.name)
    before = {f"{a.identity}#{a.attempt}" for a in attempts if a.task_id}
    wanted = set(selected) if selected else None
    todo = {p: n for p, n in unstored_by_prompt(plan, attempts).items() if wanted is None or p in wanted}
    return RunOutcome(before=before, counts_before=counts), todo
