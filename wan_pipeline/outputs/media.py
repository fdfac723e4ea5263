"""Verification of downloaded media: it decodes, its type is what the bytes say, its size is as asked."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from wan_pipeline.errors import MediaInvalid
from wan_pipeline.providers.mediatypes import sniff_mime
from wan_pipeline.providers.sizes import aspect_matches


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


def inspect_image(
    data: bytes, expect_aspect: str | None = None, expect_size: tuple[int, int] | None = None
) -> MediaInfo:
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


def preview_image(data: bytes) -> Image.Image:
    """The decoded image, or a video's first frame."""
    if (sniff_mime(data[:32]) or "").startswith("video/"):
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            return next(container.decode(video=0)).to_image()  # type: ignore[no-untyped-call,no-any-return]
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def image_data_uri(img: Image.Image, max_side: int, fmt: str = "JPEG", quality: int = 70) -> str:
    """`img` shrunk to fit max_side, encoded as a data URI (JPEG or WEBP)."""
    small = img.copy()
    small.thumbnail((max_side, max_side))
    out = io.BytesIO()
    small.convert("RGB").save(out, format=fmt, quality=quality)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(out.getvalue()).decode("ascii")


def inspect_video(
    data: bytes, expect_size: tuple[int, int] | None = None, expect_duration_s: float | None = None
) -> MediaInfo:
    """Demux and decode every frame with PyAV; duration, fps and size come from the stream itself."""
    import av

    if not data:
        raise MediaInvalid(code="empty_media", message="downloaded file is empty")
    mime = sniff_mime(data[:32])
    if mime is None or not mime.startswith("video/"):
        raise MediaInvalid(code="not_a_video", message=f"downloaded bytes are not a video (sniffed {mime})")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            frames = sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise MediaInvalid(code="undecodable_media", message=f"video does not decode: {exc}") from exc
    if frames == 0:
        raise MediaInvalid(code="undecodable_media", message="video has no frames")
    duration = frames / fps if fps else None
    warnings: list[str] = []
    if expect_size is not None and (width, height) != expect_size:
        warnings.append(f"size {width}x{height} differs from the requested {expect_size[0]}x{expect_size[1]}")
    if (
        expect_duration_s is not None
        and duration is not None
        and abs(duration - expect_duration_s) > max(0.5, 0.1 * expect_duration_s)
    ):
        warnings.append(f"duration {duration:.2f}s differs from the requested {expect_duration_s:g}s")
    return MediaInfo(
        mime, len(data), sha256_hex(data), width, height, duration_s=duration, fps=fps, warnings=tuple(warnings)
    )


def inspect_media(data: bytes, expect: Expectation) -> MediaInfo:
    """Images and videos alike; the sniffed type decides, the expectation only adds warnings."""
    mime = sniff_mime(data[:32]) or ""
    if mime.startswith("video/"):
        return inspect_video(data, expect.size, expect.duration_s)
    return inspect_image(data, expect.aspect, expect.size)


@dataclass(frozen=True)
class Expectation:
    kind: str  # image | video
    aspect: str | None = None
    size: tuple[int, int] | None = None
    duration_s: float | None = None
