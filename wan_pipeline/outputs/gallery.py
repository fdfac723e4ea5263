"""The gallery: one self-contained HTML page of everything a dataset holds, written under its storage root.

A card per lineage row (each stored output, each failed or pending attempt) with its thumbnail, prompt,
seed, mode, cost, status, task id and, for failures, the reason; totals on top; filters by status and
mode. Thumbnails are inlined as data URIs and the CSS and script are inline, so the page works opened
from disk, offline, and also when it is downloaded alone from S3. Stored local files are linked
relatively (``../media/...``) for the full-size view.
"""

from __future__ import annotations

import html
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from wan_pipeline.outputs.media import image_data_uri, preview_image
from wan_pipeline.outputs.storage import LocalStorage, Storage, relpath_of
from wan_pipeline.outputs.thumbnails import ThumbnailCache

GALLERY_PATH = "report/gallery.html"
THUMB_SIDE = 256


@dataclass(frozen=True)
class GallerySummary:
    uri: str
    outputs: int
    failed: int
    pending: int
    credits: float
    usd: float | None  # None: some billed row has no known USD price
    usd_unknown_rows: int


def entry_id(row: Mapping[str, Any]) -> str:
    """The HTML id of a row's card: stable across re-renders, so links into the page keep working."""
    if row.get("status") == "succeeded":
        return f"out-{row['prompt_id']}-v{row['variant']}-{row['output_index']}"
    return f"try-{row['prompt_id']}-v{row['variant']}-a{row['attempt']}"


def gallery_link(storage: Storage, row: Mapping[str, Any]) -> str:
    """Where a row's card is: a file:// URL for local storage, else the page's URI with the anchor."""
    uri = storage.uri(GALLERY_PATH)
    base = Path(uri).as_uri() if isinstance(storage, LocalStorage) else uri
    return f"{base}#{entry_id(row)}"


def summarize(rows: Iterable[Mapping[str, Any]], uri: str = "") -> GallerySummary:
    rows = list(rows)
    status = Counter(str(r.get("status")) for r in rows)
    usd = [r["cost_usd"] for r in rows if r.get("cost_usd") is not None]
    unknown = sum(1 for r in rows if r.get("cost_usd") is None and r.get("status") != "pending")
    return GallerySummary(
        uri=uri,
        outputs=status["succeeded"],
        failed=status["failed"],
        pending=status["pending"],
        credits=float(sum(r.get("credits_final") or 0.0 for r in rows)),
        usd=None if unknown else float(sum(usd)),
        usd_unknown_rows=unknown,
    )


#: the lineage columns the page shows (a reader of the lineage file need not load the others)
GALLERY_COLUMNS = [
    "status", "prompt_id", "variant", "output_index", "attempt", "prompt", "seed", "mode", "task_id", "width",
    "height", "media_uri", "media_sha256", "error_code", "error_message", "cost_usd", "credits_final",
]  # fmt: skip


def write_gallery(
    rows: list[dict[str, Any]], dataset: str, storage: Storage, cache: Path | None = None
) -> GallerySummary:
    """Render the lineage rows (``outputs.lineage.lineage_rows`` or the Parquet's) and store the page.

    Card by card, each thumbnail taken as its card is written — from `cache` (`outputs.thumbnails`: kept by an
    earlier page, or as the output's partition was materialized), or made from the file: the page's bytes are the
    one thing held whole (a dataset of 10,000 outputs would otherwise hold every thumbnail, every card and the
    page twice over)."""
    links = _media_links(storage, rows)
    kept = ThumbnailCache(cache, THUMB_SIDE) if cache is not None else None
    used: set[str] = set()
    buf = io.BytesIO()
    try:
        for part in _page_parts(rows, dataset, lambda r: _thumbnail(storage, r, kept, used), links):
            buf.write(part.encode("utf-8"))
        if kept is not None:
            kept.keep_only(used)
    finally:
        if kept is not None:
            kept.close()
    uri = storage.put(GALLERY_PATH, buf.getvalue(), "text/html; charset=utf-8")
    return summarize(rows, uri)


def gallery_thumbnail(img: Image.Image) -> str:
    """The page's thumbnail of a decoded image (a video's first frame), as a data URI."""
    return image_data_uri(img, THUMB_SIDE)


def _thumbnail(
    storage: Storage, row: Mapping[str, Any], kept: ThumbnailCache | None, used: set[str]
) -> str | None:
    rel = relpath_of(storage, str(row.get("media_uri") or ""))
    if rel is None:
        return None
    sha = str(row.get("media_sha256") or "")
    used.add(sha)
    found = kept.get(sha) if kept is not None else None
    if found is None:
        try:
            with preview_image(storage.get(rel)) as img:  # as the generation step makes it for the cache
                found = gallery_thumbnail(img)
        except Exception:  # a missing or undecodable file is shown as such; the audit check reports it
            return None
        if kept is not None:
            kept.put(sha, found)
    return found


def _media_links(storage: Storage, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Relative links from the page to local media files (S3 objects are named, not linked)."""
    if not isinstance(storage, LocalStorage):
        return {}
    # from the page's folder up to the root once, then each file's own path under it (a relpath per file
    # was a tenth of the page's time at 2,000 outputs)
    up = Path(os.path.relpath(storage.root, Path(storage.uri(GALLERY_PATH)).parent)).as_posix()
    links: dict[str, str] = {}
    for r in rows:
        rel = relpath_of(storage, str(r.get("media_uri") or ""))
        if rel is not None:
            links[entry_id(r)] = f"{up}/{rel}"
    return links


def render_gallery(
    rows: list[dict[str, Any]], dataset: str, thumbs: Mapping[str, str | None], links: Mapping[str, str]
) -> str:
    return "".join(_page_parts(rows, dataset, lambda r: thumbs.get(entry_id(r)), links))


_CARDS = "\x00cards\x00"  # where the cards go in the page (a mark no escaped text contains)


def _page_parts(
    rows: list[dict[str, Any]],
    dataset: str,
    thumb: Callable[[Mapping[str, Any]], str | None],
    links: Mapping[str, str],
) -> Iterator[str]:
    summary = summarize(rows)
    modes = sorted({str(r.get("mode")) for r in rows})
    usd = f"${summary.usd:.4f}" if summary.usd is not None else (
        f"unknown ({summary.usd_unknown_rows} row(s) without a published price)"
    )
    totals = (
        f'<span data-total="outputs">{summary.outputs}</span> outputs · '
        f'<span data-total="failed">{summary.failed}</span> failed · '
        f'<span data-total="pending">{summary.pending}</span> pending · '
        f'<span data-total="credits">{summary.credits:g}</span> credits · '
        f'<span data-total="usd">{html.escape(usd)}</span>'
    )
    options = "".join(f'<option value="{html.escape(m)}">{html.escape(m)}</option>' for m in modes)
    head, tail = _PAGE.format(
        title=html.escape(f"{dataset} — wan-pipeline gallery"),
        dataset=html.escape(dataset),
        totals=totals,
        mode_options=options,
        count=len(rows),
        cards=_CARDS,
        css=_CSS,
        script=_SCRIPT,
    ).split(_CARDS)
    yield head
    for n, r in enumerate(rows):
        shown = thumb(r) if r.get("status") == "succeeded" else None
        yield ("\n" if n else "") + _card(r, shown, links.get(entry_id(r)))
    yield tail


def _card(row: Mapping[str, Any], thumb: str | None, link: str | None) -> str:
    e = html.escape
    status = str(row.get("status"))
    if thumb:
        img = f'<img src="{thumb}" alt="{e(str(row.get("prompt_id")))}" loading="lazy">'
        media = f'<a href="{e(link)}">{img}</a>' if link else img
    else:
        media = f'<div class="nothumb">{e(status if status != "succeeded" else "no preview")}</div>'
    fields = [
        ("prompt id", f"{row.get('prompt_id')} / v{row.get('variant')}"),
        ("seed", row.get("seed")),
        ("mode", row.get("mode")),
        ("cost", _cost(row)),
        ("task id", row.get("task_id") or "—"),
        ("size", f"{row.get('width')}×{row.get('height')}" if row.get("width") else None),
        ("sha256", row.get("media_sha256")),
    ]
    if status != "succeeded":
        reason = ": ".join(str(x) for x in (row.get("error_code"), row.get("error_message")) if x) or "not finished"
        fields.append(("reason", reason))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in fields if v is not None)
    return (
        f'<article class="card {e(status)}" id="{e(entry_id(row))}" data-status="{e(status)}" '
        f'data-mode="{e(str(row.get("mode")))}">{media}'
        f'<p class="prompt">{e(str(row.get("prompt") or ""))}</p>'
        f'<span class="badge">{e(status)}</span><dl>{dl}</dl></article>'
    )


def _cost(row: Mapping[str, Any]) -> str:
    parts = []
    if row.get("cost_usd") is not None:
        parts.append(f"${row['cost_usd']:.4f}")
    if row.get("credits_final") is not None:
        parts.append(f"{row['credits_final']:g} credits")
    return " · ".join(parts) or "unknown"


_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:12px 20px;z-index:1}
h1{font-size:20px;margin:0 0 6px}
.totals{font-size:14px;margin-bottom:8px}
label{margin-right:14px;font-size:14px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:14px;padding:20px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px;font-size:13px}
.card:target{outline:3px solid #4f46e5}
.card img{width:100%;height:auto;border-radius:4px;display:block}
.card.failed{border-color:#dc2626}.card.pending{border-color:#d97706}
.nothumb{height:140px;display:flex;align-items:center;justify-content:center;background:#eee;border-radius:4px}
.prompt{font-weight:600;margin:8px 0 4px}
.badge{font-size:11px;text-transform:uppercase;padding:1px 6px;border-radius:8px;background:#dcfce7}
.failed .badge{background:#fee2e2}.pending .badge{background:#fef3c7}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 8px;margin:8px 0 0}
dt{color:#666}dd{margin:0;word-break:break-all}
"""

_SCRIPT = """
(function(){
  var status=document.getElementById('status-filter'), mode=document.getElementById('mode-filter');
  var shown=document.getElementById('shown');
  function apply(){
    var n=0;
    document.querySelectorAll('article.card').forEach(function(c){
      var ok=(!status.value||c.dataset.status===status.value)&&(!mode.value||c.dataset.mode===mode.value);
      c.hidden=!ok; if(ok){n++;}
    });
    shown.textContent=String(n);
  }
  status.addEventListener('change',apply); mode.addEventListener('change',apply); apply();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body><header><h1>{dataset}</h1>
<div class="totals">{totals}</div>
<label>Status <select id="status-filter"><option value="">all</option><option value="succeeded">succeeded</option>
<option value="failed">failed</option><option value="pending">pending</option></select></label>
<label>Mode <select id="mode-filter"><option value="">all</option>{mode_options}</select></label>
<span>showing <span id="shown">{count}</span> of {count}</span>
</header>
<main>
{cards}
</main>
<script>{script}</script>
</body></html>
"""

