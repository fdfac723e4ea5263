"""Dagster Definitions for one dataset spec: its asset group, checks, jobs and sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from wan_pipeline.assets.automation import build_refresh_sensor
from wan_pipeline.assets.generation import build_generation_assets
from wan_pipeline.assets.keys import key, prompt_partitions
from wan_pipeline.assets.lineage import build_lineage_asset
from wan_pipeline.assets.prompt_table import build_prompt_table_asset
from wan_pipeline.assets.report import build_export_asset, build_report_asset
from wan_pipeline.assets.sensors import build_new_prompts_sensor
from wan_pipeline.planning.spec import DatasetSpec, SpecSource


# Job names must differ from every op name: an asset's op is named after its key ("demo__lineage"), and a
# job of the same name makes the code location fail to load (conflicting graph/op definitions).
def prompt_table_job_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_prompt_table_job"


def generate_job_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_generate_job"


def lineage_job_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_lineage_job"


def dataset_definitions(source: SpecSource | str | Path) -> dg.Definitions:
    """One dataset's group; `source` is a spec file's path or a SpecSource (a file or inline fields)."""
    if not isinstance(source, SpecSource):
        source = SpecSource.from_file(source)
    spec = source.load()
    lineage_asset, *checks = build_lineage_asset(spec, source)
    generation_assets = build_generation_assets(spec, source)
    generate_job = dg.define_asset_job(
        generate_job_name(spec),
        selection=dg.AssetSelection.assets(key(spec, "generations"), key(spec, "media")),
        partitions_def=prompt_partitions(spec),
        description="Submit, poll, download and store the selected prompt partitions.",
    )
    return dg.Definitions(
        assets=[
            build_prompt_table_asset(spec, source),
            generation_assets,
            lineage_asset,
            build_report_asset(spec, source),
            build_export_asset(spec, source),
        ],
        asset_checks=checks,
        jobs=[
            dg.define_asset_job(
                prompt_table_job_name(spec), selection=dg.AssetSelection.assets(key(spec, "prompt_table"))
            ),
            generate_job,
            # Selecting the asset includes its checks, which run right after it; the gallery follows.
            dg.define_asset_job(
                lineage_job_name(spec), selection=dg.AssetSelection.assets(key(spec, "lineage"), key(spec, "report"))
            ),
        ],
        sensors=[
            build_new_prompts_sensor(spec, source, generate_job.name, generation_assets.backfill_policy),
            build_refresh_sensor(spec),
        ],
    )
