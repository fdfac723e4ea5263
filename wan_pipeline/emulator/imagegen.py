"""Deterministic placeholder media: the same request always renders the same pixels."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw


def render_image(key: str, width: int, height: int, fmt: str = "PNG") -> bytes:
    """A gradient with a few shapes, every colour and position derived from `key`."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    c1 = (digest[0], digest[1], digest[2])
    c2 = (digest[3], digest[4], digest[5])
    small = Image.linear_gradient("L").resize((64, 64))
    base = Image.merge(
        "RGB",
        [small.point(lambda v, a=a, b=b: a + (b - a) * v // 255) for a, b in zip(c1, c2, strict=True)],
    ).resize((width, height))
    draw = ImageDraw.Draw(base)
    for i in range(4):
        d = digest[6 + i * 6 : 12 + i * 6]
        x0, y0 = d[0] * width // 256, d[1] * height // 256
        x1, y1 = x0 + max(8, d[2] * width // 512), y0 + max(8, d[3] * height // 512)
        colour = (d[4], d[5], d[0] ^ d[1])
        (draw.ellipse if i % 2 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    out = io.BytesIO()
    if fmt.upper() in ("JPG", "JPEG"):
        base.save(out, format="JPEG", quality=85)
    elif fmt.upper() == "WEBP":
        base.save(out, format="WEBP", quality=80)
    else:
        base.save(out, format="PNG", compress_level=1)
    return out.getvalue()
