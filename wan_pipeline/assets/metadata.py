"""What a partition's materialization shows in the Dagster UI: full SHA-256, a visible thumbnail of every
output linked to its gallery entry, and USD wherever a price is known.

Kept apart from the generate op so the op stays about running tasks, and so the metadata can be checked
on its own (tests/test_ui_metadata.py).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from PIL import Image

from wan_pipeline.execution.outcome import Outcome
from wan_pipeline.money.ledger import StoredOutput
from wan_pipeline.outputs.gallery import gallery_link, gallery_thumbnail
from wan_pipeline.outputs.media import image_data_uri, preview_image
from wan_pipeline.outputs.storage import Storage, relpath_of
from wan_pipeline.outputs.thumbnails import ThumbnailCache

#: the larger thumbnails (behind "Show Markdown" in the UI): the UI shows markdown images at their own size
THUMB_SIDE = 320
#: the UI renders a markdown value in place only below this many characters (dagster-webserver 1.13)
INLINE_MARKDOWN_LIMIT = 1000
PREVIEW_SIDES = (240, 200, 160, 128, 96, 64)


def unknown_usd(rows: int) -> str:
    """What the UI shows instead of a made-up USD figure."""
    return f"unknown: no published price ({rows} row(s)); a spec can declare one under `pricing`"


def partition_usd(group: list[Outcome]) -> float | None:
    """USD of one partition, as the ledger recorded it (the host's figure, or its credits at a declared,
    documented or learned price: money.records); None when some attempt has no known price."""
    costs = [o.attempt.cost_usd for o in group if o.attempt is not None]
    if any(c is None for c in costs):
        return None
    return float(sum(c for c in costs if c is not None))


def partition_metadata(
    group: list[Outcome], store: Storage, thumbs: ThumbnailCache | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(generations metadata, media metadata) of one fully stored partition."""
    attempts = [o.attempt for o in group if o.attempt is not None]
    latencies = [o.latency_s for o in group if o.latency_s is not None]
    usd = partition_usd(group)
    gen: dict[str, Any] = {
        "status": "succeeded",
        "task_ids": ", ".join(a.task_id or "-" for a in attempts),
        "attempts": ", ".join(str(a.attempt) for a in attempts),
        "credits_reserved": float(sum(a.credits_reserved or 0 for a in attempts)),
        "credits_final": float(sum(a.credits_final or 0 for a in attempts)),
        "usd": dg.MetadataValue.float(round(usd, 6)) if usd is not None else unknown_usd(len(attempts)),
        "submitted_in_this_run": sum(o.submitted_now for o in group),
        "latency_s": round(max(latencies), 3) if latencies else dg.MetadataValue.null(),
        "seeds": ", ".join(str(o.task.seed) for o in group),
    }
    pairs = [(o, out) for o in group for out in o.outputs]
    outputs = [out for _, out in pairs]
    media: dict[str, Any] = {
        "files": len(outputs),
        "output_uri": outputs[0].media_uri if outputs else "",
        "output_uris": dg.MetadataValue.md("\n".join(f"- `{o.media_uri}`" for o in outputs)),
        # Full digests, one per line in output order: a prefix cannot be checked against a file.
        "sha256": "\n".join(o.media_sha256 for o in outputs),
        "size": ", ".join(f"{o.width}x{o.height}" for o in outputs),
        "bytes": int(sum(o.bytes for o in outputs)),
    }
    if usd is not None:
        media["usd"] = dg.MetadataValue.float(round(usd, 6))
    if pairs:
        media.update(output_images(store, pairs, thumbs))
        first_o, first_out = pairs[0]
        media["gallery"] = dg.MetadataValue.url(gallery_link(store, _row(first_o, first_out)))
    return gen, media


def _row(o: Outcome, out: StoredOutput) -> dict[str, Any]:
    return {"status": "succeeded", "prompt_id": o.task.prompt_id, "variant": o.task.variant,
            "output_index": out.output_index}  # fmt: skip


def output_images(
    store: Storage, pairs: list[tuple[Outcome, StoredOutput]], thumbs: ThumbnailCache | None = None
) -> dict[str, Any]:
    """Per output an inline `preview_v<variant>_<index>` (the UI renders markdown under 1,000 characters in
    place, longer markdown only behind "Show Markdown"), plus all of them larger in `thumbnails`."""
    entries: dict[str, Any] = {}
    large: list[str] = []
    for o, out in pairs:
        label = f"v{o.task.variant} #{out.output_index} · seed {o.task.seed} · {out.width}x{out.height}"
        link = gallery_link(store, _row(o, out))
        rel = relpath_of(store, out.media_uri)
        try:
            with preview_image(store.get(rel) if rel else b"") as img:
                entries[f"preview_v{o.task.variant}_{out.output_index}"] = dg.MetadataValue.md(
                    _fitting_preview(img, link)
                )
                large.append(f"**{label}** — [gallery entry]({link})\n\n![{label}]({image_data_uri(img, THUMB_SIDE)})")
                if thumbs is not None:  # the gallery's too, while the image is decoded (`outputs.thumbnails`)
                    thumbs.put(out.media_sha256, gallery_thumbnail(img))
        except Exception as exc:  # a thumbnail is a nicety; never fail a paid output over it
            large.append(f"**{label}** — [gallery entry]({link}) (no thumbnail: {type(exc).__name__})")
    entries["thumbnails"] = dg.MetadataValue.md("\n\n".join(large))
    return entries


def _fitting_preview(img: Image.Image, link: str) -> str:
    """The largest WebP preview, linked to the gallery entry, whose markdown the UI still shows inline."""
    md = ""
    for side in PREVIEW_SIDES:
        md = f"[![preview]({image_data_uri(img, side, fmt='WEBP', quality=50)})]({link})"
        if len(md) < INLINE_MARKDOWN_LIMIT:
            return md
    return f"[gallery entry]({link})"  # even the smallest preview is too long to show inline
