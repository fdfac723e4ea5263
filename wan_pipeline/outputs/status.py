"""What exists for a plan, read from the ledger: per output and per prompt (= per partition)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from wan_pipeline.money.ledger import (
    FAILED,
    STORED,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    Attempt,
    AttemptBrief,
    Ledger,
    surely_unbilled,
)
from wan_pipeline.planning.plan import Plan, PlannedTask


@dataclass(frozen=True)
class OutputState:
    task: PlannedTask
    state: str  # planned | in_flight | stored | failed
    attempts: int
    error: str | None
    credits_reserved: float
    credits_final: float
    cost_usd: float = 0.0


def output_states(plan: Plan, ledger: Ledger) -> list[OutputState]:
    # One query for the dataset, grouped here: not one query per planned output.
    by_identity: dict[str, list[AttemptBrief]] = defaultdict(list)
    for a in ledger.briefs(plan.spec.name):
        by_identity[a.identity].append(a)
    out = []
    for task in plan.tasks:
        attempts = sorted(by_identity.get(task.identity, []), key=lambda a: a.attempt)
        last = attempts[-1] if attempts else None
        if last is None:
            state = "planned"
        elif last.state == STORED:
            state = "stored"
        elif last.state in (SUBMITTING, SUBMITTED, SUCCEEDED):
            state = "in_flight"
        else:
            assert last.state == FAILED
            state = "failed"
        billed = [a for a in attempts if not surely_unbilled(a)]
        out.append(
            OutputState(
                task=task,
                state=state,
                attempts=len(attempts),
                error=f"{last.error_class}: {last.error_code}: {last.error_message}"
                if last and last.state == FAILED
                else None,
                credits_reserved=sum(a.credits_reserved or 0.0 for a in billed),
                credits_final=sum(a.credits_final or 0.0 for a in billed),
                cost_usd=sum(a.cost_usd or 0.0 for a in billed),
            )
        )
    return out


def unstored_by_prompt(plan: Plan, attempts: Iterable[Attempt | AttemptBrief]) -> dict[str, int]:
    """How many outputs of each prompt (= partition) are not stored yet, in plan order; prompts with every
    output stored are left out. The state `output_states` would give, without building one per output: this
    is what `generate` works out for 100,000 outputs before its first submission."""
    last: dict[str, Attempt | AttemptBrief] = {}
    for a in attempts:
        seen = last.get(a.identity)
        if seen is None or a.attempt > seen.attempt:
            last[a.identity] = a
    stored = {identity for identity, a in last.items() if a.state == STORED}
    todo: dict[str, int] = {}
    for task in plan.tasks:
        if task.identity not in stored:
            todo[task.prompt_id] = todo.get(task.prompt_id, 0) + 1
    return todo


def counts(states: list[OutputState]) -> Counter[str]:
    return Counter(s.state for s in states)


def spend_text(credits: float, usd: float) -> str:
    """Spend in the units the provider bills in: credits, USD, or both."""
    parts = [f"{credits:g} credits"] if credits else []
    if usd:
        parts.append(f"${usd:.4f}")
    return ", ".join(parts) or "0 credits"
