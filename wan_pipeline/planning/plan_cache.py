"""A process's memory of the plans it built: the same spec, table and reference files are planned once.

`wan-pipeline generate` executes a backfill's runs one after another in one process, and each run's step
needs the dataset's plan. Validating and planning 100,000 rows takes seconds; doing it again for each of
2,000 runs would cost more than the generation. A plan is reused only while everything it was built from
is unchanged: the spec's content, and the table's and every local reference file's (path, size, mtime).
Anything else — a different process, an edited table — plans afresh, exactly as `build_plan` would.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from wan_pipeline.planning.plan import Plan, build_plan
from wan_pipeline.planning.spec import DatasetSpec

#: plans kept per process (one per dataset being generated is the common case)
KEEP = 4

Signature = tuple[tuple[str, int, int], ...]

_plans: OrderedDict[str, tuple[Signature, Plan]] = OrderedDict()
_lock = threading.Lock()


def plan_for(spec: DatasetSpec) -> Plan:
    """`build_plan(spec)`, or the plan this process already built from identical inputs."""
    # The spec file's own hash too: a plan's provenance names those bytes, even when only a comment changed.
    key = f"{spec.base_dir}|{spec.source_sha256}|{spec.model_dump_json()}"
    with _lock:
        hit = _plans.get(key)
    if hit is not None and _signature(_files(spec, hit[1])) == hit[0]:
        return hit[1]
    plan = build_plan(spec)
    signature = _signature(_files(spec, plan))
    with _lock:
        _plans[key] = (signature, plan)
        _plans.move_to_end(key)
        while len(_plans) > KEEP:
            _plans.popitem(last=False)
    return plan


def clear() -> None:
    with _lock:
        _plans.clear()


def _files(spec: DatasetSpec, plan: Plan) -> list[Path]:
    refs = {ref.path for task in plan.tasks for ref in task.references if ref.path is not None}
    return [spec.prompts_path, *sorted(refs)]


def _signature(paths: list[Path]) -> Signature:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((str(path), -1, -1))
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)
