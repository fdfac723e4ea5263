"""generations + media: one op per run submits, polls, downloads and stores every output of the run's
partitions, concurrently, through the provider resource.

They are two assets produced by one op so each result is downloaded as soon as it is ready (result URLs
expire) and so each partition's outcome is recorded on its own, live: a partition is materialized (with its
metadata) within moments of its last output being stored, while the run goes on — a killed run keeps the
record of every partition it stored. A partition that failed is observed as failed, with its reason, as soon
as its last output is final; the step then fails at the end listing the failed partitions as structured
metadata (`FAILED_PARTITIONS`), leaving the good ones materialized.

Events per partition are what the UI needs: Dagster's two "planned" events (written when the run starts;
they are what marks a partition failed when the run fails), then two materializations, or two observations
when it failed. Per-task log lines are not written (the ledger and lineage hold every task); only retries
and provider-side failures are logged.
"""

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from wan_pipeline.assets.backfill import partitions_per_run
from wan_pipeline.assets.keys import key, prompt_partitions
from wan_pipeline.assets.live import Note, OutcomeStream
from wan_pipeline.assets.metadata import partition_metadata
from wan_pipeline.errors import WanPipelineError
from wan_pipeline.execution.endpoints import thumbnails_path
from wan_pipeline.execution.engine import Outcome, OutcomeSink
from wan_pipeline.execution.session import open_session
from wan_pipeline.money.lulls import wait_for_lull
from wan_pipeline.outputs.gallery import THUMB_SIDE
from wan_pipeline.outputs.storage import Storage
from wan_pipeline.outputs.thumbnails import ThumbnailCache
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.planning.plan_cache import plan_for
from wan_pipeline.planning.spec import DatasetSpec, SpecSource
from wan_pipeline.resources.provider import ProviderResource
from wan_pipeline.resources.storage import StorageResource

#: in the step failure of a run where some partitions failed and the others were materialized
PARTIAL_FAILURE = "partition(s) failed; the others are materialized"
#: step-failure metadata key: JSON {partition key: reason} of every partition that did not complete
FAILED_PARTITIONS = "failed_partitions"
#: engine events worth a line in the run's log (the others are in the ledger, lineage and materializations)
_LOGGED_EVENTS = {"task_failed": "provider-side failure", "download_retry": "download retried"}

Event = dg.AssetMaterialization | dg.AssetObservation


def _asset_specs(spec: DatasetSpec) -> list[dg.AssetSpec]:
    partitions = prompt_partitions(spec)
    gen_key = key(spec, "generations")
    return [
        dg.AssetSpec(
            gen_key,
            deps=[key(spec, "prompt_table")],
            partitions_def=partitions,
            group_name=spec.name,
            skippable=True,
            kinds={spec.provider},
            description="Provider tasks: submitted once, polled to a terminal state (ledger-backed).",
        ),
        dg.AssetSpec(
            key(spec, "media"),
            deps=[gen_key],
            partitions_def=partitions,
            group_name=spec.name,
            skippable=True,
            kinds={"s3" if spec.is_s3 else "file", "image"},
            description="Downloaded, verified and stored media files with SHA-256.",
        ),
    ]


def build_generation_assets(spec: DatasetSpec, source: SpecSource) -> dg.AssetsDefinition:
    gen_key, media_key = key(spec, "generations"), key(spec, "media")

    @dg.multi_asset(
        name=f"{spec.name}_generate",
        specs=_asset_specs(spec),
        backfill_policy=dg.BackfillPolicy.multi_run(partitions_per_run(spec)),
        pool=f"wan_pipeline_{spec.provider}",  # caps steps calling one provider across runs (docs/deploy.md)
        can_subset=False,
    )
    def generate(
        context: dg.AssetExecutionContext, provider: ProviderResource, storage: StorageResource
    ) -> Iterator[Event]:
        # A generator yielding per-partition events and no outputs (the specs are skippable): a partition
        # is materialized only when every output of it is stored.
        try:
            current = source.load()
            plan = plan_for(current)
        except WanPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        keys = list(context.partition_keys)
        by_partition = {k: plan.tasks_for(k) for k in keys}
        tasks = [t for k in keys for t in by_partition[k]]
        context.log.info(f"{len(keys)} partition(s), {len(tasks)} output(s) via {current.provider}/{current.model}")
        store = storage.for_spec(current)
        failures: dict[str, str] = {}
        for pid in (k for k in keys if not by_partition[k]):
            failures[pid] = "prompt_id is no longer in the prompt table"
            yield from _failed_events((gen_key, media_key), pid, failures[pid], [])

        async def work(on_outcome: OutcomeSink, note: Callable[[str], None]) -> None:
            def on_event(kind: str, task: PlannedTask, detail: str) -> None:
                if kind in _LOGGED_EVENTS:
                    note(f"{_LOGGED_EVENTS[kind]}: {task.prompt_id}/v{task.variant}: {detail}")

            async with open_session(
                current, provider.settings(current.provider), run_id=context.run_id, on_event=on_event, storage=store
            ) as session:
                note(f"endpoint: {session.endpoint.describe()}")
                await session.engine.run(tasks, on_outcome)

        tracker = _PartitionTracker(by_partition)
        thumbs = ThumbnailCache(thumbnails_path(current), THUMB_SIDE)  # the gallery's, made as partitions land
        try:
            with OutcomeStream(work) as stream:
                for item in stream:
                    if isinstance(item, Note):
                        context.log.info(item.text)
                        continue
                    group = tracker.add(item)
                    if group is None:
                        continue
                    yield from _partition_events((gen_key, media_key), group, store, failures, thumbs)
        finally:
            thumbs.close()
        # Dagster's end of the step and of the run hold the interpreter a while: in `generate`, where other runs'
        # tasks are at the host, in a gap between their waves (`money.lulls`); at once when none is
        wait_for_lull()
        _raise_for(stream.error, failures, len(keys))

    return generate


def _partition_events(
    asset_keys: tuple[dg.AssetKey, dg.AssetKey],
    group: list[Outcome],
    store: Storage,
    failures: dict[str, str],
    thumbs: ThumbnailCache | None = None,
) -> Iterator[Event]:
    """A final partition's events: both assets materialized, or observed failed (recorded in `failures`)."""
    pid, bad = group[0].task.prompt_id, [o for o in group if o.status != "stored"]
    if bad:
        failures[pid] = "; ".join(f"v{o.task.variant}: {o.error}" for o in bad)
        yield from _failed_events(asset_keys, pid, failures[pid], group)
        return
    gen_meta, media_meta = partition_metadata(group, store, thumbs)
    yield dg.AssetMaterialization(asset_key=asset_keys[0], partition=pid, metadata=gen_meta)
    yield dg.AssetMaterialization(asset_key=asset_keys[1], partition=pid, metadata=media_meta)


class _PartitionTracker:
    """Collects outcomes per partition; says when a partition's last output is final."""

    def __init__(self, by_partition: dict[str, list[PlannedTask]]) -> None:
        self._expected = {k: len(v) for k, v in by_partition.items()}
        self._seen: dict[str, list[Outcome]] = defaultdict(list)

    def add(self, outcome: Outcome) -> list[Outcome] | None:
        group = self._seen[outcome.task.prompt_id]
        group.append(outcome)
        if len(group) < self._expected.get(outcome.task.prompt_id, 0):
            return None
        group.sort(key=lambda o: o.task.variant)
        return self._seen.pop(outcome.task.prompt_id)


def _failed_events(
    asset_keys: tuple[dg.AssetKey, ...], pid: str, reason: str, group: list[Outcome]
) -> Iterator[dg.AssetObservation]:
    status = "pending" if group and all(o.status in ("pending", "stored") for o in group) else "failed"
    attempts = [o.attempt for o in group if o.attempt is not None]
    metadata: dict[str, Any] = {
        "status": status,
        "reason": dg.MetadataValue.text(reason),
        "task_ids": ", ".join(a.task_id or "-" for a in attempts),
        "outputs_not_stored": sum(o.status != "stored" for o in group),
    }
    for asset_key in asset_keys:
        yield dg.AssetObservation(asset_key=asset_key, partition=pid, metadata=metadata)


def _raise_for(error: BaseException | None, failures: dict[str, str], partitions: int) -> None:
    """End the step: an engine error first (what was stored is already materialized), then failed partitions."""
    if isinstance(error, WanPipelineError):
        raise dg.Failure(description=str(error), allow_retries=False) from None
    if error is not None:
        raise error
    if failures:
        listing = "\n".join(f"- {pid}: {why}" for pid, why in failures.items())
        raise dg.Failure(
            description=f"{len(failures)} of {partitions} {PARTIAL_FAILURE}:\n{listing}",
            metadata={FAILED_PARTITIONS: dg.MetadataValue.json(failures), "failed_count": len(failures)},
            allow_retries=False,
        )


