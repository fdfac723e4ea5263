"""Runware REST API — `alibaba:wan@2.7-image`, `alibaba:wan@2.7-image-pro` (seed 004) and `alibaba:wan@2.7` video.

Wire facts (seed 004 and providers/runware.md):
- One endpoint, `POST /v1`, whose body is a JSON *array* of task objects; each task carries its own
  `taskType` and a client-chosen `taskUUID` (UUID v4). Answers are `{"data": [...]}` and/or
  `{"errors": [...]}`, matched to tasks by `taskUUID`.
- Images: `taskType: imageInference`, pixel `width`/`height` (768..2048, step 16), `settings`
  (`thinking`, `sequential`, `colorPalette`, `editRegions`), `inputs.referenceImages` (1..9).
- Video: `taskType: videoInference` with `alibaba:wan@2.7`; `width`/`height` from ten allowed pairs,
  `resolution`, `duration`, `inputs.frameImages` for image-to-video.
- We always send `deliveryMethod: "async"` (immediate ACK, then `getResponse` polling) and
  `includeCost: true` (each result item then carries `cost`, USD) — the sheet's "Common platform options".
- Auth: `Authorization: Bearer <key>` (what both official SDKs send).

Choices where the sheet is open or silent (the emulator, wan_pipeline/emulator/runware.py, follows each):
- taskUUID: derived from the attempt's idempotency key (sha256 → 16 bytes stamped as version 4 /
  RFC 4122 variant), so it is known and recorded *before* sending and stays a valid "UUID v4" for a
  server that checks the version nibble. (The brief suggested uuid5; a v5 UUID is not "UUID v4".)
- Re-sent taskUUID: the sheet says only "must be unique per task" (and lists `conflict*` codes among
  validation errors); the official SDK (Runware/sdk-python, `_retry_with_reconnect`) treats a re-sent
  task answered with `conflictTaskUUID` as proof the first send landed. So a reused taskUUID is refused
  (HTTP 400 `conflictTaskUUID`, nothing created, nothing billed). Re-sending a create with the same
  taskUUID is therefore safe — it can never buy a second task — which is what the engine's
  `supports_idempotency_key` asks (True). Unlike an Idempotency-Key replay, the re-send does not hand
  back the task: `conflictTaskUUID` maps to IdempotencyConflict, and the task itself is reached with
  `getResponse` on the taskUUID recorded before sending (`presubmit_task_id`; the sheet's recovery path).
- getResponse for an unknown taskUUID: HTTP 404 with `errors[0].code = "taskFailedOrNotFound"` (sheet:
  the SDK maps that code to notFound) → RejectedByProvider, so the engine re-sends the recorded call.
- getResponse of a wholly failed task: HTTP 200 with one item `status: "error"` and `error: {code,
  message}` (the shape SDK v1.x parses); a 200 carrying a top-level `errors` entry for the task is read
  the same way.
- Async ACK: `{"data": [{"taskType", "taskUUID"}]}` (the sheet's first form); an empty `data` ACK
  cannot name the task and is treated as a bad answer.
- Results: an item with `status: "success"` (or, as the SDKs do, any item carrying `imageURL` /
  `videoURL`) is a finished output; all items finished so far come back on every poll. A task is
  terminal once no item is pending; outputs that failed among several are dropped (the others paid).
- `editRegions` boxes travel as `[x1, y1, x2, y2]` arrays (seed 004), never `{x1, ...}` objects.
- Pro size range: undocumented (upstream 4096 is "unverified" per the sheet) → the documented
  768..2048 of the standard model applies to both.
- `numberResults`: the seed's 1..20 (no undocumented per-model cap); Pro priced per image when
  `numberResults > 1` (the sheet leaves per run vs per image open; per image never under-budgets).
- Reference images: local files go through the documented `imageUpload` task as a data URI of their
  bytes and travel as the returned `imageUUID`; https URLs are passed as they are. Local videos have
  no documented upload (`mediaStorage` is "not detailed") → `upload` returns None (presigned S3 URL).
- Video: `reference_images` (1-2) = image-to-video via `inputs.frameImages` first/last frame (no
  width/height then: "exactly one of inputs.frameImages or width/height"); `reference_video` = video
  edit via `inputs.video` (the SDK's field name; the model page does not confirm it), output follows
  the source. Video edit is billed on input + output seconds; the estimate takes the input to be as
  long as the output (the emulator bills the same way). Duration 2..15 (upstream; the sheet only
  caps it at 10 with references). Reference-to-video (`inputs.referenceImages`/`referenceVideos`, width
  and height given, ≤ 10 s): reference images or a video *together with* an aspect_ratio/width/height, or
  a video plus images — the sheet's "exactly one of frameImages or width/height" tells the two apart.
- `safety` has no neutral parameter and is never sent by us (a `provider_params` entry passes through).

Seed vs sheet (the seed wins):
- seed 004's result examples carry `cost` although their requests do not send `includeCost`; the sheet
  says `cost` appears only with `includeCost: true`. We always send it, so both readings give the cost.
- seed 004 lists `safety` (`checkContent`, `mode`) among this model's API options; the sheet reports
  (community observation) that Alibaba/Wan models reject it with `unsupportedParameter`. The emulator
  follows the seed and accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import replace
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
    json_or_none,
)
from wan_pipeline.providers.catalog import CatalogBacked, ModelInfo, find_model, not_one_of
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.runware_replies import read_error, read_state
from wan_pipeline.providers.sizes import image_size, parse_aspect

API = "/v1"
IMAGE_MODELS = ("alibaba:wan@2.7-image", "alibaba:wan@2.7-image-pro")
VIDEO_MODEL = "alibaba:wan@2.7"

#: seed 004: width/height "min: 768 max: 2048 step: 16" (applied to Pro too, see the module docstring)
MIN_SIDE, MAX_SIDE, STEP = 768, 2048, 16
#: sheet "Wan 2.7 video": the only allowed width×height pairs, by resolution
VIDEO_PAIRS: dict[str, dict[str, tuple[int, int]]] = {
    "720p": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960), "4:3": (1088, 832), "3:4": (832, 1088)},
    "1080p": {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1440, 1440), "4:3": (1632, 1248),
              "3:4": (1248, 1632)},
}
#: sheet: duration "≤ 10 when reference images/videos are used" — an input video counts; first/last
#: frames (`frameImages`) are not "reference images" in Runware's field names, so i2v keeps 2..15
MAX_DURATION_WITH_REFERENCES = 10
#: platform options we always send (sheet "Common platform options")
PLATFORM_OPTIONS: dict[str, Any] = {"deliveryMethod": "async", "includeCost": True}
#: provider_params keys that would break the engine's bookkeeping (identity, URL results)
RESERVED_KEYS = ("taskType", "taskUUID")

_UUID_NAMESPACE = "wan-pipeline/runware/taskUUID/v1"


def task_uuid_for(idempotency_key: str) -> str:
    """A UUID v4-formatted id fixed by the key: same attempt, same taskUUID, in every process."""
    digest = hashlib.sha256(f"{_UUID_NAMESPACE}:{idempotency_key}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


class Runware(CatalogBacked):
    name = "runware"
    key_env = "RUNWARE_API_KEY"
    base_env = "RUNWARE_BASE_URL"
    default_base = "https://api.runware.ai"
    supports_idempotency_key = True  # the taskUUID: a re-send is refused (conflictTaskUUID), never billed twice
    # imageUpload takes images; videos travel as presigned S3 URLs (`mediaStorage` is not documented)
    upload_kinds: frozenset[str] = frozenset({"image"})
    #: the closest two polls of one task may be (sheet "Task states": start at 1–2 s, exponential backoff)
    min_poll_interval_s: float = 1.0
    #: tasks in flight and creates per second when the resource config names none
    #: (sheet: no hard per-key limits; shared queues answer load with latency, not refusals)
    default_limits: HostLimits = HostLimits(max_concurrency=32, submits_per_second=10.0)
    charge_on_create: str | None = None  # `cost` comes with each result

    # -- capabilities -------------------------------------------------------------------------
    def check(self, model: str, prompt: str, params: NeutralParams) -> list[Issue]:
        info, issues = self.common_issues(model, prompt, params)
        if info is None:
            return issues
        refs = params.reference_images or []
        if len(refs) > info.max_reference_images:
            issues.append(Issue("reference_images",
                                f"{len(refs)} images; {model} takes at most {info.max_reference_images}"))
        for key in RESERVED_KEYS:
            if params.provider_params and key in params.provider_params:
                issues.append(Issue("provider_params", f"'{key}' is set by wan-pipeline (it names and types the "
                                                       "task for resuming); remove it from provider_params"))
        output_type = (params.provider_params or {}).get("outputType")
        if output_type not in (None, "URL"):
            issues.append(Issue("provider_params", f"outputType '{output_type}' returns no downloadable URL; "
                                                   "wan-pipeline needs outputType 'URL'"))
        if info.kind == "image":
            issues.extend(self._check_image(info, params))
        else:
            issues.extend(self._check_video(info, params))
        return issues

    def _check_image(self, info: ModelInfo, params: NeutralParams) -> list[Issue]:
        issues: list[Issue] = []
        if params.resolution and params.resolution not in info.resolutions:
            issues.append(Issue("resolution", not_one_of(info, "resolution", params.resolution, info.resolutions)))
            return issues
        if params.width is not None and params.height is not None:
            for name, value in (("width", params.width), ("height", params.height)):
                if not MIN_SIDE <= value <= MAX_SIDE or value % STEP:
                    issues.append(Issue(name, f"{value} px; {info.model} takes {MIN_SIDE}..{MAX_SIDE} in steps "
                                              f"of {STEP}"))
            return issues
        aspect = params.aspect_ratio or info.default_aspect_ratio or "1:1"
        if image_pixels(aspect, params.resolution or info.default_resolution or "1K") is None:
            issues.append(Issue("aspect_ratio", f"'{aspect}' cannot fit {info.model}'s {MIN_SIDE}..{MAX_SIDE} px "
                                                f"sides (ratios from {MIN_SIDE}:{MAX_SIDE} to {MAX_SIDE}:{MIN_SIDE})"))
        return issues

    def _check_video(self, info: ModelInfo, params: NeutralParams) -> list[Issue]:
        issues: list[Issue] = []
        if params.resolution and params.resolution not in info.resolutions:
            issues.append(Issue("resolution", not_one_of(info, "resolution", params.resolution, info.resolutions)))
        mode = self.mode(info.model, params)
        if mode in (Mode.IMAGE_TO_VIDEO, Mode.VIDEO_EDIT):
            # The sheet: frameImages and width/height are exclusive; an edit follows its source video.
            for name in ("aspect_ratio", "width"):
                if getattr(params, name) is not None:
                    issues.append(Issue(name, f"{mode.value} on {info.model} follows its input's geometry; "
                                              f"'{name}' cannot be set"))
        if mode in (Mode.TEXT_TO_VIDEO, Mode.REFERENCE_TO_VIDEO):
            if params.width is not None and params.height is not None:
                tier = video_tier(params.width, params.height)
                if tier is None:
                    issues.append(Issue("width", f"{params.width}x{params.height} is not one of {info.model}'s sizes "
                                                 f"({', '.join(f'{w}x{h}' for w, h in _all_pairs())})"))
                elif params.resolution and params.resolution != tier:
                    issues.append(Issue("resolution", f"{params.width}x{params.height} is a {tier} size, not "
                                                      f"{params.resolution}"))
            elif params.aspect_ratio and params.aspect_ratio not in info.aspect_ratios:
                issues.append(Issue("aspect_ratio", not_one_of(info, "aspect_ratio", params.aspect_ratio,
                                                               info.aspect_ratios)))
        if params.duration is not None:
            if params.duration not in info.durations:
                issues.append(Issue("duration", f"{params.duration} s; {info.model} takes "
                                                f"{min(info.durations)}..{max(info.durations)} s"))
            elif mode in (Mode.VIDEO_EDIT, Mode.REFERENCE_TO_VIDEO) and params.duration > MAX_DURATION_WITH_REFERENCES:
                issues.append(Issue("duration", f"{params.duration} s; {info.model} takes at most "
                                                f"{MAX_DURATION_WITH_REFERENCES} s with reference media"))
        return issues

    def mode(self, model: str, params: NeutralParams) -> Mode:
        info = find_model(self.name, model)
        if info is not None and info.kind == "video":
            # One model does it all; the inputs decide, as Runware's own rule does ("exactly one of
            # inputs.frameImages or width/height"): references *with* an asked-for geometry are
            # reference-to-video (referenceImages/referenceVideos), frames without one are image-to-video.
            sized = params.aspect_ratio is not None or params.width is not None
            if params.reference_video:
                return Mode.REFERENCE_TO_VIDEO if sized or params.reference_images else Mode.VIDEO_EDIT
            if params.reference_images:
                return Mode.REFERENCE_TO_VIDEO if sized else Mode.IMAGE_TO_VIDEO
            return Mode.TEXT_TO_VIDEO
        if params.regions and any(params.regions):
            return Mode.REGION_EDIT
        if params.sequential:
            return Mode.GROUP
        return Mode.IMAGE_EDIT if params.reference_images else Mode.TEXT_TO_IMAGE

    def estimate(self, model: str, params: NeutralParams) -> Estimate:
        """USD only (Runware bills in dollars); sheet "Pricing"."""
        info = self.info(model)
        count = params.n or 1
        if info.kind == "image":
            usd = info.usd_per_output * count if info.usd_per_output is not None else None
            return Estimate(credits=None, usd=usd)
        rate = (info.usd_per_second or {}).get(video_resolution(info, params))
        if rate is None:
            return Estimate(credits=None, usd=None)
        seconds = params.duration or info.default_duration or 0
        if self.mode(model, params) == Mode.VIDEO_EDIT:
            seconds *= 2  # input seconds + output seconds; the edit keeps the source's length
        return Estimate(credits=None, usd=round(rate * seconds * count, 6))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # -- wire mapping -------------------------------------------------------------------------
    def task_object(self, request: GenerationRequest, task_uuid: str,
                    platform: dict[str, Any] | None = None) -> dict[str, Any]:
        """One inference task: the model page's fields (seed 004's examples), then the platform options
        (`PLATFORM_OPTIONS` unless given), then `provider_params` unchanged."""
        info = self.info(request.model)
        body = self._image_fields(info, request) if info.kind == "image" else self._video_fields(info, request)
        task: dict[str, Any] = {"taskType": "imageInference" if info.kind == "image" else "videoInference",
                                "taskUUID": task_uuid, **body}
        task.update(PLATFORM_OPTIONS if platform is None else platform)
        if request.params.provider_params:
            task.update(request.params.provider_params)
        return task

    def _image_fields(self, info: ModelInfo, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        if p.width is not None and p.height is not None:
            width, height = p.width, p.height
        else:
            size = image_pixels(p.aspect_ratio or info.default_aspect_ratio or "1:1",
                                p.resolution or info.default_resolution or "1K")
            if size is None:
                raise e.ConfigError(f"aspect ratio '{p.aspect_ratio}' does not fit {info.model} (check() refuses it)")
            width, height = size
        out: dict[str, Any] = {"model": request.model, "positivePrompt": request.prompt,
                               "width": width, "height": height}
        if p.seed is not None:
            out["seed"] = p.seed
        if p.n is not None:
            out["numberResults"] = p.n
        settings: dict[str, Any] = {}
        if p.regions is not None:
            settings["editRegions"] = [[list(box) for box in boxes] for boxes in p.regions]
        if p.thinking is not None:
            settings["thinking"] = p.thinking
        if p.sequential is not None:
            settings["sequential"] = p.sequential
        if p.color_palette is not None:
            settings["colorPalette"] = [{"hex": c.hex, "ratio": c.ratio} for c in p.color_palette]
        if settings:
            out["settings"] = settings
        images = [_reference_value(r) for r in request.references if r.kind == "image"]
        if images:
            out["inputs"] = {"referenceImages": images}
        return out

    def _video_fields(self, info: ModelInfo, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        out: dict[str, Any] = {"model": request.model, "positivePrompt": request.prompt}
        if p.negative_prompt is not None:
            out["negativePrompt"] = p.negative_prompt
        images = [_reference_value(r) for r in request.references if r.kind == "image"]
        videos = [_reference_value(r) for r in request.references if r.kind == "video"]
        reference_mode = self.mode(info.model, p) == Mode.REFERENCE_TO_VIDEO
        if reference_mode or (not images and not videos):
            out["width"], out["height"] = video_size(info, p)
        out["resolution"] = video_resolution(info, p)
        out["duration"] = p.duration or info.default_duration
        if p.seed is not None:
            out["seed"] = p.seed
        if p.n is not None:
            out["numberResults"] = p.n
        if reference_mode:
            inputs: dict[str, Any] = {}
            if images:
                inputs["referenceImages"] = images
            if videos:
                inputs["referenceVideos"] = videos
            out["inputs"] = inputs
        elif videos:
            out["inputs"] = {"video": videos[0]}
        elif images:
            frames = ("first", "last")
            out["inputs"] = {"frameImages": [{"image": img, "frame": frames[i]} for i, img in enumerate(images[:2])]}
        return out

    def submit(self, request: GenerationRequest, idempotency_key: str) -> HttpCall:
        task = self.task_object(request, self.presubmit_task_id(request, idempotency_key))
        return HttpCall("POST", API, json_body=[task])

    def presubmit_task_id(self, request: GenerationRequest, idempotency_key: str) -> str:
        return task_uuid_for(idempotency_key)

    def accepted(self, reply: HttpReply) -> TaskSnapshot:
        return self.state(reply)

    def poll(self, task_id: str) -> HttpCall:
        return HttpCall("POST", API, json_body=[{"taskType": "getResponse", "taskUUID": task_id}])

    def state(self, reply: HttpReply) -> TaskSnapshot:
        return read_state(reply)

    def error(self, reply: HttpReply) -> e.ProviderError:
        return read_error(reply)

    # -- uploads (`imageUpload` task) ---------------------------------------------------------
    def upload_task(self, image: str, task_uuid: str) -> dict[str, Any]:
        return {"taskType": "imageUpload", "taskUUID": task_uuid, "image": image}

    def upload(self, model: str, ref: Reference, data: bytes) -> HttpCall | None:
        if ref.kind != "image":
            return None  # videos: `mediaStorage` is not documented; the engine presigns from S3
        mime = ref.mime_type or "application/octet-stream"
        data_uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        # Uploads are free and never replayed: a fresh taskUUID each time (a reused one is refused).
        return HttpCall("POST", API, json_body=[self.upload_task(data_uri, str(uuid.uuid4()))])

    def uploaded(self, ref: Reference, reply: HttpReply) -> Reference:
        data = json_or_none(reply)
        items = data.get("data") if isinstance(data, dict) else None
        item = next((i for i in items or [] if isinstance(i, dict) and i.get("imageUUID")), None)
        if item is None:
            if isinstance(data, dict) and data.get("errors"):
                raise self.error(reply)
            raise e.Transient(code="bad_response", message="imageUpload answer has no imageUUID",
                              http_status=reply.status)
        return replace(ref, url=str(item.get("imageURL") or item["imageUUID"]),
                       upload_fields={"imageUUID": str(item["imageUUID"])})


def image_pixels(aspect: str, gear: str) -> tuple[int, int] | None:
    """`sizes.image_size` for the gear, brought inside 768..2048 keeping the aspect; None if it cannot fit."""
    width, height = image_size(aspect, gear, STEP)
    aw, ah = parse_aspect(aspect)
    if max(width, height) > MAX_SIDE:  # e.g. 16:9 at 2K is 2736x1536: scale to a 2048 long side
        width, height = (MAX_SIDE, _snap(MAX_SIDE * ah / aw)) if aw >= ah else (_snap(MAX_SIDE * aw / ah), MAX_SIDE)
    if min(width, height) < MIN_SIDE:  # e.g. 21:9 at 1K is 1568x672: scale to a 768 short side
        width, height = (_snap(MIN_SIDE * aw / ah), MIN_SIDE) if aw >= ah else (MIN_SIDE, _snap(MIN_SIDE * ah / aw))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        return None
    return width, height


def video_tier(width: int, height: int) -> str | None:
    for tier, pairs in VIDEO_PAIRS.items():
        if (width, height) in pairs.values():
            return tier
    return None


def _all_pairs() -> list[tuple[int, int]]:
    return [pair for pairs in VIDEO_PAIRS.values() for pair in pairs.values()]


def _snap(x: float) -> int:
    return max(STEP, round(x / STEP) * STEP)


def _reference_value(ref: Reference) -> str:
    """What `inputs.*` carry: the imageUUID of an upload, else the URL (sheet: UUID, URL, data URI, base64)."""
    value = ref.upload_fields.get("imageUUID") or ref.url
    if not value:
        raise e.ConfigError(f"reference '{ref.source}' has no URL yet (it must be uploaded first)")
    return str(value)


def video_size(info: ModelInfo, p: NeutralParams) -> tuple[int, int]:
    if p.width is not None and p.height is not None:
        return p.width, p.height
    resolution = video_resolution(info, p)
    return VIDEO_PAIRS[resolution][p.aspect_ratio or info.default_aspect_ratio or "16:9"]

def video_resolution(info: ModelInfo, p: NeutralParams) -> str:
    if p.resolution:
        return p.resolution
    if p.width is not None and p.height is not None:
        tier = video_tier(p.width, p.height)
        if tier:
            return tier
    return info.default_resolution or "720p"


PROVIDER = Runware()
