"""`wan-pipeline lineage SPEC`: rewrite the lineage Parquet from the ledger and summarise it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from wan_pipeline.cli.console import EXIT_OK, emit_json, json_option, out, say, verbose_option
from wan_pipeline.planning.spec import load_spec

if TYPE_CHECKING:  # pandas and pyarrow are imported where used: every command's start would pay over a second
    import pandas as pd


@click.command("lineage")
@click.argument("spec_path", metavar="SPEC")
@click.option("--full", is_flag=True, help="Rebuild every row from the ledger (default: only what changed).")
@json_option
@verbose_option
def lineage(spec_path: str, full: bool, as_json: bool) -> int:
    """Write and summarise the lineage Parquet (--json: the summary and every row)."""
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.lineage import write_lineage
    from wan_pipeline.outputs.storage import open_storage

    spec = load_spec(spec_path)
    with open_ledger(spec) as ledger:
        uri, table = write_lineage(ledger, spec.name, open_storage(spec.storage_root), full=full)
    frame = table.to_pandas()
    summary = _summary(frame)
    if as_json:
        records = json.loads(
            frame.drop(columns=["request_json", "params_json"]).to_json(orient="records", date_format="iso")
        )
        emit_json({"dataset": spec.name, "uri": uri, **summary, "records": records})
        return EXIT_OK
    say(f"{spec.name}: lineage at {uri} ({len(frame)} row(s))")
    if frame.empty:
        return EXIT_OK
    by_status = Table("status", "rows", box=None, padding=(0, 2), pad_edge=True)
    for status, n in summary["rows_by_status"].items():
        by_status.add_row(status, str(n))
    out.print(by_status)
    say(f"  prompts: {summary['prompts']}, files: {summary['files']}, bytes: {summary['bytes']}")
    say(f"  credits final: {summary['credits_final']:g}")
    say(f"  cost USD: {summary['cost_usd']:.4f}")
    for orphan in summary["orphaned"]:
        cost = "cost unknown" if orphan["cost_usd"] is None else f"USD {orphan['cost_usd']:.4f}"
        say(f"  orphaned: task {orphan['task_id']} ({orphan['model']}, {cost}): the host holds it and no output "
            "claims it")
    return EXIT_OK


def _summary(frame: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    from wan_pipeline.outputs.lineage import ORPHANED

    if frame.empty:
        return {"rows": 0, "rows_by_status": {}, "prompts": 0, "files": 0, "bytes": 0, "credits_final": 0.0,
                "cost_usd": 0.0, "orphaned": []}
    orphaned = frame[frame["status"] == ORPHANED]
    by_status = {str(k): int(v) for k, v in sorted(frame.groupby("status").size().to_dict().items())}
    return {
        "rows": len(frame),
        "rows_by_status": by_status,
        "prompts": int(frame["prompt_id"].nunique()),
        "files": int(frame["media_uri"].notna().sum()),
        "bytes": int(frame["bytes"].fillna(0).sum()),
        "credits_final": float(frame["credits_final"].fillna(0).sum()),
        "cost_usd": float(frame["cost_usd"].fillna(0).sum()),
        # tasks the host holds (and may bill) that no output claims: their ids, to look them up
        "orphaned": [
            {**r, "cost_usd": None if pd.isna(r["cost_usd"]) else r["cost_usd"]}
            for r in orphaned[["task_id", "model", "cost_usd"]].to_dict(orient="records")
        ],
    }
