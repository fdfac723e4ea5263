"""Declarative automation for the assets that cost nothing: the prompt table, lineage, the gallery.

Lineage (with its checks) and the report follow the media however a generation run was launched (the
CLI, a UI backfill, the sensor, `dg launch`), so what the UI shows is never older than what is stored.
The prompt table is validated and its partitions registered as soon as a dataset is loaded, so a
never-run group shows its prompts as missing instead of a healthy-looking "0 partitions". Nothing here
ever submits a task: generation stays an explicit decision (a launch, a backfill, or the opt-in sensor).
"""

from __future__ import annotations

import dagster as dg

from wan_pipeline.assets.keys import key
from wan_pipeline.planning.spec import DatasetSpec

#: Once when first seen missing, and after any update of an upstream asset (any partition of it), until the
#: asset is requested or updated. An update and a refresh in the same interval (the CLI runs lineage right
#: after generating) cancel out: `since` lets the reset win, so nothing runs twice.
REFRESH = (dg.AutomationCondition.missing().newly_true() | dg.AutomationCondition.any_deps_updated()).since(
    dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
) & ~dg.AutomationCondition.in_progress()


def build_refresh_sensor(spec: DatasetSpec) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the conditions above for this dataset; running by default (it never spends money)."""
    selection = dg.AssetSelection.assets(key(spec, "prompt_table"), key(spec, "lineage"), key(spec, "report"))
    return dg.AutomationConditionSensorDefinition(
        f"{spec.name}_refresh",
        target=selection,  # with the lineage checks: an asset selection includes its checks
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Validates the prompt table, then keeps lineage, its checks and the gallery up to date.",
    )
