"""The Dagster instance the CLI records into: the same one `wan-pipeline ui` opens."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DAGSTER_HOME = Path.home() / ".wan_pipeline" / "dagster_home"


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME if set, else ~/.wan_pipeline/dagster_home: the same instance `wan-pipeline ui` opens."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "# created by wan-pipeline; Dagster's default SQLite storage lives beside it\n"
            "telemetry:\n  enabled: false\n",
            encoding="utf-8",
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return home
