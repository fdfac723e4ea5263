"""`wan-pipeline`: the command line (click + rich), a client of the Dagster layer (DESIGN §7).

May import everything. ``run`` is the console script's entry point (``main``, the same without leaving the
process, is what tests call). One module per command (validate,
estimate, generate, lineage, emulator, ui), each defining a ``click.Command`` listed in ``main.COMMANDS``;
``console`` holds what they share (exit codes, consoles, --json/--verbose, error reports). ``generate``'s
Dagster side: ``launch`` (which runs to launch and what they left), ``runs`` (tags, closing a killed
process's runs), ``progress`` (the live bar, from ledger counters), ``home`` (the instance directory).
"""

from wan_pipeline.cli.main import main, run

__all__ = ["main", "run"]
