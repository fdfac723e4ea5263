"""The code location: one asset group per spec named by WAN_PIPELINE_SPECS (paths or globs, ':'-separated;
default: the demo spec shipped in ``examples/``), each built by the WanDataset component, plus the shared
resources. The other examples load only when named (e.g. ``WAN_PIPELINE_SPECS='examples/*.yaml'``)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import dagster as dg

from wan_pipeline.component import WanDataset
from wan_pipeline.resources.environment import resources_from_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_SPECS = str(EXAMPLES / "demo.yaml")


def spec_paths(env: str | None = None) -> list[Path]:
    raw = os.environ.get("WAN_PIPELINE_SPECS", "") if env is None else env
    patterns = [p for p in raw.split(os.pathsep) if p.strip()] or [DEFAULT_SPECS]
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern))) if any(c in pattern for c in "*?[") else [pattern]
        found.extend(Path(m).resolve() for m in matches)
    return list(dict.fromkeys(found))


def resources() -> dict[str, object]:
    return dict(resources_from_env())


def build_definitions(paths: list[Path] | None = None) -> dg.Definitions:
    per_spec = [
        WanDataset(spec=str(p)).build_dataset_defs(p.parent, str(p))
        for p in (paths if paths is not None else spec_paths())
    ]
    # Runs execute their steps in the run's own process. Dagster's default, a new process per step, gains nothing
    # here (a generation run is one op whose tasks run concurrently inside it; the other assets are a chain) and
    # cost each run launched from the UI or a backfill a second interpreter loading the code location before its
    # step began (one run of 300 outputs: 16.8 -> 13.4 s, benchmarks/RESULTS.md, (f)).
    return dg.Definitions.merge(
        *per_spec, dg.Definitions(resources=resources_from_env(), executor=dg.in_process_executor)
    )


defs = build_definitions()
