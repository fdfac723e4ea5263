"""The runs `generate` and the sensor launch are the runs Dagster's own backfill makes under the assets' policy."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from conftest import write_dataset
from dagster._core.definitions.automation_tick_evaluation_context import _build_run_requests_with_backfill_policy
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage import tags as dagster_tags

from wan_pipeline.assets.backfill import MIN_PARTITIONS_PER_RUN, backfill_chunks, partitions_per_run, range_tags
from wan_pipeline.assets.dagster_compat import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from wan_pipeline.assets.dataset import dataset_definitions
from wan_pipeline.assets.keys import key
from wan_pipeline.definitions import resources
from wan_pipeline.planning.spec import load_spec

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
@pytest.mark.parametrize("policy", [dg.BackfillPolicy.multi_run(MIN_PARTITIONS_PER_RUN), dg.BackfillPolicy.multi_run(7),
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


@pytest.mark.parametrize(
    ("provider", "concurrency", "variants", "per_run"),
    [("dashscope", None, 1, 50), ("runware", None, 1, 256), ("dashscope", 64, 1, 512), ("dashscope", 64, 2, 256),
     ("dashscope", 2, 1, 50), ("dashscope", 500, 1, 1000)],
)  # fmt: skip
def test_a_run_holds_eight_waves_of_the_accounts_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, concurrency: int | None, variants: int,
    per_run: int,
) -> None:
    """The catalog's concurrency (dashscope 4, runware 32) or the environment's, times 8 waves, per variant,
    within 50..1000 partitions; the generate assets' backfill policy is that size."""
    if concurrency is None:
        monkeypatch.delenv("WAN_PIPELINE_MAX_CONCURRENCY", raising=False)
    else:
        monkeypatch.setenv("WAN_PIPELINE_MAX_CONCURRENCY", str(concurrency))
    model = "wan2.7-image" if provider == "dashscope" else "alibaba:wan@2.7-image"
    spec_path = write_dataset(tmp_path, [{"prompt_id": "a", "prompt": "a paper boat"}], provider=provider,
                              model=model, variants=variants)  # fmt: skip
    spec = load_spec(spec_path)
    assert partitions_per_run(spec) == per_run
    defs = dg.Definitions.merge(dataset_definitions(spec_path), dg.Definitions(resources=resources()))
    policy = defs.resolve_assets_def(key(spec, "media")).backfill_policy
    assert policy is not None and policy.max_partitions_per_run == per_run
