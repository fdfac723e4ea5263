"""What every command shares: exit codes, the two consoles, --verbose/--json, JSON output, error reports.

Human text goes through rich with soft wrapping (a piped line is never broken: scripts and tests grep it);
with ``--json`` stdout carries exactly one JSON document and everything human goes to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from wan_pipeline.errors import InvalidInput, WanPipelineError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

#: stdout: results (a summary, a table, or the --json document)
out = Console(highlight=False, soft_wrap=True)
#: stderr: progress, notes and errors
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


class StepFailed(WanPipelineError):
    """A Dagster step the command depends on failed; carries the exit code to end with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass
class Settings:
    """Per-invocation switches that main() needs after a command raised (a CLI runs one command)."""

    verbose: bool = False
    json: bool = False


settings = Settings()


def verbose_option(fn: F) -> F:
    def remember(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        settings.verbose = settings.verbose or value
        return value

    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="show Dagster's log and the stack trace of any error",
    )(fn)


def json_option(fn: F) -> F:
    def remember(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        settings.json = settings.json or value
        return value

    return click.option(
        "--json", "as_json", is_flag=True, callback=remember, help="print one JSON document on stdout (for scripts)"
    )(fn)


def say(text: str = "", *, to_err: bool = False) -> None:
    """One line of plain text: no markup, so a prompt or path containing [brackets] prints as it is."""
    (err if to_err else out).print(text, markup=False)


def emit_json(document: Any) -> None:
    out.print_json(json.dumps(document, ensure_ascii=False, default=str), indent=1, highlight=False)


def report_error(exc: Exception, code: int) -> int:
    """Print an expected error cleanly (its stack trace only with --verbose); returns the exit code."""
    if settings.verbose:
        err.print("".join(traceback.format_exception(exc)), markup=False)
    if isinstance(exc, InvalidInput):
        say(f"error: {len(exc.problems)} problem(s); nothing was submitted:", to_err=True)
        for p in exc.problems:
            say(f"  - {p}", to_err=True)
        problems = [dataclasses.asdict(p) | {"text": str(p)} for p in exc.problems]
    else:
        say(f"error: {exc}", to_err=True)
        problems = []
    if settings.json:
        emit_json({"ok": False, "exit_code": code, "error": str(exc), "problems": problems})
    return code
