"""The emulator and the client read the same seeds and sheets separately; here the two readings must agree.

The emulator keeps its own copy of every size, preset and limit (wan_pipeline/emulator/limits.py and the
protocol modules) so that a client mistake in one of them is not silently shared. These tests are where a
disagreement shows up: if one side changes, decide from the seed (or sheet) which is right and fix the other.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from wan_pipeline.emulator import common as emu_common
from wan_pipeline.emulator import dashscope as emu_dashscope
from wan_pipeline.emulator import evolink as emu_evolink
from wan_pipeline.emulator import limits as emu
from wan_pipeline.emulator import reapi as emu_reapi
from wan_pipeline.emulator import runware as emu_runware
from wan_pipeline.emulator.mediatypes import sniff_mime as emulator_sniff
from wan_pipeline.execution.wire import is_loopback_http as client_loopback
from wan_pipeline.providers import dashscope, evolink, reapi, runware, sizes
from wan_pipeline.providers.mediatypes import sniff_mime as client_sniff

#: every aspect any seed or sheet names (Rivya's eight, reAPI's seven, the video five) plus an input image's own
ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "8:1", "1:8", "1536:1024")


def test_image_gears_agree() -> None:
    assert emu.IMAGE_GEAR_SIDE == sizes.IMAGE_GEAR_SIDE
    for aspect in ASPECTS:
        for gear in emu.IMAGE_GEAR_SIDE:
            assert emu.image_size(aspect, gear) == sizes.image_size(aspect, gear), (aspect, gear)


def test_video_tiers_agree() -> None:
    assert emu.VIDEO_SIZES == sizes.VIDEO_SIZES
    for aspect in ASPECTS:
        for tier in emu.VIDEO_SIZES:
            assert emu.video_size(aspect, tier) == sizes.video_size(aspect, tier), (aspect, tier)


def test_evolink_presets_bounds_and_models_agree() -> None:
    assert emu_evolink.PRESET_SIZES == evolink.PRESET_SIZES
    assert list(emu_evolink.PRESET_SIZES) == list(evolink.PRESET_SIZES)  # the emulator's error lists them in order
    assert (emu.EVOLINK_MIN_PIXELS, emu.EVOLINK_MAX_PIXELS) == (evolink.MIN_PIXELS, evolink.MAX_PIXELS)
    assert emu.MAX_ASPECT == evolink.MAX_ASPECT
    assert emu_evolink.IMAGE_MODELS == evolink.IMAGE_MODELS
    assert emu_evolink.VIDEO_MODELS == (evolink.T2V, evolink.I2V, evolink.REFERENCE, evolink.VIDEO_EDIT)


def test_other_protocols_model_ids_and_sizes_agree() -> None:
    assert emu_reapi.PRO == reapi.PRO and reapi.PRO in emu_reapi.IMAGE_MODELS
    assert (emu_reapi.IMAGES, emu_reapi.VIDEOS, emu_reapi.TASKS) == (reapi.IMAGES, reapi.VIDEOS, reapi.TASKS)
    assert emu_dashscope.IMAGE_ASYNC == dashscope.IMAGE_ASYNC
    assert emu_dashscope.IMAGE_SYNC == dashscope.IMAGE_SYNC
    assert emu_dashscope.VIDEO_SYNTHESIS == dashscope.VIDEO_SYNTHESIS
    assert emu_dashscope.MAX_NEGATIVE == dashscope.MAX_NEGATIVE_PROMPT
    assert tuple(emu_dashscope.IMAGE_USD) == dashscope.IMAGE_MODELS
    assert emu_dashscope.VIDEO_MODELS == (dashscope.T2V, dashscope.I2V, dashscope.R2V, dashscope.VIDEOEDIT)
    assert tuple(emu_runware.IMAGE_PRICES) == runware.IMAGE_MODELS
    assert emu_runware.VIDEO_MODEL == runware.VIDEO_MODEL
    assert {tier: sorted(pairs) for tier, pairs in emu_runware.VIDEO_PAIRS.items()} == {
        tier: sorted(pairs.values()) for tier, pairs in runware.VIDEO_PAIRS.items()
    }


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


HEADS = {
    "png": _encoded("PNG"),
    "jpeg": _encoded("JPEG"),
    "webp": _encoded("WEBP"),
    "gif": _encoded("GIF"),
    "bmp": _encoded("BMP"),
    "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",
    "text": b"hello, not an image at all",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_media_sniffing_agrees(name: str) -> None:
    head = HEADS[name][:32]
    assert emulator_sniff(head) == client_sniff(head)


def test_media_sniffing_names_what_it_knows() -> None:
    known = {name: emulator_sniff(HEADS[name][:32]) for name in ("png", "jpeg", "webp", "gif", "mp4", "mov", "webm")}
    assert known == {
        "png": "image/png",
        "jpeg": "image/jpeg",
        "webp": "image/webp",
        "gif": "image/gif",
        "mp4": "video/mp4",
        "mov": "video/quicktime",
        "webm": "video/webm",
    }
    assert emulator_sniff(HEADS["bmp"][:32]) is None and emulator_sniff(HEADS["text"][:32]) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/bucket/a.png",
        "http://localhost/x",
        "http://[::1]:8080/x",
        "http://127.8.9.10/x",
        "https://127.0.0.1/x",
        "http://example.com/x",
        "http://10.0.0.1/x",
        "ftp://127.0.0.1/x",
        "http:///nohost",
    ],
)
def test_loopback_rule_agrees(url: str) -> None:
    assert emu_common.is_loopback_http(url) == client_loopback(url)
