"""The emulator's own copy of the sizes, presets and pixel limits the hosts document.

The emulator stands in for the hosts, so it must not borrow these from the client
(``wan_pipeline.providers``): if the client read a sheet wrongly and the emulator imported the client's
reading, every test would agree with the mistake. These values are copied from the seeds
(``/work/shared/seeds``) and provider sheets (``/work/shared/providers``) — the section each comes from is
named beside it — and ``tests/test_emulator_limits.py`` compares them with the client's, so a disagreement
between the two readings fails a test instead of passing silently.

Source order: where a seed and a sheet disagree, the seed wins (the seeds are the documents the project
was created from; the sheets are fuller but second-hand). For the values in this module they agree; the
one nearby disagreement — seed 002's image create response has no ``usage`` while the EvoLink sheet's
example has one — is settled in ``emulator/evolink.py`` the same way (seed wins: image creates carry none).
"""

from __future__ import annotations

import math

# -- image gears -------------------------------------------------------------------------------------

#: DashScope sheet, "Create request > Image", `size`: tiers 1K (≈1024²), 2K (≈2048²), 4K (≈4096²) total pixels,
#: "actual size may differ slightly". reAPI (seed 003, `resolution`) and Rivya (seed 000, `resolution`) use
#: the same gear names; neither states pixels, so the DashScope reading (Alibaba's own) is used for all.
IMAGE_GEAR_SIDE: dict[str, int] = {"1K": 1024, "2K": 2048, "4K": 4096}

#: output sides are rounded to this multiple (Runware seed 004: width/height "step: 16"; the DashScope
#: sheet's video sizes, below, are multiples of 16 too)
SIDE_STEP = 16

# -- video tiers -------------------------------------------------------------------------------------

#: DashScope sheet, "Create request > Video (async only) — common shape", "Output sizes"; the EvoLink sheet,
#: "Create request > Video", "Output pixel sizes", lists the same ten. (Runware's sheet, "Wan 2.7 video",
#: lists 1088x832 / 1632x1248 for 4:3 — its emulator keeps its own table in emulator/runware.py.)
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

# -- EvoLink image sizes -----------------------------------------------------------------------------

#: seed 002, `size` "Options: Preset": the six preset names. EvoLink states no pixels for them; the
#: emulator reads each aspect-named preset as the 1K gear of its aspect and `square` as the smallest
#: square the model makes (768x768, DashScope sheet `size`: totals ∈ [768², 2048²]).
EVOLINK_PRESET_ASPECTS: dict[str, str] = {
    "square_hd": "1:1",
    "landscape_4_3": "4:3",
    "portrait_4_3": "3:4",
    "landscape_16_9": "16:9",
    "portrait_16_9": "9:16",
}
EVOLINK_SQUARE = (768, 768)
#: explicit `{width, height}` bounds: the EvoLink sheet ("Create request > Image": "Explicit {width,height}
#: bounds are not stated") leaves them open, so the model's own limits from the DashScope sheet ("Create
#: request > Image", `size`, non-pro-4K case) apply: total pixels in [768², 2048²], aspect within 1:8..8:1.
EVOLINK_MIN_PIXELS = 768 * 768
EVOLINK_MAX_PIXELS = 2048 * 2048
MAX_ASPECT = 8.0


def parse_aspect(aspect: str) -> tuple[int, int]:
    """"W:H" -> (W, H); the emulator also writes an input image's own "1536:1024" this way."""
    width, height = aspect.split(":")
    return int(width), int(height)


def image_size(aspect: str, gear: str) -> tuple[int, int]:
    """About gear² pixels in `aspect`, each side a multiple of SIDE_STEP (DashScope sheet, `size` tiers)."""
    aw, ah = parse_aspect(aspect)
    total = IMAGE_GEAR_SIDE[gear.upper()] ** 2
    width = math.sqrt(total * aw / ah)
    return _step(width), _step(total / width)


def video_size(aspect: str, resolution: str) -> tuple[int, int]:
    """The documented size of a tier and aspect; an undocumented aspect keeps the tier's 16:9 pixel count."""
    table = VIDEO_SIZES[resolution.lower()]
    if aspect in table:
        return table[aspect]
    base_w, base_h = table["16:9"]
    aw, ah = parse_aspect(aspect)
    width = math.sqrt(base_w * base_h * aw / ah)
    return _step(width), _step(base_w * base_h / width)


def evolink_preset_sizes() -> dict[str, tuple[int, int]]:
    """EvoLink preset name -> the pixel size the emulator renders it at."""
    return {
        **{preset: image_size(aspect, "1K") for preset, aspect in EVOLINK_PRESET_ASPECTS.items()},
        "square": EVOLINK_SQUARE,
    }


def _step(x: float) -> int:
    return max(SIDE_STEP, round(x / SIDE_STEP) * SIDE_STEP)
