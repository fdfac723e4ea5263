"""lineage: the Parquet record of everything, and the checks users care about.

The modules that need Arrow are imported by the steps that use them: the definitions load at every `generate`
start, before its first create, and Arrow (with numpy) is a fifth of a second of that."""

from collections import defaultdict

import dagster as dg
from pydantic import Field

from wan_pipeline.assets.automation import REFRESH
from wan_pipeline.assets.keys import key
from wan_pipeline.assets.metadata import unknown_usd
from wan_pipeline.execution.memory import release_free_memory
from wan_pipeline.execution.session import open_ledger
from wan_pipeline.outputs.gallery import GALLERY_PATH
from wan_pipeline.outputs.status import output_states
from wan_pipeline.planning.plan_cache import plan_for
from wan_pipeline.planning.spec import DatasetSpec, SpecSource
from wan_pipeline.resources.storage import StorageResource


class RebuildConfig(dg.Config):
    """Lineage and its file check are incremental (only what changed since the last pass); `full` redoes all."""

    full: bool = Field(default=False, description="Rebuild the whole lineage / re-read and hash every file.")


def build_lineage_asset(spec: DatasetSpec, source: SpecSource) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    lineage_key = key(spec, "lineage")
    return [
        _lineage(spec, source, lineage_key),
        _outputs_exist_and_decode(source, lineage_key),
        _every_planned_output_stored(source, lineage_key),
        _no_identity_submitted_twice(source, lineage_key),
        _spend_within_budget(source, lineage_key),
    ]


def _lineage(spec: DatasetSpec, source: SpecSource, lineage_key: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(
        key=lineage_key,
        deps=[key(spec, "media")],
        group_name=spec.name,
        kinds={"parquet", "pyarrow"},
        automation_condition=REFRESH,
        description="One row per output file or failed attempt: seeds, parameters, task ids, credits, checksums.",
    )
    def lineage(
        context: dg.AssetExecutionContext, config: RebuildConfig, storage: StorageResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        from wan_pipeline.outputs.lineage import write_lineage  # Arrow: loaded by the steps that use it

        current = source.load()
        store = storage.for_spec(current)
        with open_ledger(current) as ledger:
            uri, table = write_lineage(ledger, current.name, store, full=config.full)
        release_free_memory()  # what building it took (execution/memory.py)
        status = table.column("status").to_pylist()
        credits = [c for c in table.column("credits_final").to_pylist() if c is not None]
        costs = table.column("cost_usd").to_pylist()
        unpriced = sum(1 for s, c in zip(status, costs, strict=True) if c is None and s != "pending")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(uri),
                "rows": table.num_rows,
                "succeeded": status.count("succeeded"),
                "failed": status.count("failed"),
                "pending": status.count("pending"),
                "credits_final": float(sum(credits)),
                "usd": float(sum(c for c in costs if c is not None)) if not unpriced else unknown_usd(unpriced),
                # written by the report asset, which runs after this one
                "gallery": dg.MetadataValue.path(store.uri(GALLERY_PATH)),
                "dagster/row_count": table.num_rows,
            }
        )

    return lineage


def _outputs_exist_and_decode(source: SpecSource, lineage_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=lineage_key,
        description="Every lineage file exists, decodes, and matches its SHA-256.",
        automation_condition=REFRESH,
    )
    def outputs_exist_and_decode(config: RebuildConfig, storage: StorageResource) -> dg.AssetCheckResult:
        from wan_pipeline.outputs.audit import audit_outputs

        current = source.load()
        with open_ledger(current) as ledger:
            audit = audit_outputs(ledger, current.name, storage.for_spec(current), full=config.full)
        release_free_memory()
        return dg.AssetCheckResult(
            passed=not audit.problems,
            metadata={
                "files_checked": audit.checked,
                # the others were verified before and their size and mtime (S3: ETag) have not changed since
                "files_read": audit.read,
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in audit.problems[:50]) or "none"),
            },
        )

    return outputs_exist_and_decode


def _every_planned_output_stored(source: SpecSource, lineage_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=lineage_key,
        description="Every planned output of the current table is stored.",
        blocking=False,
        automation_condition=REFRESH,
    )
    def every_planned_output_stored() -> dg.AssetCheckResult:
        current = source.load()
        plan = plan_for(current)
        with open_ledger(current) as ledger:
            states = output_states(plan, ledger)
        missing: dict[str, list[str]] = defaultdict(list)
        for s in states:
            if s.state != "stored":
                missing[s.state].append(f"{s.task.prompt_id}/v{s.task.variant}")
        return dg.AssetCheckResult(
            passed=not missing,
            severity=dg.AssetCheckSeverity.WARN,
            # The listings are keyed `<state>_outputs`: a bare state name ("planned") would overwrite the count.
            metadata={"planned": len(states), **{f"{k}_outputs": ", ".join(v[:40]) for k, v in missing.items()}},
        )

    return every_planned_output_stored


def _no_identity_submitted_twice(source: SpecSource, lineage_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=lineage_key,
        description="No idempotency identity was bought twice.",
        automation_condition=REFRESH,
    )
    def no_identity_submitted_twice() -> dg.AssetCheckResult:
        from wan_pipeline.outputs.audit import duplicate_submissions

        current = source.load()
        with open_ledger(current) as ledger:
            dupes = duplicate_submissions(ledger, current.name)
        return dg.AssetCheckResult(
            passed=not dupes, metadata={"violations": dg.MetadataValue.md("\n".join(f"- {d}" for d in dupes) or "none")}
        )

    return no_identity_submitted_twice


def _spend_within_budget(source: SpecSource, lineage_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=lineage_key,
        description="Committed spend stays inside the spec's budget.",
        automation_condition=REFRESH,
    )
    def spend_within_budget() -> dg.AssetCheckResult:
        current = source.load()
        with open_ledger(current) as ledger:
            credits = ledger.committed_credits(current.name)
            usd = ledger.committed_usd(current.name)
        budget = current.budget
        ok = (budget.max_credits is None or credits <= budget.max_credits + 1e-9) and (
            budget.max_usd is None or usd <= budget.max_usd + 1e-9
        )
        return dg.AssetCheckResult(
            passed=ok,
            metadata={
                "committed_credits": credits,
                "max_credits": budget.max_credits or dg.MetadataValue.null(),
                "committed_usd": usd,
                "max_usd": budget.max_usd or dg.MetadataValue.null(),
            },
        )

    return spend_within_budget
