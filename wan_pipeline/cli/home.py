"""The Dagster instance the CLI records into: the same one `wan-pipeline ui` opens."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DAGSTER_HOME = Path.home() / ".wan_pipeline" / "dagster_home"
_MARKER = "# created by wan-pipeline"

#: Dagster's SQLite storage, with two choices made for a run of thousands of partitions (docs/performance.md):
#: the event log keeps its connections (`assets.dagster_compat.PooledSqliteEventLogStorage`, same files and
#: schema), and stdout/stderr are not captured per step (the steps log through the event log), because
#: capturing redirects the whole process's file descriptors and `generate` runs several ranges at once. The run
#: queue looks for queued runs every second instead of five: a UI backfill's runs waited up to 5 s to launch.
_CONFIG = """{marker}; Dagster's SQLite storage lives beside it (docs/performance.md says why these)
telemetry:
  enabled: false
event_log_storage:
  module: wan_pipeline.assets.dagster_compat
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {runs}
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
run_queue:
  dequeue_interval_seconds: 1
"""


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME if set, else ~/.wan_pipeline/dagster_home: the same instance `wan-pipeline ui` opens.

    A dagster.yaml we wrote earlier (it starts with our marker) is brought up to date; one a user wrote is
    never touched."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = _CONFIG.format(marker=_MARKER, runs=home / "history" / "runs")
    current = config.read_text(encoding="utf-8") if config.exists() else None
    if current is None or (current.startswith(_MARKER) and current != wanted):
        config.write_text(wanted, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def written_by_us(home: Path) -> bool:
    """The instance's dagster.yaml is the one this CLI writes (so its event log is ours)."""
    config = home / "dagster.yaml"
    return config.exists() and config.read_text(encoding="utf-8").startswith(_MARKER)
