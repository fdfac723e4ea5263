"""`wan-pipeline export SPEC --format hf|webdataset --out DIR`: the stored outputs in a form ML users load."""

from __future__ import annotations

import click

from wan_pipeline.cli.console import EXIT_OK, emit_json, json_option, say, verbose_option
from wan_pipeline.outputs.export import DEFAULT_SHARD_SIZE
from wan_pipeline.planning.spec import load_spec


@click.command("export")
@click.argument("spec_path", metavar="SPEC")
@click.option("--format", "fmt", type=click.Choice(["hf", "webdataset"]), required=True,
              help="hf: an image/video folder with metadata.jsonl; webdataset: tar shards")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="destination directory")
@click.option("--shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_SIZE, show_default=True,
              help="webdataset: samples per tar shard")
@json_option
@verbose_option
def export(spec_path: str, fmt: str, out_dir: str, shard_size: int, as_json: bool) -> int:
    """Export every stored output with its lineage record (prompt, seed, params, fingerprint, cost, sha256)."""
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.card import dataset_card
    from wan_pipeline.outputs.export import export_dataset
    from wan_pipeline.outputs.lineage import lineage_table
    from wan_pipeline.outputs.storage import LocalStorage, open_storage

    spec = load_spec(spec_path)
    with open_ledger(spec) as ledger:
        table = lineage_table(ledger, spec.name)
    result = export_dataset(table.to_pylist(), open_storage(spec.storage_root), LocalStorage(out_dir),
                            "hf" if fmt == "hf" else "webdataset", shard_size, card=dataset_card(table))
    if as_json:
        emit_json({"dataset": spec.name, "format": result.format, "location": result.location,
                   "samples": result.samples, "files": result.files})
        return EXIT_OK
    say(f"{spec.name}: {result.samples} sample(s) as {fmt} in {result.location} ({len(result.files)} file(s))")
    return EXIT_OK
