"""The resources every dataset's assets need, configured from the environment.

Several datasets (several WanDataset components, or several specs in one code location) each bind the
same two resource keys. ``dg.Definitions.merge`` accepts that only when the values are the very same
objects, so one environment yields one pair of objects (cached by the variables that configure them).
"""

from __future__ import annotations

import functools
import os

import dagster as dg

from wan_pipeline.resources.provider import provider_resource_from_env
from wan_pipeline.resources.storage import StorageResource

_STORAGE_VARS = ("WAN_PIPELINE_S3_ENDPOINT_URL", "AWS_REGION")


def resources_from_env() -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    snapshot = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith("WAN_PIPELINE_") or k in _STORAGE_VARS)
    )
    return dict(_resources(snapshot))


@functools.lru_cache(maxsize=16)
def _resources(snapshot: tuple[tuple[str, str], ...]) -> tuple[tuple[str, dg.ConfigurableResource], ...]:  # type: ignore[type-arg]
    env = dict(snapshot)
    storage = StorageResource(
        s3_endpoint_url=env.get("WAN_PIPELINE_S3_ENDPOINT_URL") or None, s3_region=env.get("AWS_REGION") or None
    )
    return (("provider", provider_resource_from_env()), ("storage", storage))
