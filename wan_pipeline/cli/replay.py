"""`wan-pipeline replay LINEAGE --out DIR`: a spec and prompt table rebuilt from a lineage file alone."""

from __future__ import annotations

from pathlib import Path

import click

from wan_pipeline.cli.console import EXIT_OK, emit_json, json_option, say, verbose_option
from wan_pipeline.planning.spec import ProviderName
from wan_pipeline.providers.registry import PROVIDERS


@click.command("replay")
@click.argument("lineage_path", metavar="LINEAGE", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="a fresh directory")
@click.option("--provider", type=click.Choice(sorted(PROVIDERS)), help="re-target at this host (with --model)")
@click.option("--model", help="re-target at this model (with --provider)")
@click.option("--endpoint", help="`emulator` or a base URL for the new spec (the lineage does not record one)")
@click.option(
    "--references",
    "search",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="another directory to look for reference files in (repeatable); checked by SHA-256",
)
@json_option
@verbose_option
def replay(
    lineage_path: Path,
    out_dir: Path,
    provider: ProviderName | None,
    model: str | None,
    endpoint: str | None,
    search: tuple[Path, ...],
    as_json: bool,
) -> int:
    """Rebuild a spec, a prompt table and the reference files from LINEAGE alone, checked to plan the same
    fingerprints (or, re-targeted, the same neutral parameters and seeds)."""
    from wan_pipeline.planning.replay import replay as rebuild  # Arrow: loaded by the command that needs it

    result = rebuild(lineage_path, out_dir, provider=provider, model=model, endpoint=endpoint, search=list(search))
    if as_json:
        emit_json(
            {
                "ok": True,
                "spec": str(result.spec_path),
                "table": str(result.table_path),
                "references": [str(p) for p in result.references],
                "prompts": result.prompts,
                "outputs": result.outputs,
                "planned": result.planned,
                "plan_digest": result.plan_digest,
                "retargeted": result.retargeted,
                "notes": result.notes,
            }
        )
        return EXIT_OK
    check = "the same neutral parameters and seeds" if result.retargeted else "the recorded fingerprints"
    say(f"replayed {result.outputs} output(s) of {result.prompts} prompt(s) into {result.spec_path}: {check}")
    say(f"  table: {result.table_path}; reference files: {len(result.references)}")
    say(f"  plan digest: {result.plan_digest} (`wan-pipeline validate` prints the same)")
    for note in result.notes:
        say(f"  note: {note}", to_err=True)
    say(f"next: wan-pipeline generate {result.spec_path}")
    return EXIT_OK
