"""Run bookkeeping for the CLI: tag our in-process runs, and close the ones a killed process left open.

A `generate` killed with SIGKILL leaves its Dagster run STARTED forever; the next `generate` on the same
host marks such runs failed (the ledger, not the run, is what resumes the work).
"""

from __future__ import annotations

import os
import socket

import dagster as dg

from wan_pipeline.assets.dagster_compat import mark_run_failed

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
