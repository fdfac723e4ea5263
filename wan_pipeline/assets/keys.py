"""Asset keys and the partitions definition of one dataset (one asset group per spec)."""

from __future__ import annotations

import dagster as dg

from wan_pipeline.planning.spec import DatasetSpec


def key(spec: DatasetSpec, name: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, name])


def prompt_partitions(spec: DatasetSpec) -> dg.DynamicPartitionsDefinition:
    """One partition per prompt_id; registered by the prompt_table asset (or the sensor)."""
    return dg.DynamicPartitionsDefinition(name=spec.partitions_name)
