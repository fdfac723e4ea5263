"""How a backfill of the dataset's partitions is cut into runs.

This is what Dagster's asset backfill (and its automation) does for the generate assets under their
`BackfillPolicy.multi_run(N)`: the requested partitions, in the partitions definition's order, become
contiguous key ranges, and each range is cut into runs of at most N partitions; each run carries its range in
two run tags (`range_tags`). `wan-pipeline generate` and the new-prompts sensor launch exactly these runs, so the
CLI, the sensor and a UI backfill run the same chunks (tests/test_backfill_runs.py compares them with Dagster's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import dagster as dg

from wan_pipeline.assets.dagster_compat import range_tags
from wan_pipeline.planning.spec import DatasetSpec
from wan_pipeline.resources.provider import provider_resource_from_env

__all__ = ["account_concurrency", "backfill_chunks", "partitions_per_run", "range_tags"]

#: bounds of a run's size: small enough that a run is a unit worth retrying, at most an hour or so of a busy host
MIN_PARTITIONS_PER_RUN, MAX_PARTITIONS_PER_RUN = 50, 1000
#: waves of the account's concurrency one run holds
WAVES_PER_RUN = 8


def partitions_per_run(spec: DatasetSpec) -> int:
    """The partitions one run of the generate assets takes (their `BackfillPolicy.multi_run`): enough outputs for
    `WAVES_PER_RUN` waves of the account's concurrency (`max_concurrency` as the environment and the catalog set
    it, the same for the CLI and the UI's code location), within the bounds above.

    A run has a fixed cost outside the provider's shadow: in a UI backfill a new process (interpreter, imports,
    the code location, planning the table), a place in the run queue, which launches runs one after another, and
    Dagster reading every partition key to resolve its range. At a fixed 50, a backfill of 2,000 partitions at
    concurrency 64 was 40 runs of less than one wave each, and a UI backfill delivered a third of the CLI's
    throughput (benchmarks/RESULTS.md, (f)). At the catalog's usual concurrency it stays 50."""
    per_run = math.ceil(WAVES_PER_RUN * account_concurrency(spec) / max(1, spec.variants))
    return max(MIN_PARTITIONS_PER_RUN, min(MAX_PARTITIONS_PER_RUN, per_run))


def account_concurrency(spec: DatasetSpec) -> int:
    """Tasks at the host at once on the spec's provider account, as the environment and the catalog set it."""
    return provider_resource_from_env().settings(spec.provider).max_concurrency


def backfill_chunks(ordered: Sequence[str], wanted: Iterable[str], policy: dg.BackfillPolicy | None) -> list[list[str]]:
    """The runs a backfill of `wanted` makes: contiguous runs of `ordered`, each at most the policy's size.

    No policy means one run per partition (Dagster's default); a single-run policy means one run per range.
    """
    chosen = set(wanted)
    size = 1 if policy is None else policy.max_partitions_per_run
    chunks: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in chosen and (size is None or len(current) < size):
            current.append(key)
            continue
        if current:
            chunks.append(current)
        current = [key] if key in chosen else []
    if current:
        chunks.append(current)
    return chunks
