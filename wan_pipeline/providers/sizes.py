"""Pixel sizes implied by an aspect ratio and a quality gear.

Wan 2.7 hosts describe image gears by total pixels (DashScope sheet: 1K ≈ 1024², 2K ≈ 2048²,
4K ≈ 4096², "actual size may differ slightly") and video tiers by a fixed table. The emulator renders
these sizes and verification accepts outputs whose aspect matches within a tolerance.
"""

from __future__ import annotations

import math

IMAGE_GEAR_SIDE = {"1K": 1024, "2K": 2048, "4K": 4096}

# DashScope sheet, video output sizes per tier and aspect ratio (W, H).
VIDEO_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "720p": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960), "4:3": (1104, 832), "3:4": (832, 1104)},
    "1080p": {
        "16:9": (1920, 1080),
        "9:16": (1080, 1920),
        "1:1": (1440, 1440),
        "4:3": (1648, 1248),
        "3:4": (1248, 1648),
    },
}


def parse_aspect(aspect: str) -> tuple[int, int]:
    w, h = aspect.split(":")
    return int(w), int(h)


def image_size(aspect: str, gear: str, multiple: int = 16) -> tuple[int, int]:
    """About gear² pixels in the given aspect, each side a multiple of `multiple`."""
    aw, ah = parse_aspect(aspect)
    total = IMAGE_GEAR_SIDE[gear] ** 2
    width = math.sqrt(total * aw / ah)
    height = total / width
    return _round(width, multiple), _round(height, multiple)


def video_size(aspect: str, resolution: str) -> tuple[int, int]:
    table = VIDEO_SIZES[resolution]
    if aspect in table:
        return table[aspect]
    # Not in the documented table: keep the tier's pixel count, like the image rule.
    base_w, base_h = table["16:9"]
    aw, ah = parse_aspect(aspect)
    width = math.sqrt(base_w * base_h * aw / ah)
    return _round(width, 16), _round(base_w * base_h / width, 16)


def aspect_matches(width: int, height: int, aspect: str, tolerance: float = 0.03) -> bool:
    aw, ah = parse_aspect(aspect)
    return abs((width / height) / (aw / ah) - 1.0) <= tolerance


def _round(x: float, multiple: int) -> int:
    return max(multiple, round(x / multiple) * multiple)
