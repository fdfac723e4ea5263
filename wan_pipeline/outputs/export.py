"""Exports of the stored outputs in the forms ML users load.

- ``hf``: a Hugging Face image/video folder. Media files plus ``metadata.jsonl`` whose ``file_name``
  names each file and whose other columns are its lineage (prompt, seed, params, fingerprint, cost,
  sha256, ...): ``datasets.load_dataset("imagefolder", data_dir=DIR)`` (``"videofolder"`` for video).
- ``webdataset``: tar shards of at most ``shard_size`` samples, each sample a media file and its JSON
  record under one key (``<key>.png`` + ``<key>.json``), readable by ``webdataset.WebDataset``.

Only succeeded outputs are exported (failures stay in the lineage and the gallery). Both are written
through a ``Storage`` (a local directory for the CLI's ``--out``, the dataset's own storage for the
asset), deterministically: same ledger, same bytes.
"""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from wan_pipeline.errors import WanPipelineError
from wan_pipeline.outputs.storage import Storage, relpath_of

ExportFormat = Literal["hf", "webdataset"]
DEFAULT_SHARD_SIZE = 1000
#: the lineage columns each exported record carries (besides file_name / the WebDataset key)
RECORD_COLUMNS = (
    "prompt_id", "variant", "output_index", "prompt", "negative_prompt", "mode", "provider", "model",
    "seed", "provider_seed", "fingerprint", "task_id", "credits_final", "cost_usd", "media_sha256",
    "mime_type", "bytes", "width", "height", "duration_s", "fps",
)  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    format: ExportFormat
    location: str  # the folder (hf) or the first shard's folder (webdataset), as the storage names it
    samples: int
    files: list[str]  # what was written, relative to the destination


def sample_key(row: Mapping[str, Any]) -> str:
    """A WebDataset key and file stem: no dots (WebDataset splits a name at its first dot)."""
    raw = f"{row['prompt_id']}__v{row['variant']}__{row['output_index']}"
    return raw.replace(".", "_")


def record(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-safe lineage record of one output; ``params`` is the effective parameters as an object
    serialized to a string (its keys differ from row to row, which a columnar reader cannot type)."""
    out: dict[str, Any] = {c: row.get(c) for c in RECORD_COLUMNS}
    out["sha256"] = out.pop("media_sha256")
    out["params"] = row.get("params_json") or "{}"
    return out


def export_dataset(
    rows: list[dict[str, Any]],
    source: Storage,
    dest: Storage,
    fmt: ExportFormat,
    shard_size: int = DEFAULT_SHARD_SIZE,
    card: str | None = None,
) -> ExportResult:
    """`card` (outputs.card.dataset_card) becomes the Hugging Face folder's README.md, its dataset card."""
    if fmt == "hf":
        return export_hf(rows, source, dest, card)
    if fmt == "webdataset":
        return export_webdataset(rows, source, dest, shard_size)
    raise WanPipelineError(f"unknown export format {fmt!r}: use hf or webdataset")


def _stored(rows: list[dict[str, Any]], source: Storage) -> Iterator[tuple[dict[str, Any], str, bytes]]:
    """(row, file name, bytes) for every succeeded output, in a stable order."""
    ok = [r for r in rows if r.get("status") == "succeeded" and r.get("media_uri")]
    for row in sorted(ok, key=lambda r: (str(r["prompt_id"]), r["variant"], r["output_index"])):
        rel = relpath_of(source, str(row["media_uri"]))
        if rel is None:
            raise WanPipelineError(f"{row['media_uri']} is not under the dataset's storage {source.root}")
        yield row, sample_key(row) + PurePosixPath(rel).suffix.lower(), source.get(rel)


def export_hf(rows: list[dict[str, Any]], source: Storage, dest: Storage, card: str | None = None) -> ExportResult:
    lines: list[str] = []
    files: list[str] = []
    for row, name, data in _stored(rows, source):
        dest.put(name, data, str(row.get("mime_type") or "application/octet-stream"))
        files.append(name)
        lines.append(json.dumps({"file_name": name, **record(row)}, ensure_ascii=False, default=str))
    dest.put("metadata.jsonl", ("\n".join(lines) + "\n" if lines else "").encode("utf-8"), "application/jsonl")
    files.append("metadata.jsonl")
    if card is not None:
        dest.put("README.md", card.encode("utf-8"), "text/markdown; charset=utf-8")
        files.append("README.md")
    return ExportResult("hf", dest.root, len(lines), files)


def export_webdataset(
    rows: list[dict[str, Any]], source: Storage, dest: Storage, shard_size: int = DEFAULT_SHARD_SIZE
) -> ExportResult:
    if shard_size < 1:
        raise WanPipelineError(f"shard size must be at least 1 sample, got {shard_size}")
    shards: list[str] = []
    samples = 0
    stored = _stored(rows, source)
    while chunk := list(itertools.islice(stored, shard_size)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for row, name, data in chunk:
                _add(tar, name, data)
                _add(tar, sample_key(row) + ".json", json.dumps(record(row), ensure_ascii=False, default=str).encode())
        dest.put(shard_name(len(shards)), buf.getvalue(), "application/x-tar")
        shards.append(shard_name(len(shards)))
        samples += len(chunk)
    return ExportResult("webdataset", dest.root, samples, shards)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible shards: the same outputs give the same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
