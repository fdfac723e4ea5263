"""The only place this package relies on Dagster beyond its public API (checked against dagster 1.13.27).

Everything else uses what `import dagster` exports. Two things have no public form:

- **Partition-range run tags.** A run over several partitions of a multi-run backfill carries its range in two
  system tags. Dagster exports no constant for them (they are `ASSET_PARTITION_RANGE_START_TAG` / `..._END_TAG`
  in `dagster._core.storage.tags`); setting them is the way Dagster's maintainers show to launch a range run
  from Python (dagster-io/dagster discussion #11653). We keep the strings here instead of importing the private
  module; tests/test_backfill_runs.py compares them with Dagster's own, so a rename fails a test, not a run.
- **Closing a run from outside its process.** A SIGKILLed `generate` leaves its run STARTED. The webserver's
  GraphQL can terminate runs, but the CLI has no webserver; `DagsterInstance.report_run_failed` is the
  instance method the webserver and daemons use for this and is not marked public.
"""

from __future__ import annotations

import dagster as dg

PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """The run tags of a run over the partition keys first..last (inclusive, in the definition's order)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}


def mark_run_failed(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Record a run whose process is gone as failed, with why."""
    instance.report_run_failed(run, message)
