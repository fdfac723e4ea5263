"""The runs `generate` and the sensor launch are the runs Dagster's own backfill makes under the assets' policy."""

from __future__ import annotations

import random
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import _build_run_requests_with_backfill_policy
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage import tags as dagster_tags

from wan_pipeline.assets.backfill import backfill_chunks, range_tags
from wan_pipeline.assets.dagster_compat import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from wan_pipeline.assets.generation import MAX_PARTITIONS_PER_RUN

KEYS = [f"prompt_{i:03d}" for i in range(120)]
PARTITIONS = dg.DynamicPartitionsDefinition(name="prompts")


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions("prompts", KEYS)
        yield inst


def test_range_tags_are_dagsters_own() -> None:
    # The one thing taken from Dagster's private modules (see assets/dagster_compat.py): checked, not trusted.
    assert PARTITION_RANGE_START_TAG == dagster_tags.ASSET_PARTITION_RANGE_START_TAG
    assert PARTITION_RANGE_END_TAG == dagster_tags.ASSET_PARTITION_RANGE_END_TAG


def _dagsters_chunks(
    instance: dg.DagsterInstance, wanted: set[str], policy: dg.BackfillPolicy
) -> list[tuple[str, str]]:
    with partition_loading_context(dynamic_partitions_store=instance):
        requests = _build_run_requests_with_backfill_policy(
            [dg.AssetKey("media")], [], policy, frozenset(wanted), PARTITIONS, tags={},
            dynamic_partitions_store=instance,
        )
    return [(r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG]) for r in requests]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("policy", [dg.BackfillPolicy.multi_run(MAX_PARTITIONS_PER_RUN), dg.BackfillPolicy.multi_run(7),
                                    dg.BackfillPolicy.single_run()], ids=["generate", "seven", "single"])
def test_chunks_match_dagsters_backfill(instance: dg.DagsterInstance, policy: dg.BackfillPolicy, seed: int) -> None:
    rng = random.Random(seed)
    # Holes of every size: some partitions already stored, the rest still to make.
    wanted = {k for k in KEYS if rng.random() < [0.2, 0.5, 0.9, 0.97, 1.0, 0.05][seed]}
    ours = backfill_chunks(KEYS, wanted, policy)
    assert [(c[0], c[-1]) for c in ours] == _dagsters_chunks(instance, wanted, policy)
    assert sorted(k for c in ours for k in c) == sorted(wanted)
    size = policy.max_partitions_per_run
    assert all(size is None or len(c) <= size for c in ours)
    for chunk in ours:  # each run is one contiguous range: exactly its keys lie between its ends
        lo, hi = KEYS.index(chunk[0]), KEYS.index(chunk[-1])
        assert KEYS[lo : hi + 1] == chunk


def test_without_a_policy_each_partition_is_its_own_run() -> None:
    assert backfill_chunks(KEYS[:5], {KEYS[1], KEYS[3]}, None) == [[KEYS[1]], [KEYS[3]]]
    assert range_tags("a", "b") == {PARTITION_RANGE_START_TAG: "a", PARTITION_RANGE_END_TAG: "b"}
