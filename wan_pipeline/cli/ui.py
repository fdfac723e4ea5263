"""`wan-pipeline ui [SPEC ...]`: `dagster dev` on the same instance `generate` records into."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from wan_pipeline.cli.console import say
from wan_pipeline.cli.home import ensure_dagster_home, written_by_us


@click.command("ui")
@click.argument("specs", nargs=-1, metavar="[SPEC]...")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
def ui(specs: tuple[str, ...], host: str, port: int) -> None:
    """Open the Dagster UI on the same instance `generate` records into."""
    home = ensure_dagster_home()
    if specs:
        os.environ["WAN_PIPELINE_SPECS"] = os.pathsep.join(str(Path(s).resolve()) for s in specs)
    say(f"dagster instance: {home}", to_err=True)
    if written_by_us(home):  # its event log writes a run's planned events at once: a UI backfill's runs too
        from wan_pipeline.assets.dagster_compat import batch_event_writes

        batch_event_writes()
    # `python -m dagster` with this interpreter: works from .venv/bin without an activated venv (PATH may
    # not hold the `dagster` script).
    argv = [sys.executable, "-m", "dagster", "dev", "-m", "wan_pipeline.definitions", "-h", host, "-p", str(port)]
    os.execv(sys.executable, argv)
