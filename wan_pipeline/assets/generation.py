"""generations + media: one op per run submits, polls, downloads and stores every output of the run's
partitions, concurrently, through the provider resource.

They are two assets produced by one op so each result is downloaded as soon as it is ready (result
URLs expire) and so each partition's outcome is recorded on its own: a partition is materialized
(with its metadata) as soon as all its outputs are stored; failed partitions fail the step at the
end with the reason for each, leaving the successful ones materialized.
"""

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from wan_pipeline.assets.keys import key, prompt_partitions
from wan_pipeline.errors import WanPipelineError
from wan_pipeline.execution.engine import Outcome
from wan_pipeline.execution.session import open_session
from wan_pipeline.outputs.media import thumbnail_data_uri
from wan_pipeline.outputs.storage import Storage, relpath_of
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import DatasetSpec, load_spec
from wan_pipeline.resources.provider import ProviderResource
from wan_pipeline.resources.storage import StorageResource

MAX_PARTITIONS_PER_RUN = 50
#: in the step failure of a run where some partitions failed and the others were materialized
PARTIAL_FAILURE = "partition(s) failed; the others are materialized"


def build_generation_assets(spec: DatasetSpec, spec_path: Path) -> dg.AssetsDefinition:
    partitions = prompt_partitions(spec)
    gen_key, media_key = key(spec, "generations"), key(spec, "media")

    @dg.multi_asset(
        name=f"{spec.name}_generate",
        specs=[
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
                media_key,
                deps=[gen_key],
                partitions_def=partitions,
                group_name=spec.name,
                skippable=True,
                kinds={"s3" if spec.is_s3 else "file", "image"},
                description="Downloaded, verified and stored media files with SHA-256.",
            ),
        ],
        backfill_policy=dg.BackfillPolicy.multi_run(MAX_PARTITIONS_PER_RUN),
        can_subset=False,
    )
    def generate(
        context: dg.AssetExecutionContext, provider: ProviderResource, storage: StorageResource
    ) -> Iterator[dg.AssetMaterialization]:
        # A generator yielding per-partition materializations and no outputs (the specs are skippable):
        # a partition is materialized only when every output of it is stored.
        try:
            current = load_spec(spec_path)
            plan = build_plan(current)
        except WanPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        keys = list(context.partition_keys)
        tasks = [t for k in keys for t in plan.tasks_for(k)]
        unknown = [k for k in keys if not plan.tasks_for(k)]
        context.log.info(f"{len(keys)} partition(s), {len(tasks)} output(s) via {current.provider}/{current.model}")

        def log_event(kind: str, task: object, detail: str) -> None:
            context.log.debug(f"{kind} {getattr(task, 'prompt_id', '?')}/v{getattr(task, 'variant', '?')}: {detail}")

        store = storage.for_spec(current)

        async def run() -> list[Outcome]:
            async with open_session(
                current, provider.settings(current.provider), run_id=context.run_id, on_event=log_event, storage=store
            ) as session:
                context.log.info(f"endpoint: {session.endpoint.describe()}")
                return await session.engine.run(tasks)

        try:
            outcomes = asyncio.run(run())
        except WanPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

        by_prompt: dict[str, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            by_prompt[o.task.prompt_id].append(o)
        failures: dict[str, str] = {k: "prompt_id is no longer in the prompt table" for k in unknown}
        for pid in keys:
            group = by_prompt.get(pid, [])
            if not group:
                continue
            bad = [o for o in group if o.status != "stored"]
            if bad:
                failures[pid] = "; ".join(f"v{o.task.variant}: {o.error}" for o in bad)
                continue
            gen_meta, media_meta = _partition_metadata(group, store)
            yield dg.AssetMaterialization(asset_key=gen_key, partition=pid, metadata=gen_meta)
            yield dg.AssetMaterialization(asset_key=media_key, partition=pid, metadata=media_meta)
        if failures:
            listing = "\n".join(f"- {pid}: {why}" for pid, why in failures.items())
            raise dg.Failure(
                description=(
                    f"{len(failures)} of {len(keys)} {PARTIAL_FAILURE}:\n{listing}"
                ),
                metadata={"failed_partitions": dg.MetadataValue.md(listing), "failed_count": len(failures)},
                allow_retries=False,
            )

    return generate


def _partition_metadata(group: list[Outcome], store: Storage) -> tuple[dict[str, Any], dict[str, Any]]:
    attempts = [o.attempt for o in group if o.attempt is not None]
    latencies = [o.latency_s for o in group if o.latency_s is not None]
    gen: dict[str, Any] = {
        "status": "succeeded",
        "task_ids": ", ".join(a.task_id or "-" for a in attempts),
        "attempts": ", ".join(str(a.attempt) for a in attempts),
        "credits_reserved": float(sum(a.credits_reserved or 0 for a in attempts)),
        "credits_final": float(sum(a.credits_final or 0 for a in attempts)),
        "submitted_in_this_run": sum(o.submitted_now for o in group),
        "latency_s": round(max(latencies), 3) if latencies else dg.MetadataValue.null(),
        "seeds": ", ".join(str(o.task.seed) for o in group),
    }
    outputs = [out for o in group for out in o.outputs]
    media: dict[str, Any] = {
        "files": len(outputs),
        "output_uri": outputs[0].media_uri if outputs else "",
        "output_uris": dg.MetadataValue.md("\n".join(f"- `{o.media_uri}`" for o in outputs)),
        "sha256": ", ".join(o.media_sha256[:16] for o in outputs),
        "size": ", ".join(f"{o.width}x{o.height}" for o in outputs),
        "bytes": int(sum(o.bytes for o in outputs)),
    }
    first = outputs[0] if outputs else None
    if first is not None:
        rel = relpath_of(store, first.media_uri)
        try:
            data = store.get(rel) if rel else b""
            media["thumbnail"] = dg.MetadataValue.md(f"![thumbnail]({thumbnail_data_uri(data)})")
        except Exception as exc:  # a thumbnail is a nicety; never fail a paid output over it
            media["thumbnail"] = f"unavailable: {type(exc).__name__}"
    return gen, media
