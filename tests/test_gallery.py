"""The gallery page (outputs/gallery.py) written by the report asset for a generated dataset.

Read back as HTML (stdlib parser): a card per lineage row with a decodable inline thumbnail for every
stored output, the failure with its reason, totals that match lineage, and nothing fetched from outside.
The browser test (test_browser.py) checks the same page as a user sees it, filters included.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import GeneratedDataset, write_dataset
from PIL import Image

from wan_pipeline.assets.metadata import output_images
from wan_pipeline.execution.outcome import Outcome
from wan_pipeline.money.ledger import StoredOutput
from wan_pipeline.outputs.gallery import (
    GALLERY_PATH,
    THUMB_SIDE,
    entry_id,
    gallery_thumbnail,
    render_gallery,
    summarize,
    write_gallery,
)
from wan_pipeline.outputs.storage import LocalStorage
from wan_pipeline.outputs.thumbnails import THUMBNAILS_FILE, ThumbnailCache
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec


class Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.totals: dict[str, str] = {}
        self._total: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "article":
            self.cards.append(a)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])
        for name in ("src", "href"):
            if a.get(name, "").startswith(("http:", "https:", "//")):
                self.external.append(a[name])
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.external.append(a.get("href") or a.get("src") or "")
        self._total = a.get("data-total")

    def handle_data(self, data: str) -> None:
        if self._total:
            self.totals[self._total] = data
            self._total = None


def test_gallery_of_a_generated_dataset(generated_dataset: GeneratedDataset) -> None:
    page = generated_dataset.storage / GALLERY_PATH
    text = page.read_text(encoding="utf-8")
    parsed = Cards()
    parsed.feed(text)
    rows = pq.read_table(generated_dataset.storage / "lineage" / "lineage.parquet").to_pylist()

    assert len(parsed.cards) == len(rows) == generated_dataset.outputs + generated_dataset.failed
    assert {c["id"] for c in parsed.cards} == {entry_id(r) for r in rows}
    by_status = [c["data-status"] for c in parsed.cards]
    assert by_status.count("succeeded") == 5 and by_status.count("failed") == 1
    assert {c["data-mode"] for c in parsed.cards} == generated_dataset.modes

    # Every stored output has an inline thumbnail that decodes, linked to its full file relatively.
    assert len(parsed.images) == 5
    for src in parsed.images:
        head, _, b64 = src.partition(",")
        assert head == "data:image/jpeg;base64"
        with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
            assert max(img.size) == 256
    for href in parsed.links:
        assert not href.startswith("/") and (page.parent / href).resolve().is_file()
    assert parsed.external == []  # works offline, opened from disk

    assert parsed.totals["outputs"] == "5" and parsed.totals["failed"] == "1"
    assert float(parsed.totals["credits"]) == sum(r["credits_final"] or 0 for r in rows) == 25.0
    assert parsed.totals["usd"].startswith("unknown")  # Rivya publishes no credit price
    # The failure and its reason; the prompt in its own script; seeds and task ids of the outputs.
    [failed] = [r for r in rows if r["status"] == "failed"]
    assert failed["error_code"] == "content_policy_violation"
    assert "content_policy_violation" in text
    assert "一座雨中的江南茶馆" in text
    for r in rows:
        if r["status"] == "succeeded":
            assert r["task_id"] in text and str(r["seed"]) in text


def test_escaping_and_usd_totals() -> None:
    rows: list[dict[str, Any]] = [
        {"status": "succeeded", "prompt_id": "a", "variant": 0, "output_index": 0, "attempt": 1, "mode": "t2v",
         "prompt": "<script>alert(1)</script>", "seed": 1, "cost_usd": 0.5, "credits_final": None},
        {"status": "failed", "prompt_id": "b", "variant": 0, "output_index": None, "attempt": 2, "mode": "i2v",
         "prompt": "x", "seed": 2, "cost_usd": 0.0, "credits_final": 0.0, "error_code": "boom",
         "error_message": "<b>bad</b>"},
    ]
    html = render_gallery(rows, "d<1>", {}, {})
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>bad</b>" not in html
    summary = summarize(rows)
    assert (summary.outputs, summary.failed, summary.usd) == (1, 1, 0.5)
    assert '<option value="i2v">' in html and '<option value="t2v">' in html


def test_gallery_path_is_under_the_storage_root(generated_dataset: GeneratedDataset) -> None:
    assert (generated_dataset.storage / GALLERY_PATH).resolve().is_relative_to(generated_dataset.storage.resolve())
    assert Path(GALLERY_PATH).parts[0] == "report"


def _one_stored_image(
    tmp_path: Path, pid: str = "p1", colour: tuple[int, int, int] = (20, 120, 200)
) -> tuple[LocalStorage, dict[str, Any], Image.Image]:
    storage = LocalStorage(tmp_path / "out")
    img = Image.new("RGB", (40, 30), colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    uri = storage.put(f"media/{pid}/v0_0.png", buf.getvalue(), "image/png")
    row = {"status": "succeeded", "prompt_id": pid, "variant": 0, "output_index": 0, "attempt": 1,
           "prompt": "A harbour", "seed": 1, "mode": "t2i", "task_id": "t-1", "width": 40, "height": 30,
           "media_uri": uri, "media_sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "error_code": None,
           "error_message": None, "cost_usd": 0.01, "credits_final": 1.0}  # fmt: skip
    return storage, row, img


def test_a_partition_materialized_keeps_its_gallery_thumbnails(tmp_path: Path) -> None:
    """The generation step decodes each stored image for Dagster's previews; the gallery's thumbnail is made
    then (while the run waits on the provider) and kept, so the page after the run decodes no file."""
    storage, row, img = _one_stored_image(tmp_path)
    spec = load_spec(write_dataset(tmp_path / "data", [{"prompt_id": "p1", "prompt": "A harbour"}], name="d"))
    task = build_plan(spec).tasks[0]
    out = StoredOutput(identity=task.identity, attempt=1, output_index=0, source_url="https://host/x.png",
                       media_uri=row["media_uri"], media_sha256=row["media_sha256"], mime_type="image/png",
                       bytes=1, width=40, height=30, duration_s=None, fps=None, warnings=None,
                       stored_at="2026-12-01T00:00:00+00:00")  # fmt: skip
    cache = tmp_path / "state" / THUMBNAILS_FILE
    thumbs = ThumbnailCache(cache, THUMB_SIDE)
    try:
        output_images(storage, [(Outcome(task, "stored", outputs=[out]), out)], thumbs)
    finally:
        thumbs.close()
    Path(storage.uri("media/p1/v0_0.png")).unlink()  # the page cannot read the file: the kept one is used
    write_gallery([row], "d", storage, cache)
    assert _page_images(storage) == [gallery_thumbnail(img)]


def _page_images(storage: LocalStorage) -> list[str]:
    parsed = Cards()
    parsed.feed((Path(storage.root) / GALLERY_PATH).read_text(encoding="utf-8"))
    return parsed.images


def test_a_page_takes_the_thumbnails_an_earlier_page_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thumbnails are kept between pages (`outputs.thumbnails`): a report after a `generate` that added nothing
    reads no file; one whose file left the dataset is dropped; a cache that cannot be opened only costs time."""
    storage, first, _ = _one_stored_image(tmp_path, "p1", (20, 120, 200))
    _, second, _ = _one_stored_image(tmp_path, "p2", (200, 40, 10))
    cache = tmp_path / "state" / THUMBNAILS_FILE
    write_gallery([first, second], "d", storage, cache)
    made = _page_images(storage)
    assert len(made) == 2
    reads: list[str] = []
    real_get = storage.get
    monkeypatch.setattr(storage, "get", lambda rel: reads.append(rel) or real_get(rel))
    write_gallery([first, second], "d", storage, cache)
    assert reads == [] and _page_images(storage) == made
    write_gallery([first], "d", storage, cache)  # p2 is no longer in the dataset
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT sha256 FROM thumbs").fetchall() == [(first["media_sha256"],)]
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    write_gallery([first, second], "d", storage, blocked / THUMBNAILS_FILE)
    assert _page_images(storage) == made and len(reads) == 2  # made from the files again
