"""Deterministic short MP4 videos (H.264 via PyAV's bundled FFmpeg) for emulated video tasks."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import av
from PIL import Image, ImageDraw


@lru_cache(maxsize=16)
def render_video(key: str, width: int, height: int, duration_s: float, fps: int = 16) -> bytes:
    """A moving shape over a gradient whose colours come from `key`. Size is scaled down for speed only
    when the caller asks for it; the emulator asks for the real output size."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    bg = (digest[0], digest[1], digest[2])
    fg = (digest[3], digest[4], digest[5])
    frames = max(1, round(duration_s * fps))
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        base = Image.new("RGB", (stream.width, stream.height), bg)
        side = max(8, min(stream.width, stream.height) // 6)
        for i in range(frames):
            img = base.copy()
            x = (i * (stream.width - side)) // max(1, frames - 1)
            ImageDraw.Draw(img).rectangle((x, stream.height // 3, x + side, stream.height // 3 + side), fill=fg)
            frame = av.VideoFrame.from_image(img)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
