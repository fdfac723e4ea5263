"""`wan-pipeline report SPEC`: write the gallery page (outputs/gallery.py) from the ledger; print its path."""

from __future__ import annotations

import dataclasses

import click

from wan_pipeline.cli.console import EXIT_OK, emit_json, json_option, say, verbose_option
from wan_pipeline.planning.spec import load_spec


@click.command("report")
@click.argument("spec_path", metavar="SPEC")
@json_option
@verbose_option
def report(spec_path: str, as_json: bool) -> int:
    """Write the HTML gallery of every output and failure under the storage root; print its path."""
    from wan_pipeline.execution.endpoints import thumbnails_path
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.gallery import write_gallery
    from wan_pipeline.outputs.lineage import lineage_rows
    from wan_pipeline.outputs.storage import open_storage

    spec = load_spec(spec_path)
    with open_ledger(spec) as ledger:
        rows = lineage_rows(ledger, spec.name)
    summary = write_gallery(rows, spec.name, open_storage(spec.storage_root), thumbnails_path(spec))
    if as_json:
        emit_json({"dataset": spec.name, **dataclasses.asdict(summary)})
        return EXIT_OK
    usd = "unknown" if summary.usd is None else f"${summary.usd:.4f}"
    say(f"{spec.name}: {summary.outputs} output(s), {summary.failed} failed, {summary.pending} pending, "
        f"{summary.credits:g} credits, {usd}")
    say(summary.uri)
    return EXIT_OK
