"""Run bookkeeping for the CLI: tag our in-process runs, close the ones a killed process left open, and
find the partitions the instance has not recorded.

A `generate` killed with SIGKILL leaves its Dagster run STARTED forever; the next `generate` on the same
host marks such runs failed (the ledger, not the run, is what resumes the work). Its last stored partitions
may not have reached the instance either (a partition is published moments after its last output is stored);
the next `generate` runs them again, and the engine, finding their files stored, publishes them without buying.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import dagster as dg

from wan_pipeline.assets.dagster_compat import mark_run_failed
from wan_pipeline.assets.keys import key
from wan_pipeline.planning.plan import Plan
from wan_pipeline.planning.spec import DatasetSpec

DATASET_TAG = "wan_pipeline/dataset"
HOST_TAG = "wan_pipeline/host"
PID_TAG = "wan_pipeline/pid"


def run_tags(dataset: str) -> dict[str, str]:
    return {DATASET_TAG: dataset, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_orphaned_runs(instance: dg.DagsterInstance, dataset: str) -> list[str]:
    """Mark failed the runs of this dataset whose process (on this host) is gone; returns their ids."""
    closed = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={DATASET_TAG: dataset, HOST_TAG: socket.gethostname()},
        )
    )
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            mark_run_failed(
                instance,
                run,
                f"the wan-pipeline process ({pid}) running it died; the next "
                "generate resumed its tasks from the ledger",
            )
            closed.append(run.run_id)
    return closed


def unrecorded_partitions(
    instance: dg.DagsterInstance, spec: DatasetSpec, plan: Plan, selected: list[str] | None, todo: Mapping[str, int]
) -> dict[str, int]:
    """Selected partitions whose outputs are all stored (not in `todo`) but that the instance does not show
    materialized — stored in a killed run's last moments, or an instance that is new or was wiped — each
    with 0 outputs to make: the ledger, not the instance, says what exists."""
    wanted = set(selected) if selected else None
    recorded = set(instance.get_materialized_partitions(key(spec, "media"))) & set(
        instance.get_materialized_partitions(key(spec, "generations"))
    )
    return {
        pid: 0
        for pid in plan.prompt_ids
        if pid not in todo and pid not in recorded and (wanted is None or pid in wanted)
    }
