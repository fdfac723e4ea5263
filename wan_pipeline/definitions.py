"""The code location: one asset group per spec named by WAN_PIPELINE_SPECS (paths or globs, ':'-separated;
default: the examples shipped with the project), plus the shared resources."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import dagster as dg

from wan_pipeline.assets.dataset import dataset_definitions
from wan_pipeline.resources.provider import provider_resource_from_env
from wan_pipeline.resources.storage import StorageResource

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def spec_paths(env: str | None = None) -> list[Path]:
    raw = os.environ.get("WAN_PIPELINE_SPECS", "") if env is None else env
    patterns = [p for p in raw.split(os.pathsep) if p.strip()] or [str(EXAMPLES / "*.yaml")]
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern))) if any(c in pattern for c in "*?[") else [pattern]
        found.extend(Path(m).resolve() for m in matches)
    return list(dict.fromkeys(found))


def resources() -> dict[str, object]:
    return {
        "provider": provider_resource_from_env(),
        "storage": StorageResource(
            s3_endpoint_url=os.environ.get("WAN_PIPELINE_S3_ENDPOINT_URL") or None,
            s3_region=os.environ.get("AWS_REGION") or None,
        ),
    }


def build_definitions(paths: list[Path] | None = None) -> dg.Definitions:
    per_spec = [dataset_definitions(p) for p in (paths if paths is not None else spec_paths())]
    return dg.Definitions.merge(*per_spec, dg.Definitions(resources=resources()))


defs = build_definitions()
