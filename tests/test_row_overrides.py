"""A row's explicit choice always beats a spec default (DESIGN §4), including mutually exclusive groups:
an explicit width/height versus an aspect_ratio × resolution gear. Over every provider and group."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SpecWriter

from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.catalog import CATALOG
from wan_pipeline.providers.params import NeutralParams

#: a size each model takes (Runware video: one of its allowed pairs)
SIZES = {"video": (1280, 720), "image": (1024, 1024)}
SIZED = [(m.provider, m.model, m.kind) for m in CATALOG if "width" in m.supports]
GEARS = {"image": "1K", "video": "720p"}


def plan_params(write_spec: SpecWriter, provider: str, model: str, defaults: dict[str, Any],
                row: dict[str, Any]) -> dict[str, Any]:
    spec = load_spec(write_spec([{"prompt_id": "a", "prompt": "A lighthouse at dusk", **row}], provider=provider,
                                model=model, params=defaults))
    (task,) = build_plan(spec).tasks
    return {k: v for k, v in task.params.effective().items() if k != "seed"}


def test_every_provider_has_a_model_with_explicit_sizes_or_none_at_all() -> None:
    assert {p for p, _, _ in SIZED} == {"evolink", "reapi", "runware", "dashscope"}  # rivya takes presets only


@pytest.mark.parametrize(("provider", "model", "kind"), SIZED)
def test_row_size_beats_spec_aspect_and_gear(write_spec: SpecWriter, provider: str, model: str, kind: str) -> None:
    w, h = SIZES[kind]
    got = plan_params(write_spec, provider, model, {"aspect_ratio": "1:1" if kind == "image" else "16:9",
                                                    "resolution": GEARS[kind]}, {"width": w, "height": h})
    assert got == {"width": w, "height": h}


@pytest.mark.parametrize(("provider", "model", "kind"), SIZED)
@pytest.mark.parametrize("row_side", ["resolution", "aspect_ratio", "both"])
def test_row_gear_or_aspect_beats_spec_size(
    write_spec: SpecWriter, provider: str, model: str, kind: str, row_side: str
) -> None:
    w, h = SIZES[kind]
    aspect = "16:9"
    row: dict[str, Any] = {
        "resolution": {"resolution": GEARS[kind]},
        "aspect_ratio": {"aspect_ratio": aspect},
        "both": {"resolution": GEARS[kind], "aspect_ratio": aspect},
    }[row_side]
    got = plan_params(write_spec, provider, model, {"width": w, "height": h}, row)
    assert got == row


@pytest.mark.parametrize("provider", ["rivya"])
def test_presets_only_host_row_gear_and_aspect_beat_the_spec(write_spec: SpecWriter, provider: str) -> None:
    got = plan_params(write_spec, provider, "wan-2-7-image", {"aspect_ratio": "16:9", "resolution": "2K"},
                      {"resolution": "1K"})
    assert got == {"aspect_ratio": "16:9", "resolution": "1K"}
    got = plan_params(write_spec, provider, "wan-2-7-image", {"aspect_ratio": "16:9", "resolution": "2K"},
                      {"aspect_ratio": "1:1"})
    assert got == {"aspect_ratio": "1:1", "resolution": "2K"}


def test_a_row_may_still_contradict_itself() -> None:
    """Dropping defaults never hides the row's own conflict: that is still an error naming the row."""
    with pytest.raises(ValueError, match="either width/height or aspect_ratio"):
        NeutralParams(resolution="1K").merged(NeutralParams(width=1024, height=1024, aspect_ratio="1:1"))
    assert NeutralParams(width=1024, height=1024).merged(NeutralParams(negative_prompt="fog")).width == 1024
