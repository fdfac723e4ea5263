"""`wan-pipeline estimate SPEC`: outputs, credits and USD for the whole dataset and for what is missing."""

from __future__ import annotations

from typing import Any

import click

from wan_pipeline.cli.console import EXIT_OK, emit_json, json_option, say, verbose_option
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import DatasetSpec, load_spec
from wan_pipeline.providers.registry import get_provider


@click.command("estimate")
@click.argument("spec_path", metavar="SPEC")
@json_option
@verbose_option
def estimate(spec_path: str, as_json: bool) -> int:
    """Count outputs and credits/USD before spending."""
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.status import output_states

    spec = load_spec(spec_path)
    plan = build_plan(spec)
    full = plan.estimate()
    with open_ledger(spec) as ledger:
        states = output_states(plan, ledger)
        committed = ledger.committed_credits(spec.name)
    per = {t.identity: t.estimate for t in plan.tasks}
    todo = [per[s.task.identity] for s in states if s.state != "stored"]
    todo_credits, todo_usd = _total([e.credits for e in todo]), _total([e.usd for e in todo])
    report: dict[str, Any] = {
        "dataset": spec.name,
        "provider": spec.provider,
        "model": spec.model,
        "outputs": len(plan.tasks),
        "full": {"credits": full.credits, "usd": full.usd},
        # where the prices come from: "declared" (the spec's pricing:), "documented" (the catalog), or None
        "price_source": full.source,
        "todo": {"outputs": len(todo), "credits": todo_credits, "usd": todo_usd},
        "committed_credits": committed,
        "budget": {"max_credits": spec.budget.max_credits, "max_usd": spec.budget.max_usd},
        "budget_verdict": _verdict(spec, committed, todo_credits),
    }
    if as_json:
        emit_json(report)
    else:
        _print(spec, report)
    return EXIT_OK


def _verdict(spec: DatasetSpec, committed: float, remaining: float | None) -> str | None:
    if spec.budget.max_credits is None:
        return None
    if remaining is None:
        learned = get_provider(spec.provider).charge_on_create == "credits"
        return "binds by learning the price from the first charge" if learned else "unknown (no price)"
    return "fits" if committed + remaining <= spec.budget.max_credits else "will stop early"


def _print(spec: DatasetSpec, r: dict[str, Any]) -> None:
    full, todo = r["full"], r["todo"]
    say(f"{spec.name}: {r['outputs']} output(s) on {spec.provider}/{spec.model}")
    say(f"  full dataset:   {_amount(full['credits'], '{:g} credits')}, {_amount(full['usd'], 'USD {:.4f}')}")
    say(
        f"  still to make:  {todo['outputs']} output(s), {_amount(todo['credits'], 'about {:g} credits')}, "
        f"{_amount(todo['usd'], 'about USD {:.4f}')}"
    )
    say(f"  prices: {r['price_source'] or 'not documented or declared (see pricing: in the README)'}")
    say(f"  committed so far (ledger): {r['committed_credits']:g} credits")
    if spec.budget.max_credits is not None:
        say(f"  budget: max_credits {spec.budget.max_credits:g} -> {r['budget_verdict']}")
    if spec.budget.max_usd is not None:
        say(f"  budget: max_usd {spec.budget.max_usd:g}")


def _total(values: list[float | None]) -> float | None:
    """A sum, or None when any part is unknown: an unknown price never reads as zero."""
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


def _amount(value: float | None, fmt: str) -> str:
    unit = "USD" if "USD" in fmt else "credits"
    return fmt.format(value) if value is not None else f"{unit}: no price"
