"""The Parquet lineage record (DESIGN §8, a contract): one row per output file or failed attempt, and one
per task the host holds that no output claims (`status` "orphaned", with its task id and cost).

Built from the ledger alone, so it also covers outputs of rows since edited or removed. Credits and
USD of a task with several outputs are split evenly across its rows, so column sums equal what the
provider charged. Built incrementally on the previous file: only attempts whose records changed since
its change mark (`money.changes`) are recomputed, and the result equals a build from scratch.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wan_pipeline.code_version import code_version
from wan_pipeline.money.changes import ChangeMark
from wan_pipeline.money.ledger import FAILED, STORED, Attempt, Ledger, Orphan, StoredOutput, surely_unbilled
from wan_pipeline.outputs.card import write_card
from wan_pipeline.outputs.storage import Storage

LINEAGE_PATH = "lineage/lineage.parquet"
#: `status` of a task the host holds that no output claims (found through the host's task list)
ORPHANED = "orphaned"

TS = pa.timestamp("ms", tz="UTC")
SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("prompt_id", pa.string()),
        ("variant", pa.int32()),
        ("output_index", pa.int32()),
        ("partition_key", pa.string()),
        ("prompt", pa.string()),
        ("negative_prompt", pa.string()),
        ("provider", pa.string()),
        ("model", pa.string()),
        ("mode", pa.string()),
        ("params_json", pa.string()),
        ("request_json", pa.string()),
        ("seed", pa.int64()),
        ("seed_source", pa.string()),
        ("provider_seed", pa.int64()),
        ("fingerprint", pa.string()),
        ("identity", pa.string()),
        ("idempotency_key", pa.string()),
        ("task_id", pa.string()),
        ("attempt", pa.int32()),
        ("status", pa.string()),
        ("error_code", pa.string()),
        ("error_class", pa.string()),
        ("error_message", pa.string()),
        ("credits_reserved", pa.float64()),
        ("credits_final", pa.float64()),
        ("cost_usd", pa.float64()),
        ("cost_source", pa.string()),
        ("submitted_at", TS),
        ("completed_at", TS),
        ("latency_s", pa.float64()),
        ("media_uri", pa.string()),
        ("media_sha256", pa.string()),
        ("mime_type", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("warnings", pa.string()),
        ("run_id", pa.string()),
        ("code_version", pa.string()),
        ("extra_json", pa.string()),
        # schema 2: the inputs that made each row, by content (docs/lineage.md)
        ("spec_sha256", pa.string()),
        ("table_sha256", pa.string()),
        ("reference_sha256s", pa.string()),
        ("master_seed", pa.int64()),
    ]
)
#: bumped when columns are added (never removed or changed: DESIGN §8 only grows); in the Parquet metadata
LINEAGE_SCHEMA_VERSION = 2
SCHEMA_KEY = b"wan_pipeline.lineage_schema"
WRITER_KEY = b"wan_pipeline.written_by"
#: the ledger's change mark the table was built at (JSON: ledger id, dataset, changes, deletions)
MARK_KEY = b"wan_pipeline.lineage_mark"
#: the rows' order (orphans follow, by creation time): a total order, so any build gives the same table
ROW_ORDER = [(c, "ascending") for c in ("prompt_id", "variant", "attempt", "identity", "output_index")]
CONTRACT_COLUMNS = [
    "dataset",
    "prompt_id",
    "variant",
    "output_index",
    "partition_key",
    "prompt",
    "negative_prompt",
    "provider",
    "model",
    "mode",
    "params_json",
    "request_json",
    "seed",
    "provider_seed",
    "fingerprint",
    "task_id",
    "attempt",
    "status",
    "error_code",
    "error_message",
    "credits_reserved",
    "credits_final",
    "cost_usd",
    "cost_source",
    "submitted_at",
    "completed_at",
    "latency_s",
    "media_uri",
    "media_sha256",
    "mime_type",
    "bytes",
    "width",
    "height",
    "duration_s",
    "fps",
    "run_id",
    "code_version",
    "extra_json",
]
#: columns beyond the contract, by the schema version that added them (docs/lineage.md)
ADDED_COLUMNS = {2: ["spec_sha256", "table_sha256", "reference_sha256s", "master_seed"]}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _share(value: float | None, parts: int) -> float | None:
    return None if value is None else value / max(parts, 1)


def lineage_rows(ledger: Ledger, dataset: str) -> list[dict[str, Any]]:
    """Every row, as dicts (in the table's order)."""
    return list(lineage_table(ledger, dataset).to_pylist())


def _attempt_rows(attempts: list[Attempt], outputs: list[StoredOutput]) -> list[dict[str, Any]]:
    """The rows of these attempts: one per stored output of a stored attempt, else one for the attempt."""
    rows: list[dict[str, Any]] = []
    outputs_by_attempt: dict[tuple[str, int], list[StoredOutput]] = {}
    for out in outputs:
        outputs_by_attempt.setdefault((out.identity, out.attempt), []).append(out)
    for a in attempts:
        outs = sorted(outputs_by_attempt.get((a.identity, a.attempt), []), key=lambda o: o.output_index)
        base = _attempt_row(a)
        if a.state == STORED and outs:
            for o in outs:
                rows.append(
                    {
                        **base,
                        "status": "succeeded",
                        "output_index": o.output_index,
                        "credits_reserved": _share(a.credits_reserved, len(outs)),
                        "credits_final": _share(a.credits_final, len(outs)),
                        "cost_usd": _share(a.cost_usd, len(outs)),
                        "media_uri": o.media_uri,
                        "media_sha256": o.media_sha256,
                        "mime_type": o.mime_type,
                        "bytes": o.bytes,
                        "width": o.width,
                        "height": o.height,
                        "duration_s": o.duration_s,
                        "fps": o.fps,
                        "warnings": o.warnings,
                    }
                )
        else:
            rows.append({**base, "status": "failed" if a.state == FAILED else "pending", "output_index": None})
    return rows


def _orphan_row(o: Orphan) -> dict[str, Any]:
    """A task the host holds (and may bill) that no output claims: its id and cost, for the user to decide."""
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    row.update(
        dataset=o.dataset, provider=o.provider, model=o.model, task_id=o.task_id, status=ORPHANED,
        cost_usd=o.cost_usd, cost_source=o.cost_source, submitted_at=_ts(o.created.replace(" ", "T") + "Z")
        if o.created else None, error_message=f"the host holds this {o.status or ''} task; no output claims it",
        code_version=code_version(),  # the code that found it (no attempt of ours made it)
    )  # fmt: skip
    return row


def _attempt_row(a: Attempt) -> dict[str, Any]:
    params = json.loads(a.params_json)
    submitted, completed = _ts(a.submitted_at), _ts(a.completed_at)
    latency = (completed - submitted).total_seconds() if submitted and completed else None
    # Only attempts that cannot have been charged read as 0; a lost create may have been (ledger.surely_unbilled).
    failed_unbilled = surely_unbilled(a)
    return {
        "dataset": a.dataset,
        "prompt_id": a.prompt_id,
        "variant": a.variant,
        "partition_key": a.prompt_id,
        "prompt": a.prompt,
        "negative_prompt": params.get("negative_prompt"),
        "provider": a.provider,
        "model": a.model,
        "mode": a.mode,
        "params_json": a.params_json,
        "request_json": a.request_json,
        "seed": a.seed,
        "seed_source": a.seed_source,
        "provider_seed": a.provider_seed,
        "fingerprint": a.fingerprint,
        "identity": a.identity,
        "idempotency_key": a.idempotency_key,
        "task_id": a.task_id,
        "attempt": a.attempt,
        "error_code": a.error_code,
        "error_class": a.error_class,
        "error_message": a.error_message,
        "credits_reserved": 0.0 if failed_unbilled else a.credits_reserved,
        "credits_final": 0.0 if failed_unbilled else a.credits_final,
        "cost_usd": 0.0 if failed_unbilled else a.cost_usd,
        "cost_source": a.cost_source,
        "submitted_at": submitted,
        "completed_at": completed,
        "latency_s": latency,
        "media_uri": None,
        "media_sha256": None,
        "mime_type": None,
        "bytes": None,
        "width": None,
        "height": None,
        "duration_s": None,
        "fps": None,
        "warnings": None,
        "run_id": a.run_id,
        # The code that submitted this attempt; null for attempts recorded before code versions were kept.
        "code_version": a.code_version,
        "extra_json": a.extra_json,
        "spec_sha256": a.spec_sha256,
        "table_sha256": a.table_sha256,
        "reference_sha256s": a.reference_sha256s,
        "master_seed": a.master_seed,
    }


def lineage_table(ledger: Ledger, dataset: str, previous: pa.Table | None = None) -> pa.Table:
    """The rows, with the schema version, the writing code's version and the ledger's change mark in the
    Parquet metadata. Given the table an earlier build made (`previous`), only the attempts whose records
    changed since its mark are recomputed from the ledger; its other rows are kept as they are, and the result
    is the same table a build from scratch gives (docs/lineage.md, "Incremental builds")."""
    mark = ledger.change_mark(dataset)  # first: every record numbered up to it is visible to what follows
    since = _resumable_from(previous, mark)
    pages: list[pa.Table] = []
    owner: dict[str, int] = {}  # attempt key -> the page that read it last
    for attempts, outputs in ledger.attempt_pages(dataset, changed_since=since):
        pages.append(pa.Table.from_pylist(_attempt_rows(attempts, outputs), schema=SCHEMA))
        owner.update((f"{a.identity}#{a.attempt}", len(pages) - 1) for a in attempts)
    parts = [_latest_only(page, n, owner) for n, page in enumerate(pages)]
    if previous is not None and since is not None:
        parts.append(_unchanged_rows(previous, set(owner)))
    rows = pa.concat_tables(parts or [SCHEMA.empty_table()]).sort_by(ROW_ORDER)
    orphans = [o for o in ledger.orphans(dataset) if not _claimed(o.task_id, rows)]
    table = pa.concat_tables([rows, pa.Table.from_pylist([_orphan_row(o) for o in orphans], schema=SCHEMA)])
    return table.replace_schema_metadata(_metadata(mark))


def _keys(rows: pa.Table) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(rows["identity"], pc.cast(rows["attempt"], pa.string()), "#")


def _latest_only(page: pa.Table, n: int, owner: dict[str, int]) -> pa.Table:
    """The page's rows, less those of an attempt written again meanwhile and read again by a later page."""
    keys = _keys(page)
    later = [k for k in set(keys.to_pylist()) if owner[k] != n]
    return page.filter(pc.invert(pc.is_in(keys, value_set=pa.array(later, pa.string())))) if later else page


def _metadata(mark: ChangeMark) -> dict[bytes, bytes]:
    return {
        SCHEMA_KEY: str(LINEAGE_SCHEMA_VERSION).encode(),
        WRITER_KEY: code_version().encode(),
        MARK_KEY: mark.to_json().encode(),
    }


def _resumable_from(previous: pa.Table | None, mark: ChangeMark) -> int | None:
    """The change number `previous` was built at, when its unchanged rows can be kept: written by this code
    (same schema, same code version) from an earlier state of the same ledger's records, nothing deleted since."""
    if previous is None or not previous.schema.equals(SCHEMA, check_metadata=False):
        return None
    meta = previous.schema.metadata or {}
    if meta.get(SCHEMA_KEY) != str(LINEAGE_SCHEMA_VERSION).encode() or meta.get(WRITER_KEY) != code_version().encode():
        return None
    earlier = ChangeMark.from_json(meta.get(MARK_KEY, b""))
    return earlier.changes if earlier is not None and mark.continues(earlier) else None


def _unchanged_rows(previous: pa.Table, changed: set[str]) -> pa.Table:
    """The earlier build's rows of attempts that did not change (orphan rows are always recomputed)."""
    rows = previous.replace_schema_metadata(None)
    rows = rows.filter(pc.not_equal(rows["status"], ORPHANED))
    if changed:
        rows = rows.filter(pc.invert(pc.is_in(_keys(rows), value_set=pa.array(sorted(changed), pa.string()))))
    return rows


def _claimed(task_id: str, rows: pa.Table) -> bool:
    return bool(pc.any(pc.equal(rows["task_id"], task_id)).as_py())


def read_lineage_file(storage: Storage) -> pa.Table | None:
    """The lineage table last written to `storage`, or None when there is none that can be read."""
    try:
        return pq.read_table(io.BytesIO(storage.get(LINEAGE_PATH)))
    except Exception:  # missing, unreadable or not Parquet: the next build starts from scratch
        return None


def write_lineage(ledger: Ledger, dataset: str, storage: Storage, full: bool = False) -> tuple[str, pa.Table]:
    """lineage/lineage.parquet, and the dataset card lineage/DATASET.md beside it.

    Incremental unless `full`: built on the file already there (only changed attempts recomputed), and
    neither file is rewritten when the table comes out the same."""
    previous = None if full else read_lineage_file(storage)
    table = lineage_table(ledger, dataset, previous)
    if previous is not None and table.equals(previous, check_metadata=True):
        return storage.uri(LINEAGE_PATH), table
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    uri = storage.put(LINEAGE_PATH, buf.getvalue(), "application/vnd.apache.parquet")
    write_card(storage, table)
    return uri, table
