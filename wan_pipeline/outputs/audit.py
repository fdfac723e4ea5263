"""Audits over the ledger and the stored files, shared by the asset checks and the CLI.

The file audit is incremental: a file verified before (SHA-256, and for an image its decoded size) is not read
again while its stamp (size, mtime and inode on disk; size and ETag on S3: `Storage.stamps`, one listing)
and what the ledger says of it are unchanged. The stamps of verified files are kept in
`.wan_pipeline/audit_state.parquet` under the storage root; files this process stored count as verified as
it stored them (`outputs.verified`). `full=True` reads and hashes every file again.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from wan_pipeline.money.ledger import FAILED, STORED, Ledger, StoredOutput
from wan_pipeline.outputs.storage import Storage, relpath_of
from wan_pipeline.outputs.verified import claim, take_notes

AUDIT_STATE_PATH = ".wan_pipeline/audit_state.parquet"
_STATE_SCHEMA = pa.schema([("path", pa.string()), ("claim", pa.string()), ("stamp", pa.string())])


@dataclass
class Audit:
    problems: list[str]
    checked: int  # stored outputs checked
    read: int  # files read and hashed in this pass (the others were unchanged since they were verified)


def audit_outputs(ledger: Ledger, dataset: str, storage: Storage, full: bool = False) -> Audit:
    """Every stored output: the file exists, its SHA-256 matches, images decode at the recorded size."""
    identities = {a.identity for a in ledger.briefs(dataset) if a.state == STORED}
    outputs = [o for o in ledger.all_outputs(dataset) if o.identity in identities]
    rels = {o.media_uri: relpath_of(storage, o.media_uri) for o in outputs}
    noted = take_notes(storage)  # verified as this process stored them (`outputs.verified`)
    saved = {} if full else _load_state(storage)
    earlier = {} if full else {**saved, **noted}
    stamps = _stamps(storage, {r for r in rels.values() if r})
    problems: list[str] = []
    verified: dict[str, tuple[str, str]] = {}
    read = 0
    for out in outputs:
        rel, said = rels[out.media_uri], claim(out)
        stamp = stamps.get(rel) if rel else None
        if rel and stamp is not None and earlier.get(rel) == (said, stamp):
            verified[rel] = (said, stamp)  # unchanged since it was verified
            continue
        read += 1
        problem = _verify(storage, rel, out)
        if problem is not None:
            problems.append(problem)
        elif rel and stamp is not None:
            verified[rel] = (said, stamp)
    if verified != saved:
        _save_state(storage, verified)
    return Audit(problems, len(outputs), read)


def _verify(storage: Storage, rel: str | None, out: StoredOutput) -> str | None:
    """The file's problem, or None when it is there, hashes to the recorded SHA-256 and (images) decodes."""
    try:
        data = storage.get(rel) if rel else b""
    except Exception as exc:
        return f"{out.media_uri}: missing ({type(exc).__name__})"
    if not data:
        return f"{out.media_uri}: missing"
    if hashlib.sha256(data).hexdigest() != out.media_sha256:
        return f"{out.media_uri}: SHA-256 differs from lineage"
    if out.mime_type.startswith("image/"):
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if (img.width, img.height) != (out.width, out.height):
                    return f"{out.media_uri}: {img.width}x{img.height}, lineage says {out.width}x{out.height}"
        except Exception as exc:
            return f"{out.media_uri}: does not decode ({exc})"
    return None


def _stamps(storage: Storage, rels: set[str]) -> dict[str, str]:
    """Stamps of the files, one listing per top folder (`media/`); none when the storage cannot list."""
    found: dict[str, str] = {}
    for top in sorted({r.split("/", 1)[0] + "/" for r in rels if "/" in r}):
        try:
            found.update(storage.stamps(top))
        except Exception:  # listing refused or failed: those files are read instead
            continue
    return found


def _load_state(storage: Storage) -> dict[str, tuple[str, str]]:
    try:
        table = pq.read_table(io.BytesIO(storage.get(AUDIT_STATE_PATH)))
        return {p: (c, s) for p, c, s in zip(*(table[n].to_pylist() for n in _STATE_SCHEMA.names), strict=True)}
    except Exception:  # none yet, or unreadable: every file is read
        return {}


def _save_state(storage: Storage, verified: dict[str, tuple[str, str]]) -> None:
    table = pa.table(
        [list(verified), [c for c, _ in verified.values()], [s for _, s in verified.values()]], schema=_STATE_SCHEMA
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.put(AUDIT_STATE_PATH, buf.getvalue(), "application/vnd.apache.parquet")


def duplicate_submissions(ledger: Ledger, dataset: str) -> list[str]:
    """An identity bought twice: two provider tasks for one attempt, or a new attempt while an earlier
    one had not terminally failed (the only legitimate reason to pay again)."""
    by_identity = defaultdict(list)
    for a in ledger.briefs(dataset):
        by_identity[a.identity].append(a)
    violations = []
    seen_tasks: dict[str, str] = {}
    for identity, attempts in by_identity.items():
        for a in attempts:
            if a.task_id:
                if a.task_id in seen_tasks and seen_tasks[a.task_id] != identity:
                    violations.append(f"task {a.task_id} recorded for two identities")
                seen_tasks[a.task_id] = identity
        paid = [a for a in attempts if a.task_id]
        for earlier in paid[:-1]:
            if earlier.state != FAILED:
                violations.append(f"{identity}: attempt {earlier.attempt} ({earlier.state}) was followed by another")
    return violations
