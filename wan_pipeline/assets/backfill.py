"""How a backfill of the dataset's partitions is cut into runs.

This is what Dagster's asset backfill (and its automation) does for the generate assets under their
`BackfillPolicy.multi_run(N)`: the requested partitions, in the partitions definition's order, become
contiguous key ranges, and each range is cut into runs of at most N partitions; each run carries its range in
two run tags (`range_tags`). `wan-pipeline generate` and the new-prompts sensor launch exactly these runs, so the
CLI, the sensor and a UI backfill run the same chunks (tests/test_backfill_runs.py compares them with Dagster's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from wan_pipeline.assets.dagster_compat import range_tags

__all__ = ["backfill_chunks", "range_tags"]


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
