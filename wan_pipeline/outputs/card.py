"""The dataset card: `DATASET.md` beside the lineage, describing a dataset from its lineage table alone.

Hosts and models, counts by mode and status, spend by source of price, the seed policy, the versions
and input hashes, and the exact commands that rebuild the dataset. Written whenever the lineage is; a
function of the lineage table only (no clock, no environment), so the same lineage gives the same card.
`dataset_card` is what an export (e.g. a Hugging Face dataset README) includes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from wan_pipeline.outputs.storage import Storage

CARD_PATH = "lineage/DATASET.md"
LINEAGE_FILE = "lineage/lineage.parquet"  # = outputs.lineage.LINEAGE_PATH (which imports this module)


def _table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def _hosts(rows: list[dict[str, Any]]) -> str:
    counts = Counter((r.get("provider"), r.get("model")) for r in rows if r.get("status") == "succeeded")
    attempts = Counter((r.get("provider"), r.get("model")) for r in rows)
    body = ([p, m, counts[(p, m)], attempts[(p, m)]] for p, m in sorted(attempts))
    return _table(["host", "model", "files", "lineage rows"], body)


def _counts(rows: list[dict[str, Any]]) -> str:
    statuses = sorted({str(r.get("status")) for r in rows})
    by_mode: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        by_mode[r.get("mode") or "(no output: orphaned task)"][str(r.get("status"))] += 1
    return _table(["mode", *statuses], ([mode, *(by_mode[mode][s] for s in statuses)] for mode in sorted(by_mode)))


def _spend(rows: list[dict[str, Any]]) -> str:
    credits: dict[str, float] = defaultdict(float)
    usd: dict[str, float | None] = {}
    for r in rows:
        source = r.get("cost_source") or "unknown"
        credits[source] += r.get("credits_final") or 0.0
        cost = r.get("cost_usd")
        if cost is not None:  # a host that reports no USD shows none, not a made-up zero
            usd[source] = (usd.get(source) or 0.0) + float(cost)
    body: list[list[Any]] = [[s, credits[s], usd.get(s)] for s in sorted(credits)]
    known_usd = [v for v in usd.values() if v is not None]
    body.append(["**total**", sum(credits.values()), sum(known_usd) if known_usd else None])
    note = (
        "\n\n`provider`: amounts the host reported; `catalog`: the host's credits priced with the documented "
        "USD rate; `unknown`: no settled amount (failed before billing, or still pending)."
    )
    return _table(["source of price", "credits (final)", "USD"], body) + note


def _seeds(rows: list[dict[str, Any]]) -> str:
    outputs = {r.get("identity"): r for r in rows if r.get("identity")}.values()
    derived = Counter(r.get("master_seed") for r in outputs if r.get("seed_source") == "derived")
    row_seeds = sum(1 for r in outputs if r.get("seed_source") == "row")
    lines = [f"Every seed is fixed before submission and recorded per row (`seed`); {len(outputs)} planned output(s):"]
    for master, n in sorted(derived.items(), key=lambda kv: str(kv[0])):
        lines.append(
            f"- {n} derived from master seed `{master if master is not None else 'not recorded'}`: "
            "`sha256(\"wan-pipeline/seed/v1:<master>:<prompt_id>:<variant>\")[:8] mod 2^31`"
        )
    if row_seeds:
        lines.append(f"- {row_seeds} from the table's own `seed` column (variant v uses seed + v)")
    reported = sum(1 for r in outputs if r.get("provider_seed") is not None and r.get("provider_seed") != r.get("seed"))
    if reported:
        lines.append(f"- {reported} output(s) where the host reported another seed than sent (`provider_seed`)")
    return "\n".join(lines)


def _versions(rows: list[dict[str, Any]], schema_version: str, writer_version: str) -> str:
    code = Counter(r.get("code_version") or "not recorded" for r in rows)

    def listing(column: str) -> str:
        counts = Counter(r.get(column) or "not recorded" for r in rows)
        return ", ".join(f"`{v}` ({n} rows)" for v, n in sorted(counts.items()))

    parts = [
        f"- lineage schema version: `{schema_version}`; lineage written by `{writer_version}`",
        "- code that submitted the rows (`code_version`): " + listing("code_version"),
        "- spec files (`spec_sha256`, of the file's bytes): " + listing("spec_sha256"),
        "- prompt tables (`table_sha256`, of the file's bytes): " + listing("table_sha256"),
    ]
    commits = sorted({v.split("+g", 1)[1].split(".")[0] for v in code if "+g" in v})
    if commits:
        parts.append("- check the code out with `git checkout " + " / ".join(commits) + "`")
    if any(v.endswith(".dirty") for v in code):
        parts.append("- `.dirty`: those rows were made with uncommitted changes on top of that commit")
    return "\n".join(parts)


def _reproduce(dataset: str) -> str:
    return "\n".join(
        [
            "From the directory that holds `lineage/` (the dataset's storage root):",
            "",
            "```bash",
            f"wan-pipeline replay {LINEAGE_FILE} --out {dataset}_replay",
            f"wan-pipeline validate {dataset}_replay/spec.yaml   # the same fingerprints",
            f"wan-pipeline generate {dataset}_replay/spec.yaml   # the same request bodies, the same seeds",
            "```",
            "",
            "`replay` rebuilds the spec, the prompt table and the reference files (verified by SHA-256) from the "
            "lineage alone. Add `--endpoint URL` (or `--endpoint emulator`) to choose where `generate` sends, "
            "`--provider P --model M` to ask another host for the same neutral parameters and seeds.",
        ]
    )


#: the lineage columns the card reads (the others, request bodies included, need not become Python objects)
CARD_COLUMNS = [
    "dataset", "status", "provider", "model", "mode", "cost_source", "credits_final", "cost_usd", "identity",
    "master_seed", "seed_source", "provider_seed", "seed", "code_version", "spec_sha256", "table_sha256",
]  # fmt: skip


def dataset_card(table: pa.Table) -> str:
    """The card's Markdown for one dataset's lineage table (the lineage schema version comes from its metadata)."""
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    rows = table.select([c for c in CARD_COLUMNS if c in table.column_names]).to_pylist()
    return card_markdown(rows, meta.get("wan_pipeline.lineage_schema", "?"), meta.get("wan_pipeline.written_by", "?"))


def card_markdown(rows: list[dict[str, Any]], schema_version: str, written_by: str) -> str:
    """The card for lineage rows (as `lineage_rows` gives them or a lineage file holds them)."""
    dataset = str(next((r.get("dataset") for r in rows if r.get("dataset")), "dataset"))
    files = sum(1 for r in rows if r.get("status") == "succeeded")
    sections = [
        f"# {dataset}",
        f"A dataset made with wan-pipeline from Alibaba Wan 2.7 models: {files} file(s), "
        f"{len(rows)} lineage row(s) (one per file or failed attempt) in `{LINEAGE_FILE}`.",
        "## Hosts and models\n\n" + _hosts(rows),
        "## Counts by mode and status\n\n" + _counts(rows),
        "## Spend by source of price\n\n" + _spend(rows),
        "## Seed policy\n\n" + _seeds(rows),
        "## Versions and inputs\n\n" + _versions(rows, schema_version, written_by),
        "## Reproduce\n\n" + _reproduce(dataset),
    ]
    return "\n\n".join(sections) + "\n"


def card_for_lineage_file(path: str | Path) -> str:
    """The card of a lineage file already written (e.g. for an export that starts from the Parquet file)."""
    return dataset_card(pq.read_table(path))


def write_card(storage: Storage, table: pa.Table) -> str:
    return storage.put(CARD_PATH, dataset_card(table).encode("utf-8"), "text/markdown")
