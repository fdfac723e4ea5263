"""`wan-pipeline generate SPEC`: generate what is missing through Dagster, then write lineage and summarise.

Exit 0 when every selected output is stored, 1 when some failed (listed), 2 on invalid input or configuration
(nothing spent).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wan_pipeline.cli.console import (
    EXIT_FAILED,
    EXIT_OK,
    emit_json,
    json_option,
    say,
    settings,
    verbose_option,
)
from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.planning.plan import Plan
from wan_pipeline.planning.plan_cache import plan_for
from wan_pipeline.planning.spec import DatasetSpec, load_spec

if TYPE_CHECKING:
    from wan_pipeline.cli.outcome import RunOutcome


@click.command("generate", context_settings={"allow_extra_args": True})
@click.argument("spec_path", metavar="SPEC")
@click.option(
    "--only",
    multiple=True,
    metavar="PROMPT_ID",
    help="only these prompt ids: `--only a b` or `--only a --only b` (ids may contain commas, so no comma lists)",
)
@click.option(
    "--resubmit-ambiguous",
    is_flag=True,
    help="re-send creates that may already have reached a host without idempotency keys "
    "(check the provider's dashboard first: this can buy an output twice)",
)
@json_option
@verbose_option
@click.pass_context
def generate(ctx: click.Context, spec_path: str, only: tuple[str, ...], resubmit_ambiguous: bool, as_json: bool) -> int:
    """Generate what is missing, through Dagster."""
    from wan_pipeline.execution.memory import pause_collector, resume_collector

    pause_collector()  # until the first create is on its way (`launch._side_by_side`): see `execution.memory`
    try:
        return _generate(ctx, spec_path, only, resubmit_ambiguous, as_json)
    finally:
        resume_collector()


def _generate(
    ctx: click.Context, spec_path: str, only: tuple[str, ...], resubmit_ambiguous: bool, as_json: bool
) -> int:
    from wan_pipeline.cli.head_start import head_start
    from wan_pipeline.cli.outcome import starting_point
    from wan_pipeline.execution.endpoints import resolve_endpoint
    from wan_pipeline.execution.memory import prefer_system_allocator

    selected = _selected(ctx, only)
    spec = load_spec(spec_path)
    plan = plan_for(spec)
    endpoint = resolve_endpoint(spec)  # a missing key is exit 2 before anything else happens
    _check_known(spec, plan, selected)
    if resubmit_ambiguous:
        os.environ["WAN_PIPELINE_RESUBMIT_AMBIGUOUS"] = "1"
    say(
        f"{spec.name}: {len(plan.tasks)} output(s) on {spec.provider}/{spec.model} via {endpoint.describe()}",
        to_err=True,
    )
    prefer_system_allocator()  # one process runs every range run, then lineage: keep its peak low
    start = starting_point(spec, plan, selected)
    early = head_start(spec, plan, start[1])  # the first wave goes now; Dagster loads once it has left
    if early is not None:
        early.wait_sent()
    from wan_pipeline.cli.launch import launch_generation

    outcome = launch_generation(Path(spec_path), spec, plan, selected, settings.verbose, start, early)
    summary = _summary(spec, plan, outcome, selected)
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return int(summary["exit_code"])


def _selected(ctx: click.Context, only: tuple[str, ...]) -> list[str] | None:
    """--only's values: repeated, or (as before) several words after one --only."""
    if ctx.args and not only:
        raise click.UsageError(f"unexpected extra argument(s): {' '.join(ctx.args)}")
    return list(dict.fromkeys([*only, *ctx.args])) or None


def _check_known(spec: DatasetSpec, plan: Plan, selected: list[str] | None) -> None:
    known = set(plan.prompt_ids)
    unknown = [p for p in selected or [] if p not in known]
    if unknown:
        reason = f"--only names unknown prompt_id(s): {', '.join(unknown)}"
        raise InvalidInput([Problem(str(spec.prompts_path), None, "prompt_id", reason)])


def _summary(spec: DatasetSpec, plan: Plan, outcome: RunOutcome, selected: list[str] | None) -> dict[str, Any]:
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.lineage import LINEAGE_PATH
    from wan_pipeline.outputs.status import counts, output_states, spend_text

    with open_ledger(spec) as ledger:
        states = [s for s in output_states(plan, ledger) if not selected or s.task.prompt_id in selected]
        after = {f"{a.identity}#{a.attempt}" for a in ledger.briefs(spec.name) if a.task_id}
        credits, usd = ledger.committed_credits(spec.name), ledger.committed_usd(spec.name)
    c = counts(states)
    bad = [s for s in states if s.state != "stored"]
    code = EXIT_FAILED if bad or outcome.run_failed else EXIT_OK
    return {
        "ok": code == EXIT_OK,
        "exit_code": code,
        "dataset": spec.name,
        "outputs": len(states),
        "stored": c.get("stored", 0),
        "new_submissions": len(after - outcome.before),
        "runs": outcome.runs,
        "failed_partitions": outcome.failed_partitions,
        "spend": {"credits": credits, "usd": usd, "text": spend_text(credits, usd)},
        "media": str(Path(spec.storage_root) / "media") if not spec.is_s3 else spec.storage_root + "/media",
        "lineage": f"{spec.storage_root}/{LINEAGE_PATH}",
        "not_done": [
            {"prompt_id": s.task.prompt_id, "variant": s.task.variant, "state": s.state, "error": s.error} for s in bad
        ],
    }


def _print_summary(s: dict[str, Any]) -> None:
    say("", to_err=True)
    say(f"summary for {s['dataset']}:")
    say(f"  outputs stored:   {s['stored']}/{s['outputs']}")
    say(f"  new submissions:  {s['new_submissions']}")
    say(f"  spend (final or held, whole dataset): {s['spend']['text']}")
    say(f"  media:   {s['media']}")
    say(f"  lineage: {s['lineage']}")
    if s["not_done"]:
        say(f"  not done ({len(s['not_done'])}):")
        for o in s["not_done"]:
            say(f"    - {o['prompt_id']} v{o['variant']}: {o['state']}" + (f" — {o['error']}" if o["error"] else ""))
