"""The model catalog: what each provider's Wan 2.7 models accept and what they cost.

Validation, `estimate` and the budget all read this one table. Numbers cite the seed or sheet they
come from; where a price is undocumented it is None and the estimate says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from wan_pipeline.providers.base import Issue
from wan_pipeline.providers.params import NeutralParams


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
    #: video priced per output second, by resolution gear (e.g. {"720p": 0.086}); None = not per second
    usd_per_second: dict[str, float] | None = None
    #: USD value of one credit where the host states it (reAPI: 1 credit = $0.001); None = no stated rate
    usd_per_credit: float | None = None


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
        supports=frozenset(
            {
                "seed",
                "aspect_ratio",
                "resolution",
                "duration",
                "negative_prompt",
                "prompt_extend",
                "watermark",
                "audio_setting",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        credits_per_output=80,
        usd_per_output=None,
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 95 * MB},
    ),
    # -- rivya video --
    # EvoLink (seed 002 + providers/evolink.md). Image: prompt ≤ 2000, 0 (t2i) or 1-4 reference URLs,
    # presets or explicit sizes (see providers/evolink.py for the size mapping), 1K/2K; price undocumented.
    *(
        ModelInfo(
            provider="evolink",
            model=_evolink_image,
            kind="image",
            max_prompt_chars=2000,
            aspect_ratios=(),  # any aspect within 1:8..8:1, through a preset or an explicit size
            resolutions=("1K", "2K"),
            default_aspect_ratio="1:1",
            default_resolution="1K",  # we always send `size`; nothing given = "square_hd"
            max_reference_images=4,
            supports=frozenset(
                {
                    "negative_prompt",
                    "seed",
                    "aspect_ratio",
                    "resolution",
                    "width",
                    "height",
                    "n",
                    "prompt_extend",
                    "reference_images",
                    "provider_params",
                }
            ),
            credits_per_output=None,  # Wan 2.7 image price and credit↔USD rate: undocumented (sheet "Pricing")
            usd_per_output=None,
            reference_mime={"image": ("image/jpeg", "image/png", "image/webp")},
            reference_max_bytes={"image": 20 * MB},
        )
        for _evolink_image in ("wan-2.7-image", "wan-2.7-image-pro")
    ),
    # EvoLink Wan 2.7 video (sheet): $0.086/s at 720p, $0.144/s at 1080p; 2-15 s (edit 2-10 s); prompt ≤ 5000.
    ModelInfo(
        provider="evolink",
        model="wan2.7-text-to-video",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="720p",
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset(
            {"negative_prompt", "seed", "aspect_ratio", "resolution", "duration", "prompt_extend", "provider_params"}
        ),
        usd_per_second={"720p": 0.086, "1080p": 0.144},
    ),
    ModelInfo(
        provider="evolink",
        model="wan2.7-image-to-video",
        kind="video",
        max_prompt_chars=5000,
        resolutions=("720p", "1080p"),
        default_resolution="720p",  # no aspect_ratio field: the output follows the input
        max_reference_images=2,  # first frame (+ last frame); with a clip to continue, the last frame only
        reference_video=True,
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset(
            {
                "negative_prompt",
                "seed",
                "resolution",
                "duration",
                "prompt_extend",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 100 * MB},
        usd_per_second={"720p": 0.086, "1080p": 0.144},
    ),
    ModelInfo(
        provider="evolink",
        model="wan2.7-reference-video",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="720p",
        max_reference_images=5,  # images + videos ≤ 5
        reference_video=True,
        durations=tuple(range(2, 16)),  # ≤ 10 with a reference video
        default_duration=5,
        supports=frozenset(
            {
                "negative_prompt",
                "seed",
                "aspect_ratio",
                "resolution",
                "duration",
                "prompt_extend",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 100 * MB},
        usd_per_second={"720p": 0.086, "1080p": 0.144},  # billed on input + output seconds
    ),
    ModelInfo(
        provider="evolink",
        model="wan2.7-video-edit",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),  # optional; absent = follows the input video
        resolutions=("720p", "1080p"),
        default_resolution="720p",
        max_reference_images=4,
        reference_video=True,
        durations=tuple(range(2, 11)),  # absent = keep the whole input (EvoLink's `duration: 0`)
        supports=frozenset(
            {
                "negative_prompt",
                "seed",
                "aspect_ratio",
                "resolution",
                "duration",
                "prompt_extend",
                "reference_images",
                "reference_video",
                "audio_setting",
                "provider_params",
            }
        ),
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 100 * MB},
        usd_per_second={"720p": 0.086, "1080p": 0.144},  # billed on input + output seconds
    ),
    # -- evolink models --
    # Seed 003 and the reAPI sheet: one parameter shape for both tiers; 7 aspect presets in `size`;
    # 1K/2K (4K on Pro, text-to-image only); ≤ 9 public HTTPS references; prompt ≤ 5000. Billed
    # ceil(per_image_usd × n × 1000) credits at $0.001 each, but the per-image USD is only on the model
    # page ("Pro > Standard"), so it stays None. Reference formats and 20 MB: Wan upstream (dashscope.md).
    (
        _REAPI_IMAGE := ModelInfo(
            provider="reapi",
            model="wan2.7-image",
            kind="image",
            max_prompt_chars=5000,
            aspect_ratios=("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"),
            resolutions=("1K", "2K"),
            default_aspect_ratio="1:1",  # host default when size is omitted: upstream's square (providers/reapi.py)
            default_resolution="2K",
            max_reference_images=9,
            supports=frozenset(
                {
                    "negative_prompt",
                    "seed",
                    "aspect_ratio",
                    "resolution",
                    "width",
                    "height",
                    "n",
                    "watermark",
                    "thinking",
                    "sequential",
                    "color_palette",
                    "regions",
                    "reference_images",
                    "provider_params",
                }
            ),
            credits_per_output=None,
            usd_per_output=None,
            reference_mime={"image": ("image/jpeg", "image/png", "image/webp")},
            reference_max_bytes={"image": 20 * MB},
            usd_per_credit=0.001,
        )
    ),
    replace(_REAPI_IMAGE, model="wan2.7-image-pro", resolutions=("1K", "2K", "4K")),
    # The reAPI sheet: umbrella `wan2.7-video`, billed per second (rate not in the sources), 720P/1080P;
    # only model/prompt/resolution/duration are documented. Duration 2-15 s and the defaults (1080P, 5 s,
    # 16:9 output) are Wan upstream's (dashscope.md), the reading providers/reapi.py writes down.
    ModelInfo(
        provider="reapi",
        model="wan2.7-video",
        kind="video",
        max_prompt_chars=5000,
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="1080p",
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset({"resolution", "duration", "provider_params"}),
        credits_per_output=None,
        usd_per_output=None,
        usd_per_second=None,
        usd_per_credit=0.001,
    ),
    # -- reapi models --
    # Seed 004 and the Runware sheet: positivePrompt ≤ 3000, width/height 768..2048 step 16 (Pro's range is
    # undocumented: the same range applies), ≤ 9 reference images, USD billing ($0.03 per image; Pro
    # $0.075 "per run", taken per image when numberResults > 1 — see providers/runware.py).
    (
        _RUNWARE_IMAGE := ModelInfo(
            provider="runware",
            model="alibaba:wan@2.7-image",
            kind="image",
            max_prompt_chars=3000,
            resolutions=("1K", "2K"),
            default_aspect_ratio="1:1",
            default_resolution="1K",
            max_reference_images=9,
            supports=frozenset(
                {
                    "seed",
                    "aspect_ratio",
                    "resolution",
                    "width",
                    "height",
                    "n",
                    "thinking",
                    "sequential",
                    "color_palette",
                    "regions",
                    "reference_images",
                    "provider_params",
                }
            ),
            usd_per_output=0.03,
            reference_mime={"image": ("image/jpeg", "image/png", "image/webp")},
        )
    ),
    replace(_RUNWARE_IMAGE, model="alibaba:wan@2.7-image-pro", usd_per_output=0.075),
    # The Runware sheet, `alibaba:wan@2.7`: ten allowed sizes (5 aspects × 720p/1080p), $0.10/s at 720p and
    # $0.15/s at 1080p on output (+ input video) seconds. Prompt limit undocumented for video: the image
    # page's 3000 is assumed; duration 2..15 is upstream's (the sheet caps it at 10 with references).
    ModelInfo(
        provider="runware",
        model="alibaba:wan@2.7",
        kind="video",
        max_prompt_chars=3000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="720p",
        max_reference_images=2,
        reference_video=True,
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset(
            {
                "seed",
                "aspect_ratio",
                "resolution",
                "width",
                "height",
                "n",
                "duration",
                "negative_prompt",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        usd_per_second={"720p": 0.10, "1080p": 0.15},
        reference_mime={
            "image": ("image/jpeg", "image/png", "image/webp"),
            "video": ("video/mp4", "video/quicktime", "video/webm"),
        },
    ),
    # -- runware models --
    # DashScope sheet (Model Studio, first-party): prompt ≤ 5000, 0–9 reference images, 1K/2K (+4K pro t2i only),
    # any aspect in [1:8, 8:1] as explicit W*H. Prices: the sheet's Singapore figures per generated image
    # ($0.030 / $0.075, reseller-reported; no official intl table). DashScope has no credits: USD only.
    (
        _DASHSCOPE_IMAGE := ModelInfo(
            provider="dashscope",
            model="wan2.7-image",
            kind="image",
            max_prompt_chars=5000,
            resolutions=("1K", "2K"),
            default_aspect_ratio="1:1",  # a tier without input images renders square
            default_resolution="2K",
            max_reference_images=9,
            supports=frozenset(
                {
                    "seed",
                    "aspect_ratio",
                    "resolution",
                    "width",
                    "height",
                    "n",
                    "watermark",
                    "thinking",
                    "sequential",
                    "color_palette",
                    "regions",
                    "reference_images",
                    "negative_prompt",
                    "prompt_extend",
                    "provider_params",
                }
            ),
            credits_per_output=None,
            usd_per_output=0.030,
            reference_mime={"image": ("image/jpeg", "image/png", "image/webp")},
            reference_max_bytes={"image": 20 * MB},
        )
    ),
    replace(_DASHSCOPE_IMAGE, model="wan2.7-image-pro", resolutions=("1K", "2K", "4K"), usd_per_output=0.075),
    # DashScope sheet, video: 720P/1080P (default 1080P), ratio 16:9 default, duration 2–15 s (default 5). Priced per
    # output second by tier ($0.10 720P, $0.15 1080P as resold by Runware; no official table); usd_per_output is
    # one output at the defaults (1080P, 5 s) and `estimate` computes the real figure from usd_per_second.
    ModelInfo(
        provider="dashscope",
        model="wan2.7-t2v",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="1080p",
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset(
            {
                "seed",
                "aspect_ratio",
                "resolution",
                "duration",
                "negative_prompt",
                "prompt_extend",
                "watermark",
                "provider_params",
            }
        ),
        usd_per_output=0.75,
        usd_per_second={"720p": 0.10, "1080p": 0.15},
    ),
    ModelInfo(
        provider="dashscope",
        model="wan2.7-i2v",
        kind="video",
        max_prompt_chars=5000,
        resolutions=("720p", "1080p"),
        default_resolution="1080p",  # the aspect follows the input frame or clip: no ratio
        max_reference_images=2,  # first_frame [+ last_frame]
        reference_video=True,  # first_clip
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset(
            {
                "seed",
                "resolution",
                "duration",
                "negative_prompt",
                "prompt_extend",
                "watermark",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        usd_per_output=0.75,
        usd_per_second={"720p": 0.10, "1080p": 0.15},
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 100 * MB},
    ),
    ModelInfo(
        provider="dashscope",
        model="wan2.7-r2v",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_aspect_ratio="16:9",
        default_resolution="1080p",
        max_reference_images=5,  # reference_image + reference_video ≤ 5 combined
        reference_video=True,
        durations=tuple(range(2, 16)),
        default_duration=5,
        supports=frozenset(
            {
                "seed",
                "aspect_ratio",
                "resolution",
                "duration",
                "prompt_extend",
                "watermark",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        usd_per_output=0.75,
        usd_per_second={"720p": 0.10, "1080p": 0.15},
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 100 * MB},
    ),
    ModelInfo(
        provider="dashscope",
        model="wan2.7-videoedit",
        kind="video",
        max_prompt_chars=5000,
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4"),
        resolutions=("720p", "1080p"),
        default_resolution="1080p",  # ratio defaults to the input's; duration 0 keeps the input length
        max_reference_images=3,
        reference_video=True,
        durations=tuple(range(2, 11)),
        supports=frozenset(
            {
                "seed",
                "aspect_ratio",
                "resolution",
                "duration",
                "negative_prompt",
                "prompt_extend",
                "watermark",
                "audio_setting",
                "reference_images",
                "reference_video",
                "provider_params",
            }
        ),
        usd_per_output=1.5,  # billed on the output length: at most a 10 s input at 1080P
        usd_per_second={"720p": 0.10, "1080p": 0.15},
        reference_mime={"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")},
        reference_max_bytes={"image": 20 * MB, "video": 100 * MB},
    ),
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
        f"'{value}' is not one of {', '.join(allowed)} for {info.provider}/{info.model}{_elsewhere(info, name, value)}"
    )


def _elsewhere(info: ModelInfo, name: str, value: object | None) -> str:
    others = [m for m in who_supports(name, value, kind=info.kind) if not m.startswith(f"{info.provider}/")]
    return f"; supported by {', '.join(others)}" if others else ""


class CatalogBacked:
    """What every provider derives from its catalog entries: model lookup and the checks common to all.

    Provider modules inherit this and add their own wire rules after `common_issues`.
    """

    name: str

    def models(self) -> tuple[str, ...]:
        return models_of(self.name)

    def info(self, model: str) -> ModelInfo:
        info = find_model(self.name, model)
        if info is None:
            from wan_pipeline.errors import ConfigError

            raise ConfigError(self._unknown_model(model))
        return info

    def unsupported_reason(self, info: ModelInfo, name: str) -> str:
        """Why a neutral parameter is refused; a provider may append its own explanation."""
        return unsupported(info, name)

    def prompt_fits(self, model: str, prompt: str) -> bool:
        """The prompt passes every check of `check` that reads it, so `check`'s answer for this prompt is the
        same as for any other that fits: the planner then checks each combination of parameters once, not each
        of 100,000 rows. A provider whose `check` reads the prompt otherwise says so here."""
        info = find_model(self.name, model)
        return info is not None and len(prompt) <= info.max_prompt_chars

    def common_issues(self, model: str, prompt: str, params: NeutralParams) -> tuple[ModelInfo | None, list[Issue]]:
        """Unknown model, over-long prompt, parameters the model does not take — every provider's first checks."""
        info = find_model(self.name, model)
        if info is None:
            return None, [Issue("model", self._unknown_model(model))]
        issues: list[Issue] = []
        if len(prompt) > info.max_prompt_chars:
            issues.append(Issue("prompt", f"{len(prompt)} characters; {model} allows at most {info.max_prompt_chars}"))
        issues.extend(Issue(n, self.unsupported_reason(info, n)) for n in params.effective() if n not in info.supports)
        return info, issues

    def _unknown_model(self, model: str) -> str:
        return f"{self.name} has no model '{model}' (known: {', '.join(self.models())})"
