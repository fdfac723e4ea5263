"""Declarative automation (assets/automation.py), evaluated as the refresh sensor would on each tick.

A new dataset: its prompt table (free) is requested with lineage and the report, never the generation.
After a generation run launched anywhere (here: the job, as a UI backfill would), lineage, its four checks
and the report are requested. After a run that already refreshed them (as the CLI does), nothing is.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from e2e_helpers import copy_examples

from wan_pipeline.assets.dataset import generate_job_name, lineage_job_name, prompt_table_job_name
from wan_pipeline.definitions import build_definitions
from wan_pipeline.planning.spec import load_spec


def _requested(result: dg.EvaluateAutomationConditionsResult) -> set[str]:
    return {key.to_user_string() for key in result._requested_partitions_by_asset_key}


def test_lineage_follows_generation_however_launched(fast_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec_path = copy_examples(tmp_path)
    spec = load_spec(spec_path)
    defs = build_definitions([spec_path])
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert _requested(first) == {"demo/prompt_table", "demo/lineage", "demo/report"}
        assert first.total_requested == 3 + 4  # and the four lineage checks
        assert defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance).success
        assert defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance).success
        settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert settled.total_requested == 0

        gen = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(instance=instance,
                                                                               partition_key="fox_dawn")
        assert gen.success
        after_gen = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
        assert _requested(after_gen) == {"demo/lineage", "demo/report"}  # never generations or media
        assert after_gen.total_requested == 2 + 4

        # The refresh ran (the CLI runs lineage + report right after generating): nothing is requested twice.
        assert defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance).success
        assert defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
            instance=instance, partition_key="tea_house").success
        assert defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance).success
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_gen.cursor)
        assert quiet.total_requested == 0
