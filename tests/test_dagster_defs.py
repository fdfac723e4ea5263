"""The real Dagster definitions, loaded and materialized in-process on an ephemeral instance.

prompt_table registers one dynamic partition per prompt; the generate job runs a partition *range*
(as a multi-run backfill does); lineage and its four checks follow. Partial failures leave the good
partitions materialized and name the bad ones; a re-run resubmits only what may be bought again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from e2e_helpers import (
    copy_examples,
    emulator_state_file,
    read_emulator_state,
    read_lineage,
    sha256_file,
)

from wan_pipeline.assets.dataset import generate_job_name, lineage_job_name, prompt_table_job_name
from wan_pipeline.definitions import build_definitions
from wan_pipeline.planning.spec import load_spec

DEMO_PROMPTS = ["fox_dawn", "tea_house", "panorama", "skyscraper", "portrait", "phone_wall", "cinema", "product",
                "robot", "market", "logo_free", "bakery"]
CHECKS = {"outputs_exist_and_decode", "every_planned_output_stored", "no_identity_submitted_twice",
          "spend_within_budget"}


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return copy_examples(tmp_path)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def _materialized(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(["demo", asset])))


def _materializations(result: Any, asset: str) -> dict[str, dg.AssetMaterialization]:
    out: dict[str, dg.AssetMaterialization] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey(["demo", asset]):
            assert mat.partition not in out, f"{asset}/{mat.partition} materialized twice in one run"
            out[mat.partition] = mat
    return out


def _checks(result: Any) -> dict[str, Any]:
    return {ev.check_name: ev for ev in result.get_asset_check_evaluations()}


def _failure_description(result: Any) -> str:
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                texts.append(data.user_failure_data.description)
            elif data.error:
                texts.append(data.error.message)
    return "\n".join(texts)


def _emulator_tasks(spec_path: Path) -> list[dict[str, Any]]:
    return list(read_emulator_state(emulator_state_file(spec_path))["tasks"].values())


# -- loading -------------------------------------------------------------------------------------


def test_definitions_resolve(fast_env: pytest.MonkeyPatch, spec_path: Path) -> None:
    defs = build_definitions([spec_path])
    graph = defs.resolve_asset_graph()
    keys = {tuple(k.path) for k in graph.get_all_asset_keys()}
    assert keys == {("demo", "prompt_table"), ("demo", "generations"), ("demo", "media"), ("demo", "lineage"),
                    ("demo", "report"), ("demo", "export")}

    for name in ("generations", "media"):
        node = graph.get(dg.AssetKey(["demo", name]))
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == "demo_prompts"
        policy = node.backfill_policy
        assert policy is not None and policy.policy_type == BackfillPolicyType.MULTI_RUN
        assert policy.max_partitions_per_run is not None and policy.max_partitions_per_run > 1
    for name in ("prompt_table", "lineage", "report", "export"):
        assert graph.get(dg.AssetKey(["demo", name])).partitions_def is None
    # What costs nothing follows on its own; what spends money (and the export, which copies) never does.
    for name in ("prompt_table", "lineage", "report"):
        assert graph.get(dg.AssetKey(["demo", name])).automation_condition is not None, name
    for name in ("generations", "media", "export"):
        assert graph.get(dg.AssetKey(["demo", name])).automation_condition is None, name
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"demo"}

    lineage = dg.AssetKey(["demo", "lineage"])
    check_keys = set(graph.asset_check_keys)
    assert {(k.asset_key, k.name) for k in check_keys} == {(lineage, c) for c in CHECKS}

    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"demo_prompt_table_job", "demo_generate_job", "demo_lineage_job"} <= jobs
    gen_job = defs.resolve_job_def("demo_generate_job")
    assert isinstance(gen_job.partitions_def, dg.DynamicPartitionsDefinition)
    assert gen_job.partitions_def.name == "demo_prompts"

    sensor = defs.resolve_sensor_def("demo_new_prompts")
    assert sensor.job_name == "demo_generate_job"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert [s.name for s in defs.sensors or []] == ["demo_new_prompts", "demo_refresh"]
    refresh = defs.resolve_sensor_def("demo_refresh")
    assert refresh.default_status == dg.DefaultSensorStatus.RUNNING
    # What a code server (`dagster dev`) does on load: job and op names must not collide.
    dg.Definitions.validate_loadable(defs)


# -- materializing -------------------------------------------------------------------------------


def test_partition_range_then_lineage_with_checks(
    fast_env: pytest.MonkeyPatch, spec_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions([spec_path])
    spec = load_spec(spec_path)

    pt = defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance)
    assert pt.success
    assert list(instance.get_dynamic_partitions("demo_prompts")) == DEMO_PROMPTS
    [pt_mat] = [e.step_materialization_data.materialization for e in pt.get_asset_materialization_events()]
    assert pt_mat.metadata["rows"].value == 12
    assert pt_mat.metadata["planned_outputs"].value == 24
    assert pt_mat.metadata["new_partitions"].value == 12
    assert not emulator_state_file(spec_path).exists()  # planning spends nothing

    # Re-running prompt_table registers nothing new.
    pt2 = defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance)
    [pt2_mat] = [e.step_materialization_data.materialization for e in pt2.get_asset_materialization_events()]
    assert pt2_mat.metadata["new_partitions"].value == 0
    assert len(instance.get_dynamic_partitions("demo_prompts")) == 12

    in_range = DEMO_PROMPTS[1:5]  # tea_house .. portrait
    gen = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
        instance=instance, tags=_range_tags(in_range[0], in_range[-1]), raise_on_error=False)
    assert gen.success, _failure_description(gen)

    gens, media = _materializations(gen, "generations"), _materializations(gen, "media")
    assert set(gens) == set(in_range)
    assert set(media) == set(in_range)
    tasks = _emulator_tasks(spec_path)
    assert len(tasks) == 2 * len(in_range)  # two variants per prompt, each bought once
    emulator_ids = {t["id"] for t in tasks}
    for pid in in_range:
        g, m = gens[pid].metadata, media[pid].metadata
        assert {"status", "task_ids", "credits_final"} <= set(g)
        assert {"output_uri", "thumbnails", "gallery", "sha256"} <= set(m)
        assert g["status"].value == "succeeded"
        task_ids = [t.strip() for t in g["task_ids"].value.split(",")]
        assert len(task_ids) == 2 and set(task_ids) <= emulator_ids
        assert g["credits_final"].value == 10.0  # 2 outputs x 5 credits
        output = Path(m["output_uri"].value)
        assert output.is_file() and output.parent.name == pid
        assert m["files"].value == 2
        # every output: a visible thumbnail and a link to its gallery entry; full digests, one per output
        assert m["thumbnails"].value.count("](data:image/jpeg;base64,") == 2
        assert m["thumbnails"].value.count("gallery.html#out-") == 2
        digests = m["sha256"].value.split("\n")
        assert len(digests) == 2 and all(len(d) == 64 for d in digests)
        # ... and each one shown in place: the UI renders markdown under 1,000 characters inline
        for variant in (0, 1):
            preview = m[f"preview_v{variant}_0"].value
            assert preview.startswith("[![preview](data:image/webp;base64,") and len(preview) < 1000
            assert f"gallery.html#out-{pid}-v{variant}-0" in preview
        assert m["gallery"].value.startswith("file://") and f"#out-{pid}-v0-0" in m["gallery"].value
    assert _materialized(instance, "generations") == set(in_range)
    assert _materialized(instance, "media") == set(in_range)

    # Lineage now: the outputs that exist check out; the table is not complete yet (a warning).
    lin = defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance, raise_on_error=False)
    assert lin.success
    checks = _checks(lin)
    assert set(checks) == CHECKS
    assert checks["outputs_exist_and_decode"].passed
    assert checks["outputs_exist_and_decode"].metadata["files_checked"].value == 8
    assert checks["no_identity_submitted_twice"].passed
    assert checks["spend_within_budget"].passed
    assert checks["spend_within_budget"].metadata["committed_credits"].value == 40.0
    incomplete = checks["every_planned_output_stored"]
    assert not incomplete.passed
    assert incomplete.severity == dg.AssetCheckSeverity.WARN
    assert incomplete.metadata["planned"].value == 24
    missing_outputs = [x.strip() for x in incomplete.metadata["planned_outputs"].value.split(",")]
    assert len(missing_outputs) == 16
    assert {m.split("/")[0] for m in missing_outputs} == set(DEMO_PROMPTS) - set(in_range)

    # The rest of the table, in two ranges around the first one.
    for first, last in ((DEMO_PROMPTS[0], DEMO_PROMPTS[0]), (DEMO_PROMPTS[5], DEMO_PROMPTS[-1])):
        rest = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
            instance=instance, tags=_range_tags(first, last), raise_on_error=False)
        assert rest.success, _failure_description(rest)
    assert _materialized(instance, "generations") == set(DEMO_PROMPTS)
    assert _materialized(instance, "media") == set(DEMO_PROMPTS)
    assert len(_emulator_tasks(spec_path)) == 24

    lin = defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance, raise_on_error=False)
    assert lin.success
    mats = {e.asset_key.path[-1]: e.step_materialization_data.materialization
            for e in lin.get_asset_materialization_events()}
    assert set(mats) == {"lineage", "report"}  # the gallery follows lineage in the same job
    lin_mat = mats["lineage"]
    gallery = Path(lin_mat.metadata["gallery"].value)
    assert gallery == Path(mats["report"].metadata["gallery"].value) and gallery.is_file()
    assert mats["report"].metadata["outputs"].value == 24
    assert lin_mat.metadata["rows"].value == 24
    assert lin_mat.metadata["succeeded"].value == 24
    assert lin_mat.metadata["failed"].value == 0
    assert lin_mat.metadata["credits_final"].value == 120.0
    checks = _checks(lin)
    assert set(checks) == CHECKS
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items() if not c.passed}
    assert checks["outputs_exist_and_decode"].metadata["files_checked"].value == 24
    # the 8 checked before are unchanged; the 16 new ones were hashed and decoded as this process stored them
    # (`outputs.verified`): none is read again
    assert checks["outputs_exist_and_decode"].metadata["files_read"].value == 0
    # The instance recorded the same evaluations.
    for name in CHECKS:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["demo", "lineage"]), name)])
        [execution] = record.values()
        assert execution.status.value == "SUCCEEDED", name

    # Run config `full: true` rebuilds the lineage and re-reads every file.
    full = {"ops": {"demo__lineage": {"config": {"full": True}},
                    "demo__lineage_outputs_exist_and_decode": {"config": {"full": True}}}}  # fmt: skip
    lin = defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance, run_config=full)
    assert _checks(lin)["outputs_exist_and_decode"].metadata["files_read"].value == 24

    frame = read_lineage(spec_path)
    assert len(frame) == 24 and set(frame["status"]) == {"succeeded"}
    for uri, digest in zip(frame["media_uri"], frame["media_sha256"], strict=True):
        assert sha256_file(uri) == digest


def _fault_env(monkeypatch: pytest.MonkeyPatch, faults: dict[str, Any]) -> None:
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05, "faults": faults}))
    monkeypatch.setenv("WAN_PIPELINE_GENERATION_ATTEMPTS", "1")
    monkeypatch.setenv("WAN_PIPELINE_MAX_CONCURRENCY", "1")  # the first task created is the first partition's


@pytest.mark.parametrize("fault", ["reject_content", "fail_task"])
def test_partial_failure_keeps_the_good_partitions(
    fast_env: pytest.MonkeyPatch, spec_path: Path, instance: dg.DagsterInstance, fault: str
) -> None:
    _fault_env(fast_env, {fault: {"next": 1}})
    defs = build_definitions([spec_path])
    spec = load_spec(spec_path)
    assert defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance).success

    in_range = DEMO_PROMPTS[2:5]  # panorama, skyscraper, portrait
    failed, good = in_range[0], in_range[1:]
    tags = _range_tags(in_range[0], in_range[-1])
    run = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False)
    assert not run.success
    description = _failure_description(run)
    assert "1 of 3 partition(s) failed" in description
    assert f"- {failed}: v0:" in description
    for pid in good:
        assert f"- {pid}:" not in description
    expected_code = "content_policy_violation" if fault == "reject_content" else "generation_failed"
    assert expected_code in description
    assert set(_materializations(run, "generations")) == set(good)
    assert set(_materializations(run, "media")) == set(good)
    assert _materialized(instance, "generations") == set(good)
    assert _materialized(instance, "media") == set(good)

    tasks = _emulator_tasks(spec_path)
    assert len(tasks) == 6  # 3 prompts x 2 variants, each created once
    assert sorted(t["outcome"] for t in tasks) == ["failed"] + ["succeeded"] * 5
    [bad] = [t for t in tasks if t["outcome"] == "failed"]
    assert bad["client_ref"] == f"demo/{failed}/v0"
    assert bad["error_code"] == expected_code

    # The failed attempt is in lineage, unbilled (the emulator refunded it).
    state = read_emulator_state(emulator_state_file(spec_path))
    assert state["charged"] - state["refunded"] == 25.0
    lin = defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance, raise_on_error=False)
    frame = read_lineage(spec_path)
    assert sorted(frame["status"]) == ["failed"] + ["succeeded"] * 5
    failed_row = frame[frame["status"] == "failed"].iloc[0]
    assert (failed_row["prompt_id"], failed_row["variant"], failed_row["error_code"]) == (failed, 0, expected_code)
    assert failed_row["credits_final"] == 0.0
    assert frame["credits_final"].sum() == state["charged"] - state["refunded"]
    assert _checks(lin)["no_identity_submitted_twice"].passed

    # Re-run the same range without faults.
    _fault_env(fast_env, {})
    defs = build_definitions([spec_path])
    again = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False)
    tasks = _emulator_tasks(spec_path)
    if fault == "reject_content":
        # A content rejection is permanent: nothing is bought again, the partition stays failed.
        assert not again.success
        assert f"- {failed}: v0:" in _failure_description(again)
        assert len(tasks) == 6
        assert _materialized(instance, "generations") == set(good)
    else:
        # A provider-side failure is resubmitted (attempt 2, new key); the stored outputs are not.
        assert again.success, _failure_description(again)
        assert len(tasks) == 7
        new = [t for t in tasks if t["outcome"] == "succeeded" and t["client_ref"] == f"demo/{failed}/v0"]
        assert len(new) == 1
        assert new[0]["idempotency_key"] != bad["idempotency_key"]
        assert set(_materializations(again, "generations")) == set(in_range)
        assert _materialized(instance, "generations") == set(in_range)
        assert _materialized(instance, "media") == set(in_range)
        gen_meta = _materializations(again, "generations")
        assert gen_meta[failed].metadata["submitted_in_this_run"].value == 1
        assert all(gen_meta[p].metadata["submitted_in_this_run"].value == 0 for p in good)
        assert gen_meta[failed].metadata["attempts"].value == "2, 1"
    # Nothing outside the range was ever touched.
    assert {t["client_ref"].split("/")[1] for t in tasks} == set(in_range)
    keys = [t["idempotency_key"] for t in tasks]
    assert len(keys) == len(set(keys))


def test_sensor_adds_only_new_rows(fast_env: pytest.MonkeyPatch, spec_path: Path,
                                   instance: dg.DagsterInstance) -> None:
    defs = build_definitions([spec_path])
    spec = load_spec(spec_path)
    sensor = defs.resolve_sensor_def("demo_new_prompts")
    assert defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance).success

    # Every prompt is already a partition: nothing to request, but the cursor records the table.
    first = sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(first, dg.SensorResult)
    assert first.run_requests == [] and first.dynamic_partitions_requests == []
    assert isinstance(sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor)), dg.SkipReason)

    table = spec_path.parent / "prompts.csv"
    with table.open("a", encoding="utf-8") as fh:
        fh.write('new_row,"A lone kite over a green hill",,,,,landscape\n')
    result = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests  # a run over the new partitions, chunked as a backfill would
    assert request.partition_key_range == dg.PartitionKeyRange("new_row", "new_row")
    [add] = result.dynamic_partitions_requests
    assert (add.partitions_def_name, list(add.partition_keys)) == ("demo_prompts", ["new_row"])
    assert result.cursor != first.cursor

    # A row that does not validate adds nothing (and spends nothing).
    with table.open("a", encoding="utf-8") as fh:
        fh.write('bad_row,"A kite",7:5,,,,landscape\n')
    skipped = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert isinstance(skipped, dg.SkipReason)
    assert "does not validate" in (skipped.skip_message or "")
    assert not emulator_state_file(spec_path).exists()
