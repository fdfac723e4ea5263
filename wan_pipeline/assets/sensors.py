"""A sensor that notices new rows in the prompt table, adds their partitions and requests their runs.

The runs are the ones a backfill of the new partitions makes under the assets' backfill policy (ranges of at
most `backfill.partitions_per_run` partitions), not one run per row.
"""

import hashlib

import dagster as dg

from wan_pipeline.assets.backfill import backfill_chunks, range_tags
from wan_pipeline.errors import WanPipelineError
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import DatasetSpec, SpecSource


def build_new_prompts_sensor(
    spec: DatasetSpec, source: SpecSource, job_name: str, policy: dg.BackfillPolicy | None
) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_new_prompts",
        job_name=job_name,
        minimum_interval_seconds=60,
        # Off by default: turning it on is a decision to spend money on every new row.
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Adds a partition for every new prompt row and generates it.",
    )
    def new_prompts(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        try:
            current = source.load()
            fingerprint = hashlib.sha256(current.prompts_path.read_bytes() + source.fingerprint_bytes()).hexdigest()
        except (OSError, WanPipelineError) as exc:
            return dg.SkipReason(f"cannot read the spec or table: {exc}")
        if context.cursor == fingerprint:
            return dg.SkipReason("prompt table unchanged")
        try:
            plan = build_plan(current)
        except WanPipelineError as exc:
            return dg.SkipReason(f"table does not validate; nothing added: {exc}")
        known = list(context.instance.get_dynamic_partitions(current.partitions_name))
        existing = set(known)
        new = [p for p in plan.prompt_ids if p not in existing]
        # New partitions are appended after the known ones, in table order: chunk them as a backfill would.
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"{fingerprint}:{chunk[0]}", tags=range_tags(chunk[0], chunk[-1]))
                for chunk in backfill_chunks([*known, *new], new, policy)
            ],
            dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(current.partitions_name, new)] if new else [],
            cursor=fingerprint,
        )

    return new_prompts
