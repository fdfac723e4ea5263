"""prompt_table: validate the spec and table, plan every output, register one partition per prompt."""

import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from wan_pipeline.assets.automation import REFRESH
from wan_pipeline.assets.keys import key
from wan_pipeline.errors import InvalidInput, WanPipelineError
from wan_pipeline.planning.plan_cache import plan_for
from wan_pipeline.planning.spec import DatasetSpec, SpecSource

#: per instance and partitions definition: the keys in the instance's order, as the last registration left them
_registered: weakref.WeakKeyDictionary[dg.DagsterInstance, dict[str, tuple[str, ...]]] = weakref.WeakKeyDictionary()
_registered_lock = threading.Lock()


def register_partitions(instance: dg.DagsterInstance, spec: DatasetSpec, prompt_ids: list[str]) -> list[str]:
    """Add the partitions of the prompts the instance does not know yet (one read, one write); returns them."""
    known = instance.get_dynamic_partitions(spec.partitions_name)
    existing = set(known)
    new = [p for p in prompt_ids if p not in existing]
    if new:
        instance.add_dynamic_partitions(spec.partitions_name, new)
    # Dagster orders dynamic partitions as they were added: the known ones, then these.
    with _registered_lock:
        _registered.setdefault(instance, {})[spec.partitions_name] = (*known, *new)
    return new


def partition_order(instance: dg.DagsterInstance, spec: DatasetSpec) -> Sequence[str]:
    """The dataset's partition keys in the instance's order (how a backfill cuts runs), taken from the
    registration this process just made on this instance rather than read again (100,000 keys take a few
    tenths of a second to read); read from the instance when there was none. A registration is used once."""
    with _registered_lock:
        keys = _registered.get(instance, {}).pop(spec.partitions_name, None)
    return keys if keys is not None else instance.get_dynamic_partitions(spec.partitions_name)


def build_prompt_table_asset(spec: DatasetSpec, source: SpecSource) -> dg.AssetsDefinition:
    suffix = Path(spec.prompts).suffix.lstrip(".").lower()

    @dg.asset(
        key=key(spec, "prompt_table"),
        group_name=spec.name,
        kinds={suffix, "pandas"},
        automation_condition=REFRESH,  # validating and registering partitions costs nothing
        description=f"Validated, planned prompt table of dataset '{spec.name}' ({spec.prompts}).",
    )
    def prompt_table(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        try:
            current = source.load()
            plan = plan_for(current)
        except InvalidInput as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in exc.problems))},
                allow_retries=False,
            ) from None
        except WanPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        new = register_partitions(context.instance, current, plan.prompt_ids)
        estimate = plan.estimate()
        preview = "\n".join(
            ["| prompt_id | mode | variants | prompt |", "|---|---|---|---|"]
            + [
                f"| {r.prompt_id} | {plan.tasks_for(r.prompt_id)[0].mode.value} | {len(plan.tasks_for(r.prompt_id))} "
                f"| {r.prompt[:60].replace('|', '/')} |"
                for r in plan.rows[:50]
            ]
        )
        return dg.MaterializeResult(
            metadata={
                "rows": len(plan.rows),
                "planned_outputs": len(plan.tasks),
                "new_partitions": len(new),
                "estimated_credits": estimate.credits,
                "estimated_usd": estimate.usd,
                "provider": f"{current.provider}/{current.model}",
                "preview": dg.MetadataValue.md(preview),
            }
        )

    return prompt_table
