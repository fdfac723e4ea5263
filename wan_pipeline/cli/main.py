"""`wan-pipeline`: validate, estimate, generate, lineage, replay, report, export, emulator, ui, daemon (DESIGN §7).

Exit codes: 0 all done; 1 some outputs failed (listed); 2 invalid input or configuration (nothing spent).
Expected outcomes print a clean message; `--verbose` adds the stack trace. A new command is one module in
this package defining a `click.Command`, added to `COMMANDS` below.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from wan_pipeline.cli.console import EXIT_FAILED, EXIT_INVALID, EXIT_OK, StepFailed, report_error, say
from wan_pipeline.cli.daemon import daemon
from wan_pipeline.cli.emulator import emulator
from wan_pipeline.cli.estimate import estimate
from wan_pipeline.cli.export import export
from wan_pipeline.cli.generate import generate
from wan_pipeline.cli.lineage import lineage
from wan_pipeline.cli.replay import replay
from wan_pipeline.cli.report import report
from wan_pipeline.cli.ui import ui
from wan_pipeline.cli.validate import validate
from wan_pipeline.errors import ConfigError, InvalidInput, WanPipelineError

COMMANDS: list[click.Command] = [validate, estimate, generate, lineage, replay, report, export, emulator, ui, daemon]


@click.group(
    name="wan-pipeline",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
def cli() -> None:
    """Reproducible image and video datasets from Alibaba Wan 2.7 hosted APIs, orchestrated with Dagster.

    Exit codes: 0 all done; 1 some outputs failed (listed); 2 invalid input or configuration (nothing spent).
    """


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="wan-pipeline", standalone_mode=False)
    except click.exceptions.Abort:
        say("aborted", to_err=True)
        return EXIT_FAILED
    except click.ClickException as exc:  # usage errors: exit 2, as argparse did
        exc.show()
        return exc.exit_code
    except InvalidInput as exc:
        return report_error(exc, EXIT_INVALID)
    except ConfigError as exc:
        return report_error(ConfigError(f"configuration: {exc}"), EXIT_INVALID)
    except StepFailed as exc:
        return report_error(exc, exc.exit_code)
    except WanPipelineError as exc:
        return report_error(exc, EXIT_FAILED)
    return int(rv) if isinstance(rv, int) else EXIT_OK


def run() -> NoReturn:
    """The console script and `python -m wan_pipeline.cli`: `main`, then out of the process without the
    interpreter's teardown. Freeing every module of Dagster, SQLAlchemy and the rest one by one took half a
    second after every command had finished its work (measured: 0.47 s after importing `cli.launch` alone);
    the exit handlers still run and the streams and log handlers are flushed first. Every file and ledger
    write is closed by then (the commands close what they open)."""
    code = main()
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
