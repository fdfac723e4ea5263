"""`wan-pipeline ui [SPEC ...]`: `dagster dev` on the instance `generate` records into, with `wan-pipeline daemon`."""

from __future__ import annotations

import os
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
    _dagster_dev(["-m", "wan_pipeline.definitions", "-h", host, "-p", str(port)])


def _dagster_dev(args: list[str]) -> None:
    """`dagster dev ARGS` in this process, its daemon being `wan-pipeline daemon` (a backfill launched from the
    UI starts within a second, not at Dagster's next 30 s tick). `dagster dev` starts its webserver and daemon
    as `[python, -m, module, ...]` processes of this interpreter through one function of its module; the daemon's
    command line is swapped there (`cli.daemon.with_our_daemon`), everything else is Dagster's."""
    from dagster._cli import dev

    from wan_pipeline.cli.daemon import with_our_daemon

    names = vars(dev)
    spawn = names["open_ipc_subprocess"]
    names["open_ipc_subprocess"] = lambda parts, **kwargs: spawn(with_our_daemon(list(parts)), **kwargs)
    try:
        dev.dev_command.main(args=args, prog_name="dagster dev", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C is how a session ends; dagster dev has stopped what it started
        say("dagster dev stopped", to_err=True)
