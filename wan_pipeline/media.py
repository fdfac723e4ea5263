"""Verification of downloaded media: it decodes, its type is what the bytes say, its size is as asked."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from wan_pipeline.errors import MediaInvalid
from wan_pipeline.mediatypes import sniff_mime
from wan_pipeline.sizes import aspect_matches


@dataclass(frozen=True)
class MediaInfo:
    mime_type: str
    bytes: int
    sha256: str
    width: int | None
    height: int | None
    duration_s: float | None = None
    fps: float | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inspect_image(data: bytes, expect_aspect: str | None = None, expect_size: tuple[int, int] | None = None) -> MediaInfo:
    """Decode fully; a wrong aspect or size is recorded as a warning, never discards a paid output."""
    if not data:
        raise MediaInvalid(code="empty_media", message="downloaded file is empty")
    mime = sniff_mime(data[:32])
    if mime is None or not mime.startswith("image/"):
        raise MediaInvalid(code="not_an_image", message=f"downloaded bytes are not an image (sniffed {mime})")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes every pixel: catches truncation that verify() would miss
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise MediaInvalid(code="undecodable_media", message=f"image does not decode: {exc}") from exc
    warnings: list[str] = []
    if expect_size is not None and (width, height) != expect_size:
        tol = 0.05
        if abs(width / expect_size[0] - 1) > tol or abs(height / expect_size[1] - 1) > tol:
            warnings.append(f"size {width}x{height} differs from the requested {expect_size[0]}x{expect_size[1]}")
    elif expect_aspect is not None and not aspect_matches(width, height, expect_aspect):
        warnings.append(f"size {width}x{height} does not have the requested aspect {expect_aspect}")
    return MediaInfo(mime, len(data), sha256_hex(data), width, height, warnings=tuple(warnings))


def thumbnail_data_uri(data: bytes, max_side: int = 96) -> str:
    """A small JPEG as a data URI, for Dagster metadata (markdown renders it in the UI)."""
    with Image.open(io.BytesIO(data)) as img:
        img.thumbnail((max_side, max_side))
        out = io.BytesIO()
        img.convert("RGB").save(out, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
