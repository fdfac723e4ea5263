"""`wan-pipeline`: the command line, a client of the Dagster layer (DESIGN §7).

May import everything. ``main`` is the console script's entry point.
"""

from wan_pipeline.cli.main import main

__all__ = ["main"]
