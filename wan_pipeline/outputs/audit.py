"""Audits over the ledger and the stored files, shared by the asset checks and the CLI."""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict

from PIL import Image

from wan_pipeline.money.ledger import FAILED, STORED, Ledger
from wan_pipeline.outputs.storage import Storage, relpath_of


def audit_outputs(ledger: Ledger, dataset: str, storage: Storage) -> tuple[list[str], int]:
    """Every stored output: the file exists, its SHA-256 matches, images decode at the recorded size."""
    problems: list[str] = []
    identities = {a.identity for a in ledger.all_attempts(dataset) if a.state == STORED}
    checked = 0
    for out in ledger.all_outputs():
        if out.identity not in identities:
            continue
        checked += 1
        rel = relpath_of(storage, out.media_uri)
        try:
            data = storage.get(rel) if rel else b""
        except Exception as exc:
            problems.append(f"{out.media_uri}: missing ({type(exc).__name__})")
            continue
        if not data:
            problems.append(f"{out.media_uri}: missing")
            continue
        if hashlib.sha256(data).hexdigest() != out.media_sha256:
            problems.append(f"{out.media_uri}: SHA-256 differs from lineage")
            continue
        if out.mime_type.startswith("image/"):
            try:
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
                    if (img.width, img.height) != (out.width, out.height):
                        problems.append(
                            f"{out.media_uri}: {img.width}x{img.height}, lineage says {out.width}x{out.height}"
                        )
            except Exception as exc:
                problems.append(f"{out.media_uri}: does not decode ({exc})")
    return problems, checked


def duplicate_submissions(ledger: Ledger, dataset: str) -> list[str]:
    """An identity bought twice: two provider tasks for one attempt, or a new attempt while an earlier
    one had not terminally failed (the only legitimate reason to pay again)."""
    by_identity = defaultdict(list)
    for a in ledger.all_attempts(dataset):
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
