"""EvoLink (api.evolink.ai) — `wan-2.7-image`, `wan-2.7-image-pro` (seed 002) and the four Wan 2.7 video
models of providers/evolink.md (`wan2.7-text-to-video`, `wan2.7-image-to-video`, `wan2.7-reference-video`,
`wan2.7-video-edit`).

Wire facts (seed 002 and the EvoLink sheet):
- POST /v1/images/generations (image models) or /v1/videos/generations (video models; `model` selects the
  behaviour) with a flat JSON body; both answer HTTP 200 with a task object
  `{created, id, model, object, progress, status, task_info, type[, usage]}`; then GET /v1/tasks/{id}
  until `completed` (`results[]`: URL strings, valid 24 h) or `failed` (`error: {code, message, type}`).
  States: `pending` -> `processing` -> `completed` | `failed` (seed 002 and sheet "Task states").
- Auth: `Authorization: Bearer <key>` on every call.
- Errors: `{"error": {"code", "message", "type"[, "param"]}}`; `code` is a string, except on /v1/credits
  where it is the integer HTTP status, so classification falls back to `type`, then to the status.
- No idempotency key, client request id or request-id echo (sheet "Idempotency"): a create that may have
  reached the host is never safe to re-send, so `supports_idempotency_key` is False and no key is sent.
- References are public URLs only. The sheet lists an images-only files host (files-api.evolink.ai), but
  it is another origin than the base URL and cannot carry video; we do not use it: `upload()` returns
  None and the engine presigns local files from S3 storage.
- Money: video is $0.086/s at 720p and $0.144/s at 1080p (sheet "Pricing"), billed on the generated
  duration for text/image-to-video and on input + output duration for reference-video and video-edit,
  whose input length we cannot know before submitting (so their USD estimate is unknown when a video
  input is involved). Wan 2.7 image prices and the credit-to-USD rate are undocumented: None, never
  guessed. The create answer reports `usage.credits_reserved` (a pre-charge; for images on `n`, final on
  the images actually produced): a completed image snapshot reports `Usage(images=len(results))`, from
  which the final charge is the reservation per requested image × images produced. Failed tasks are free,
  so a failed snapshot has credits_final 0. No seed is echoed.

Image keys. Seed 002's rendered page lost its JSON key names; we use the sheet's readings, which follow
EvoLink's sibling image models: `image_urls`, `n`, `size`, `negative_prompt`, `seed`, and pass everything
else (e.g. `enable_safety_checker`, `callback_url`) through `provider_params`.

Size mapping (DESIGN §5 "EvoLink size presets"). `size` is a preset or `{"width", "height"}` (seed 002).
EvoLink states no pixel sizes for its presets; we read the five aspect-named presets as the 1K gear of
their aspect (`sizes.image_size(aspect, "1K")`, square_hd = 1024x1024), so:

    aspect_ratio + resolution       ->  size
    1:1  + 1K                       ->  "square_hd"
    4:3  + 1K                       ->  "landscape_4_3"
    3:4  + 1K                       ->  "portrait_4_3"
    16:9 + 1K                       ->  "landscape_16_9"
    9:16 + 1K                       ->  "portrait_16_9"
    any other aspect, or 2K         ->  {"width": W, "height": H} = image_size(aspect, gear), scaled down
                                        (multiples of 16) if rounding passes the 2048x2048 pixel budget
    width + height                  ->  {"width": width, "height": height}
    nothing                         ->  defaults 1:1 + 1K = "square_hd" (the seed's example value)

`size` is always sent, so the output size never depends on an unstated host default. The `square` preset
matches no neutral gear and is never produced (provider_params can still send it).

Seed vs sheet: they agree on every image value (model ids, n 1-5 / 1-4, 1-4 reference URLs, prompt
<= 2000, negative prompt <= 500, seed 0-2147483647, the presets, the four states). One difference: seed
002's create response lists created, id, model, object, progress, status, task_info and type — no
`usage` — while the sheet's (video) create example carries `usage`. The seed wins for images: the
emulator answers image creates without `usage`; we read `usage` whenever it is present.

Open questions of the sheet, decided (wan_pipeline/emulator/evolink.py follows the same):
- Key names: the sheet's inferred `image_urls`/`n`/`size`/`negative_prompt`/`seed`; prompt expansion is
  `enable_prompt_expansion` (seed 002 words both flags "Whether to enable ...", like
  `enable_safety_checker`), mapped from neutral `prompt_extend`, and refused in text-to-image mode (the
  seed: "Only available in image editing mode").
- Model ids: exactly the seed's hyphenated `wan-2.7-image[-pro]`; `wan2.7-image[-pro]` is not assumed.
- Explicit size bounds: EvoLink states none, so we hold explicit sizes to the model's own limits as
  Alibaba documents them for wan2.7-image (dashscope.md): 768x768 <= width*height <= 2048x2048 and aspect
  within 1:8..8:1. 4K is not offered (the sheet: "No resolution/4K switch"): resolutions are 1K and 2K.
- `usage` is not repeated on polls (the task-detail schema does not show it); create carries it for video.
- No Retry-After on 429 (none documented); the emulator sends none and we honour one if it ever comes.
- A cancelled task reads `failed` with `error.code` `request_cancelled` (no cancel endpoint is used).
- Failure codes: the sheet's "fix-then-retry" codes are RejectedByProvider (content_policy_violation:
  ContentRejected), its "retry later" codes GenerationFailed (the engine resubmits with the same seed),
  quota_exceeded InsufficientCredits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wan_pipeline import errors as e
from wan_pipeline.providers.base import (
    Estimate,
    GenerationRequest,
    HostLimits,
    HttpCall,
    HttpReply,
    Issue,
    Mode,
    Reference,
    TaskSnapshot,
)
from wan_pipeline.providers.catalog import CatalogBacked, ModelInfo, not_one_of
from wan_pipeline.providers.evolink_replies import read_error, read_state
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.sizes import image_size, parse_aspect

IMAGES = "/v1/images/generations"
VIDEOS = "/v1/videos/generations"
TASKS = "/v1/tasks"

IMAGE_MODELS = ("wan-2.7-image", "wan-2.7-image-pro")
T2V = "wan2.7-text-to-video"
I2V = "wan2.7-image-to-video"
REFERENCE = "wan2.7-reference-video"
VIDEO_EDIT = "wan2.7-video-edit"
VIDEO_MODES: dict[str, Mode] = {
    T2V: Mode.TEXT_TO_VIDEO,
    I2V: Mode.IMAGE_TO_VIDEO,
    REFERENCE: Mode.REFERENCE_TO_VIDEO,
    VIDEO_EDIT: Mode.VIDEO_EDIT,
}

#: aspect (reduced) -> preset, at the 1K gear (module docstring, "Size mapping")
SIZE_PRESETS: dict[str, str] = {
    "1:1": "square_hd",
    "4:3": "landscape_4_3",
    "3:4": "portrait_4_3",
    "16:9": "landscape_16_9",
    "9:16": "portrait_16_9",
}
PRESET_GEAR = "1K"
#: the pixel size we read each preset as (the emulator renders these); `square` = the smallest Wan square
PRESET_SIZES: dict[str, tuple[int, int]] = {
    **{preset: image_size(aspect, PRESET_GEAR) for aspect, preset in SIZE_PRESETS.items()},
    "square": (768, 768),
}
MIN_PIXELS = 768 * 768
MAX_PIXELS = 2048 * 2048
MAX_ASPECT = 8.0

#: n per image mode (seed 002: "Text-to-image mode: supports 1-5; Image editing mode: supports 1-4")
MAX_N = {Mode.TEXT_TO_IMAGE: 5, Mode.IMAGE_EDIT: 4}
MAX_NEGATIVE_CHARS = 500
#: video seeds start at 1 (sheet "Video ... Common fields": `seed` 1-2147483647)
MIN_VIDEO_SEED = 1
#: reference-video: images + videos <= 5, duration <= 10 s when a video is given (sheet)
MAX_REFERENCE_INPUTS = 5
MAX_REFERENCE_DURATION_WITH_VIDEO = 10

STATES = ("pending", "processing", "completed", "failed")


@dataclass(frozen=True)
class _Inputs:
    images: tuple[str, ...]
    video: str | None


class EvoLink(CatalogBacked):
    name = "evolink"
    key_env = "EVOLINK_API_KEY"
    base_env = "EVOLINK_BASE_URL"
    default_base = "https://api.evolink.ai"
    supports_idempotency_key = False  # sheet "Idempotency": nothing documented; every POST is a new task
    upload_kinds: frozenset[str] = frozenset()  # public URLs only: local files travel as presigned S3 URLs
    #: the closest two polls of one task may be (sheet: "images every few seconds, video every 10–15 s")
    min_poll_interval_s: float = 2.0
    #: tasks in flight and creates per second when the resource config names none
    #: (sheet "Rate limits": per model, no published numbers)
    default_limits: HostLimits = HostLimits(max_concurrency=8, submits_per_second=2.0)
    charge_on_create: str | None = "credits"  # usage.credits_reserved (sheet "Pricing")

    # -- capabilities -------------------------------------------------------------------------
    def mode(self, model: str, params: NeutralParams) -> Mode:
        if model in VIDEO_MODES:
            return VIDEO_MODES[model]  # the model id selects the behaviour (sheet "Endpoints")
        # seed 002: image URLs "Automatically switch to image editing mode when provided"
        return Mode.IMAGE_EDIT if params.reference_images else Mode.TEXT_TO_IMAGE

    def check(self, model: str, prompt: str, params: NeutralParams) -> list[Issue]:
        info, issues = self.common_issues(model, prompt, params)
        if info is None:
            return issues
        if info.kind == "video":
            issues = [Issue(i.field, i.reason + " (EvoLink would silently truncate it)") if i.field == "prompt" else i
                      for i in issues]
        if params.negative_prompt is not None and len(params.negative_prompt) > MAX_NEGATIVE_CHARS:
            issues.append(Issue("negative_prompt", f"{len(params.negative_prompt)} characters; {model} allows at "
                                                   f"most {MAX_NEGATIVE_CHARS}"))
        if params.resolution is not None and "resolution" in info.supports \
                and params.resolution not in info.resolutions:
            issues.append(Issue("resolution", not_one_of(info, "resolution", params.resolution, info.resolutions)))
        for ref in [*(params.reference_images or []), *([params.reference_video] if params.reference_video else [])]:
            if ref.startswith("http://"):
                issues.append(Issue("reference_video" if ref == params.reference_video else "reference_images",
                                    f"'{ref}': EvoLink fetches references from public https:// URLs only"))
        if info.kind == "image":
            issues.extend(self._check_image(info, params))
        else:
            issues.extend(self._check_video(info, params))
        return issues

    def _check_image(self, info: ModelInfo, params: NeutralParams) -> list[Issue]:
        issues: list[Issue] = []
        mode = self.mode(info.model, params)
        refs = params.reference_images or []
        if len(refs) > info.max_reference_images:
            issues.append(Issue("reference_images", f"{len(refs)} images; {info.model} takes 1 to "
                                                    f"{info.max_reference_images} reference image URLs"))
        if params.n is not None and params.n > MAX_N[mode]:
            issues.append(Issue("n", f"{params.n} outputs; {info.model} makes 1 to {MAX_N[mode]} per task in "
                                     f"{mode.value} mode"))
        if params.prompt_extend is not None and mode is Mode.TEXT_TO_IMAGE:
            issues.append(Issue("prompt_extend", f"{info.model} offers prompt expansion only in image editing "
                                                 "mode (with reference_images)"))
        if params.aspect_ratio is not None:
            aw, ah = parse_aspect(params.aspect_ratio)
            if max(aw / ah, ah / aw) > MAX_ASPECT:
                issues.append(Issue("aspect_ratio", f"'{params.aspect_ratio}' is outside 1:8..8:1 for {info.model}"))
        if params.width is not None and params.height is not None:
            w, h = params.width, params.height
            if params.resolution is not None:
                issues.append(Issue("resolution", "give either width/height or resolution: an explicit "
                                                  f"{w}x{h} size has no gear on {info.model}"))
            if not MIN_PIXELS <= w * h <= MAX_PIXELS:
                issues.append(Issue("width", f"{w}x{h} is {w * h} pixels; {info.model} takes 768x768 "
                                             "(589824) to 2048x2048 (4194304) pixels"))
            if max(w / h, h / w) > MAX_ASPECT:
                issues.append(Issue("width", f"{w}x{h} is outside the aspect range 1:8..8:1 of {info.model}"))
        return issues

    def _check_video(self, info: ModelInfo, params: NeutralParams) -> list[Issue]:
        issues: list[Issue] = []
        model = info.model
        if params.seed is not None and params.seed < MIN_VIDEO_SEED and "seed" in info.supports:
            issues.append(Issue("seed", f"EvoLink video seeds are 1 to 2147483647; {params.seed} is refused"))
        if params.aspect_ratio is not None and "aspect_ratio" in info.supports \
                and params.aspect_ratio not in info.aspect_ratios:
            issues.append(Issue("aspect_ratio", not_one_of(info, "aspect_ratio", params.aspect_ratio,
                                                           info.aspect_ratios)))
        if params.duration is not None and "duration" in info.supports and params.duration not in info.durations:
            issues.append(Issue("duration", f"{params.duration} s; {model} makes {info.durations[0]} to "
                                            f"{info.durations[-1]} s"))
        images = params.reference_images or []
        video = params.reference_video
        if len(images) > info.max_reference_images and "reference_images" in info.supports:
            issues.append(Issue("reference_images", f"{len(images)} images; {model} takes at most "
                                                    f"{info.max_reference_images}"))
        if model == I2V:
            # Sheet: first frame, first+last frame, or a clip to continue (optionally towards a last frame).
            if not images and not video:
                issues.append(Issue("reference_images", f"{model} needs a first frame (reference_images) or a "
                                                        "clip to continue (reference_video)"))
            elif video and len(images) > 1:
                issues.append(Issue("reference_images", f"with a reference_video, {model} takes at most one "
                                                        "image (the last frame)"))
        elif model == REFERENCE:
            if not images and not video:
                issues.append(Issue("reference_images", f"{model} needs at least one reference image or video"))
            if len(images) + (1 if video else 0) > MAX_REFERENCE_INPUTS:
                issues.append(Issue("reference_images", f"{len(images)} images + {1 if video else 0} video; "
                                                        f"{model} takes at most {MAX_REFERENCE_INPUTS} in all"))
            if video and params.duration is not None and params.duration > MAX_REFERENCE_DURATION_WITH_VIDEO:
                issues.append(Issue("duration", f"{params.duration} s; with a reference video {model} makes at "
                                                f"most {MAX_REFERENCE_DURATION_WITH_VIDEO} s"))
        elif model == VIDEO_EDIT and not video:
            issues.append(Issue("reference_video", f"{model} needs the video to edit (reference_video)"))
        return issues

    def estimate(self, model: str, params: NeutralParams) -> Estimate:
        info = self.info(model)
        if info.usd_per_second is None:
            return Estimate(credits=info.credits_per_output, usd=info.usd_per_output)
        # Reference-video and video-edit bill input + output seconds; a video input's length is unknown here.
        if model in (REFERENCE, VIDEO_EDIT) and params.reference_video:
            return Estimate(credits=None, usd=None)
        seconds = params.duration or info.default_duration
        rate = info.usd_per_second.get(params.resolution or info.default_resolution or "")
        if seconds is None or rate is None:
            return Estimate(credits=None, usd=None)
        return Estimate(credits=None, usd=round(rate * seconds, 6))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # -- wire mapping -------------------------------------------------------------------------
    def image_body(self, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        urls = _urls(request).images
        if urls:
            body["image_urls"] = list(urls)
        body["n"] = p.n or 1
        body["size"] = size_field(p)
        if p.negative_prompt is not None:
            body["negative_prompt"] = p.negative_prompt
        if p.seed is not None:
            body["seed"] = p.seed
        if p.prompt_extend is not None:
            body["enable_prompt_expansion"] = p.prompt_extend
        return body

    def video_body(self, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        model = request.model
        inputs = _urls(request)
        body: dict[str, Any] = {"model": model}
        if request.prompt:
            body["prompt"] = request.prompt
        if p.negative_prompt is not None:
            body["negative_prompt"] = p.negative_prompt
        if model == I2V:
            if inputs.video:
                body["generation_mode"] = "video_continuation"
                body["video_urls"] = [inputs.video]
                if inputs.images:
                    body["image_end"] = inputs.images[0]
            else:
                body["generation_mode"] = "first_last_frame" if len(inputs.images) > 1 else "first_frame"
                body["image_start"] = inputs.images[0]
                if len(inputs.images) > 1:
                    body["image_end"] = inputs.images[1]
        elif model == REFERENCE:
            if inputs.images:
                body["image_urls"] = list(inputs.images)
            if inputs.video:
                body["video_urls"] = [inputs.video]
        elif model == VIDEO_EDIT:
            body["video_urls"] = [inputs.video]
            if inputs.images:
                body["image_urls"] = list(inputs.images)
            if p.audio_setting is not None:
                body["keep_original_sound"] = p.audio_setting == "origin"
        if p.aspect_ratio is not None:
            body["aspect_ratio"] = p.aspect_ratio
        if p.resolution is not None:
            body["quality"] = p.resolution  # EvoLink's field is `quality`, not `resolution` (sheet)
        if p.duration is not None:
            body["duration"] = p.duration
        if p.seed is not None:
            body["seed"] = p.seed
        if p.prompt_extend is not None:
            body["prompt_extend"] = p.prompt_extend
        return body

    def submit(self, request: GenerationRequest, idempotency_key: str) -> HttpCall:
        # No idempotency key and no client reference exist on EvoLink: the body alone, deterministic.
        info = self.info(request.model)
        if info.kind == "image":
            path, body = IMAGES, self.image_body(request)
        else:
            path, body = VIDEOS, self.video_body(request)
        if request.params.provider_params:
            body.update(request.params.provider_params)
        return HttpCall("POST", path, json_body=body)

    def presubmit_task_id(self, request: GenerationRequest, idempotency_key: str) -> str | None:
        return None  # EvoLink names its tasks (`task-unified-<unix>-<8 chars>`)

    def accepted(self, reply: HttpReply) -> TaskSnapshot:
        return self.state(reply)  # the create answer is the task object itself (status `pending`)

    def poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"{TASKS}/{task_id}")

    def state(self, reply: HttpReply) -> TaskSnapshot:
        return read_state(reply)

    def error(self, reply: HttpReply) -> e.ProviderError:
        return read_error(reply)

    # -- uploads ------------------------------------------------------------------------------
    def upload(self, model: str, ref: Reference, data: bytes) -> HttpCall | None:
        return None  # public URLs only (module docstring): the engine presigns local files from S3

    def uploaded(self, ref: Reference, reply: HttpReply) -> Reference:
        raise e.ConfigError("evolink has no upload API in this pipeline; references are public https:// URLs")


# -- mapping helpers ------------------------------------------------------------------------------


def size_field(p: NeutralParams) -> str | dict[str, int]:
    """Neutral size parameters -> EvoLink `size` (module docstring, "Size mapping")."""
    if p.width is not None and p.height is not None:
        return {"width": p.width, "height": p.height}
    aspect = reduced_aspect(p.aspect_ratio or "1:1")
    gear = p.resolution or PRESET_GEAR
    if gear == PRESET_GEAR and aspect in SIZE_PRESETS:
        return SIZE_PRESETS[aspect]
    width, height = explicit_size(aspect, gear)
    return {"width": width, "height": height}


def explicit_size(aspect: str, gear: str) -> tuple[int, int]:
    """image_size(aspect, gear), scaled down in steps of 16 if rounding passed the 2048x2048 budget."""
    width, height = image_size(aspect, gear)
    if width * height > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / (width * height))
        width, height = int(width * scale) // 16 * 16, int(height * scale) // 16 * 16
    return width, height


def reduced_aspect(aspect: str) -> str:
    w, h = parse_aspect(aspect)
    g = math.gcd(w, h)
    return f"{w // g}:{h // g}"


def _urls(request: GenerationRequest) -> _Inputs:
    """The references' public URLs (the engine resolves local files to presigned URLs before submit)."""
    for ref in request.references:
        if not ref.url:
            raise e.ConfigError(f"'{ref.source}' has no public URL; EvoLink takes references only as https URLs")
    images = tuple(str(r.url) for r in request.references if r.kind == "image")
    videos = [str(r.url) for r in request.references if r.kind == "video"]
    return _Inputs(images=images, video=videos[0] if videos else None)


PROVIDER = EvoLink()
