"""Launch the dataset's Dagster jobs for `generate`: prompt table, generation chunks, lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_pipeline.cli.console import EXIT_INVALID, say
from wan_pipeline.cli.home import ensure_dagster_home
from wan_pipeline.errors import WanPipelineError
from wan_pipeline.planning.plan import Plan
from wan_pipeline.planning.spec import DatasetSpec


class StepFailed(WanPipelineError):
    """A Dagster step the command depends on failed; carries the exit code to end with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOutcome:
    """What the Dagster runs left behind, as data."""

    before: set[str] = field(default_factory=set)
    run_failed: bool = False


def _contiguous_blocks(ordered: list[str], wanted: set[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in wanted:
            current.append(key)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def launch_generation(
    spec_path: Path, spec: DatasetSpec, plan: Plan, selected: list[str] | None, verbose: bool
) -> RunOutcome:
    import dagster as dg
    from dagster import DagsterInstance
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from wan_pipeline.assets.dataset import (
        dataset_definitions,
        generate_job_name,
        lineage_job_name,
        prompt_table_job_name,
    )
    from wan_pipeline.cli.progress import LiveProgress
    from wan_pipeline.cli.runs import close_orphaned_runs, run_tags
    from wan_pipeline.definitions import resources
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.status import incomplete_prompts

    home = ensure_dagster_home()
    defs = dg.Definitions.merge(dataset_definitions(spec_path), dg.Definitions(resources=resources()))
    instance = DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO" if verbose else "CRITICAL"}}}}
    say(f"  dagster instance: {home}", to_err=True)
    closed = close_orphaned_runs(instance, spec.name)
    if closed:
        say(f"  closed {len(closed)} run(s) left open by a killed process", to_err=True)
    tags = run_tags(spec.name)
    result = defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=quiet, tags=tags
    )
    if not result.success:
        raise StepFailed("prompt_table failed:\n" + _failure_text(result), EXIT_INVALID)

    outcome = RunOutcome()
    with open_ledger(spec) as ledger:
        todo = set(incomplete_prompts(plan, ledger))
        outcome.before = {f"{a.identity}#{a.attempt}" for a in ledger.all_attempts(spec.name) if a.task_id}
    if selected:
        todo &= set(selected)
    blocks = _contiguous_blocks(list(instance.get_dynamic_partitions(spec.partitions_name)), todo)
    total_outputs = sum(len(plan.tasks_for(p)) for p in (selected or plan.prompt_ids))
    if not blocks:
        say("  nothing to generate: every selected output is already stored", to_err=True)
    else:
        with LiveProgress(_ledger_snapshot(plan), total_outputs):
            for block in blocks:
                block_tags = {
                    **tags,
                    ASSET_PARTITION_RANGE_START_TAG: block[0],
                    ASSET_PARTITION_RANGE_END_TAG: block[-1],
                }
                res = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
                    instance=instance, tags=block_tags, raise_on_error=False, run_config=quiet
                )
                outcome.run_failed |= not res.success
                if not res.success and not _has_partition_failures(res):
                    say("error: generation run failed:\n" + _failure_text(res), to_err=True)
    lineage_res = defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=quiet, tags=tags
    )
    outcome.run_failed |= not lineage_res.success
    return outcome


def _ledger_snapshot(plan: Plan) -> Any:
    from wan_pipeline.cli.progress import Snapshot
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.status import counts, output_states

    def read() -> Snapshot:
        with open_ledger(plan.spec) as ledger:
            states = output_states(plan, ledger)
        c = counts(states)
        return Snapshot(
            stored=c.get("stored", 0),
            in_flight=c.get("in_flight", 0),
            failed=c.get("failed", 0),
            credits=sum(s.credits_final or s.credits_reserved for s in states),
            usd=sum(s.cost_usd for s in states),
        )

    return read


def _has_partition_failures(result: object) -> bool:
    from wan_pipeline.assets.generation import PARTIAL_FAILURE

    return PARTIAL_FAILURE in _failure_text(result)


def _failure_text(result: object) -> str:
    lines = []
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_step_failure or event.is_run_failure:
            data = event.step_failure_data if event.is_step_failure else None
            msg = data.error.message if data and data.error else (event.message or "")
            if data and data.user_failure_data and data.user_failure_data.description:
                msg = data.user_failure_data.description
            lines.append(msg.strip())
    return "\n".join(lines)
