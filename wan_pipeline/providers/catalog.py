"""The model catalog: what each provider's Wan 2.7 models accept and what they cost.

Validation, `estimate` and the budget all read this one table. Numbers cite the seed or sheet they
come from; where a price is undocumented it is None and the estimate says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ModelInfo:
    provider: str
    model: str
    kind: Literal["image", "video"]
    max_prompt_chars: int
    aspect_ratios: tuple[str, ...] = ()
    resolutions: tuple[str, ...] = ()
    default_aspect_ratio: str | None = None
    default_resolution: str | None = None
    max_reference_images: int = 0
    reference_video: bool = False
    durations: tuple[int, ...] = ()
    default_duration: int | None = None
    supports: frozenset[str] = field(default_factory=frozenset)  # neutral params it maps
    credits_per_output: float | None = None
    usd_per_output: float | None = None
    reference_mime: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reference_max_bytes: dict[str, int] = field(default_factory=dict)


MB = 1024 * 1024

CATALOG: tuple[ModelInfo, ...] = (
    # Seed 000 and the Rivya sheet: 5 credits FIXED, prompt ≤ 5000, 8 aspect ratios, 1K/2K, ≤ 9 refs.
    ModelInfo(
        provider="rivya",
        model="wan-2-7-image",
        kind="image",
        max_prompt_chars=5000,
        aspect_ratios=("1:1", "16:9", "4:3", "21:9", "3:4", "9:16", "8:1", "1:8"),
        resolutions=("1K", "2K"),
        default_aspect_ratio="1:1",
        default_resolution="2K",
        max_reference_images=9,
        supports=frozenset({"seed", "aspect_ratio", "resolution", "watermark", "reference_images", "provider_params"}),
        credits_per_output=5,
        usd_per_output=None,  # Rivya documents no credit-to-USD rate
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp")},
        reference_max_bytes={"image": 20 * MB},
    ),
    # Seed 001 and the Rivya sheet: 80 credits FIXED (the sheet reads FIXED as "not per second"), ≤ 2 refs.
    ModelInfo(
        provider="rivya",
        model="wan-2-7-video",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="720p",
        max_reference_images=2,
        reference_video=True,
        durations=(5, 10, 15),
        default_duration=5,
        supports=frozenset({"seed", "aspect_ratio", "resolution", "duration", "negative_prompt", "prompt_extend",
                            "watermark", "audio_setting", "reference_images", "reference_video", "provider_params"}),
        credits_per_output=80,
        usd_per_output=None,
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 95 * MB},
    ),
    # -- rivya video --
    # -- evolink models --
    # -- reapi models --
    # -- runware models --
    # -- dashscope models --
)


def find_model(provider: str, model: str) -> ModelInfo | None:
    for info in CATALOG:
        if info.provider == provider and info.model == model:
            return info
    return None


def models_of(provider: str) -> tuple[str, ...]:
    return tuple(i.model for i in CATALOG if i.provider == provider)


def who_supports(param: str, value: object | None = None, kind: str | None = None) -> list[str]:
    """'provider/model' names that accept a neutral parameter (and, if given, a value of it)."""
    out = []
    for info in CATALOG:
        if kind and info.kind != kind:
            continue
        if param not in info.supports:
            continue
        if param == "resolution" and value is not None and value not in info.resolutions:
            continue
        if param == "aspect_ratio" and value is not None and info.aspect_ratios and value not in info.aspect_ratios:
            continue
        out.append(f"{info.provider}/{info.model}")
    return out


def unsupported(info: ModelInfo, name: str) -> str:
    """Why a neutral parameter is refused for this model, naming who does take it."""
    return f"{info.provider}/{info.model} does not support '{name}'{_elsewhere(info, name, None)}"


def not_one_of(info: ModelInfo, name: str, value: str, allowed: tuple[str, ...]) -> str:
    return (
        f"'{value}' is not one of {', '.join(allowed)} for {info.provider}/{info.model}"
        f"{_elsewhere(info, name, value)}"
    )


def _elsewhere(info: ModelInfo, name: str, value: object | None) -> str:
    others = [m for m in who_supports(name, value, kind=info.kind) if not m.startswith(f"{info.provider}/")]
    return f"; supported by {', '.join(others)}" if others else ""
