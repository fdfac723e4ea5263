"""`wan-pipeline daemon [OPTIONS]`: Dagster's daemon (`dagster-daemon run`, same options) whose backfill daemon
picks a new backfill up within a second (`assets.backfill_daemon`) instead of at Dagster's next 30 s tick."""

from __future__ import annotations

import functools

import click

#: how `dagster dev` starts its daemon: `[python, "-m", "dagster._daemon", "run", ...]`
STOCK_DAEMON = ["-m", "dagster._daemon", "run"]
#: the name in `dagster._daemon.cli` its `run` command builds the daemon controller with
CONTROLLER = "daemon_controller_from_instance"
#: this command, as a process `wan-pipeline ui` starts in its place
OUR_DAEMON = ["-m", "wan_pipeline.cli", "daemon"]


@click.command(
    "daemon",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.pass_context
def daemon(ctx: click.Context) -> None:
    """Run Dagster's daemon (the options of `dagster-daemon run`; `--help` lists them) with a backfill daemon
    that launches a UI backfill's runs within a second of the click, not at Dagster's next 30 s tick."""
    run_daemon(ctx.args)


def run_daemon(args: list[str]) -> None:
    """`dagster-daemon run ARGS` with the instance's daemons from `backfill_daemon.daemons_for`. Dagster's command
    builds its controller with `daemon_controller_from_instance`, whose `gen_daemons` parameter is the way to
    choose the daemons; the command does not expose it, so this process's copy of the name is bound to it."""
    from dagster._daemon import cli as daemon_cli

    from wan_pipeline.assets.backfill_daemon import daemons_for

    names = vars(daemon_cli)  # the module's globals, which its command reads the controller factory from
    names[CONTROLLER] = functools.partial(names[CONTROLLER], gen_daemons=daemons_for)
    daemon_cli.run_command.main(args=args, prog_name="wan-pipeline daemon", standalone_mode=False)


def with_our_daemon(argv: list[str]) -> list[str]:
    """A process `dagster dev` starts, with this command in place of Dagster's daemon (anything else unchanged)."""
    if argv[1 : 1 + len(STOCK_DAEMON)] == STOCK_DAEMON:
        return [argv[0], *OUR_DAEMON, *argv[1 + len(STOCK_DAEMON) :]]
    return argv
