"""Alibaba Cloud Model Studio (DashScope), the first-party host of Wan 2.7 — images and videos.

Wire facts (providers/dashscope.md; there is no seed for DashScope, seeds 002/003 only cross-check the
Wan 2.7 image semantics through resellers):
- Images: POST /api/v1/services/aigc/image-generation/generation with `X-DashScope-Async: enable`, body
  `{"model", "input": {"messages": [{"role": "user", "content": [{"image": url}…, {"text": prompt}]}]},
  "parameters": {…}}`; image order in `content` is "image 1, image 2…".
- Videos: POST /api/v1/services/aigc/video-generation/video-synthesis (async only), body
  `{"model", "input": {"prompt", "negative_prompt", "media": [{"type", "url"}]}, "parameters": {…}}`.
- Every async task is polled at GET /api/v1/tasks/{task_id}: PENDING → RUNNING → SUCCEEDED | FAILED, also
  CANCELED, UNKNOWN (not found / expired) and the SDK's SUSPENDED.
- Errors: `{"request_id", "code", "message"}`; dotted codes refine a family (`Throttling.RateQuota`).
- No idempotency key and no client task id: a create that may have landed is never re-sent blindly.
- No credits: DashScope bills money per generated image (`usage.image_count`) or per output second
  (`usage.duration`, by `usage.SR`). A snapshot reports those units as `Usage`; the price is applied by
  `planning.pricing` with the *submitted* model's price (declared in the spec or documented), since the poll
  answer does not name the model. A FAILED or CANCELED task costs 0 ("failures cost nothing").
- The task list (`GET /api/v1/tasks`, sheet "Task list") finds tasks whose create answer was lost: `list_tasks`
  builds the call, `listed` reads a page; any other shape is "cannot reconcile", never "no task exists".

Choices where the sheet is open (wan_pipeline/emulator/dashscope.py makes the same ones):
- `negative_prompt` / `prompt_extend` on wan2.7-image*: ACCEPTED, in `parameters`. Seeds 002 (EvoLink) and 003
  (reAPI) both forward `negative_prompt` (≤ 500 chars) for Wan 2.7 image and seed 002 forwards `prompt_extend`
  "only in image editing mode", so we send prompt_extend only with input images.
- A FAILED task carries `code`/`message` inside `output` (the common DashScope task shape); a top-level
  code/message (the image doc's query-error example) is read too.
- A query for an unknown or expired task answers HTTP 200 with `task_status: UNKNOWN` (the SDK's wait loop
  treats UNKNOWN as a terminal status of a 200 answer). We read UNKNOWN as "the host lost the task before we
  got its output" → GenerationFailed (a new attempt with the same seed), never a silent success.
- CANCELED (someone cancelled a PENDING task, the only cancellable state per the SDK) is permanent:
  RejectedByProvider, not resubmitted.
- 429 carries no Retry-After (none documented): the engine backs off exponentially.
- Reference files go through the sheet's temporary upload, as the official SDK does it: GET
  /api/v1/uploads?action=getPolicy, then a multipart POST to the policy's own storage host (no API key
  sent there), then `oss://<key>` in the request with `X-DashScope-OssResourceResolve: enable`.
- `provider_params` are merged into `parameters` unchanged, except a nested `"input"` object, merged into `input`
  (for input-side fields with no neutral name, e.g. t2v's `audio_url`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

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
    TaskPage,
    TaskSnapshot,
)
from wan_pipeline.providers.catalog import CatalogBacked, ModelInfo, not_one_of
from wan_pipeline.providers.dashscope_replies import (
    billed_usage as billed_usage,  # re-exported: part of this provider's public face
)
from wan_pipeline.providers.dashscope_replies import read_error, read_state, read_task_page, read_upload_step
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.sizes import IMAGE_GEAR_SIDE, image_size, parse_aspect

IMAGE_ASYNC = "/api/v1/services/aigc/image-generation/generation"
IMAGE_SYNC = "/api/v1/services/aigc/multimodal-generation/generation"
VIDEO_SYNTHESIS = "/api/v1/services/aigc/video-generation/video-synthesis"
TASKS = "/api/v1/tasks"
UPLOADS = "/api/v1/uploads"

IMAGE_MODELS = ("wan2.7-image", "wan2.7-image-pro")
PRO = "wan2.7-image-pro"
T2V, I2V, R2V, VIDEOEDIT = "wan2.7-t2v", "wan2.7-i2v", "wan2.7-r2v", "wan2.7-videoedit"

MAX_NEGATIVE_PROMPT = 500
#: explicit "W*H" total pixels (sheet, `size`): pro text-to-image up to 4096², everything else up to 2048²
MIN_PIXELS = 768 * 768
MAX_PIXELS = 2048 * 2048
MAX_PIXELS_PRO_T2I = 4096 * 4096
MAX_ASPECT = 8.0
MAX_N, MAX_N_GROUP = 4, 12

#: the list's largest page (sheet: page_size 1-100)
LIST_PAGE_SIZE = 100


class DashScope(CatalogBacked):
    name = "dashscope"
    key_env = "DASHSCOPE_API_KEY"
    base_env = "DASHSCOPE_BASE_URL"
    default_base = "https://dashscope-intl.aliyuncs.com"
    supports_idempotency_key = False  # sheet "Idempotency": none; each create makes a new task
    upload_kinds: frozenset[str] = frozenset({"image", "video"})  # its temporary upload (policy, storage POST, oss://)
    #: the closest two polls of one task may be (sheet: the SDK starts at 1 s, doubling every 3 polls up to 5 s)
    min_poll_interval_s: float = 1.0
    #: tasks in flight and creates per second when the resource config names none
    #: (sheet: per-account, per-model quotas; Wan 2.7 figures not published — conservative)
    default_limits: HostLimits = HostLimits(max_concurrency=4, submits_per_second=2.0)
    charge_on_create: str | None = None  # usage arrives with the result

    # -- capabilities -------------------------------------------------------------------------
    def check(self, model: str, prompt: str, params: NeutralParams) -> list[Issue]:
        # The image API would silently truncate; a dataset must not record a prompt that was not used.
        info, issues = self.common_issues(model, prompt, params)
        if info is None:
            return issues
        if params.resolution and info.resolutions and params.resolution not in info.resolutions:
            issues.append(Issue("resolution", not_one_of(info, "resolution", params.resolution, info.resolutions)))
        if params.negative_prompt and len(params.negative_prompt) > MAX_NEGATIVE_PROMPT:
            issues.append(Issue("negative_prompt", f"{len(params.negative_prompt)} characters; "
                                                   f"at most {MAX_NEGATIVE_PROMPT}"))
        refs = params.reference_images or []
        if len(refs) > info.max_reference_images and "reference_images" in info.supports:
            issues.append(Issue("reference_images", f"{len(refs)} images; {model} takes at most "
                                                    f"{info.max_reference_images}"))
        issues.extend(self._check_image(info, params) if info.kind == "image" else self._check_video(info, params))
        return issues

    def _check_image(self, info: ModelInfo, p: NeutralParams) -> list[Issue]:
        issues: list[Issue] = []
        model = info.model
        refs = p.reference_images or []
        group = bool(p.sequential)
        t2i = not refs
        four_k_refused = p.resolution == "4K" and "4K" in info.resolutions and (not t2i or group)
        if four_k_refused:
            issues.append(Issue("resolution", "4K is wan2.7-image-pro text-to-image only (no input images, no group "
                                              "mode); use 1K or 2K"))
        if p.width is not None and p.resolution is not None:
            issues.append(Issue("resolution", "give either width/height or resolution: DashScope's size is a tier or "
                                              "explicit pixels, never both"))
        size = _explicit_size(p) if p.resolution in (None, *info.resolutions) and not four_k_refused else None
        if size is not None:
            limit = MAX_PIXELS_PRO_T2I if model == PRO and t2i and not group else MAX_PIXELS
            problem = _size_problem(size, limit)
            if problem:
                issues.append(Issue("width" if p.width is not None else "aspect_ratio", problem))
        cap = MAX_N_GROUP if group else MAX_N
        if p.n is not None and p.n > cap:
            issues.append(Issue("n", f"{p.n} outputs; at most {cap} {'in group mode' if group else 'per task'}"
                                     f"{'' if group else f' ({MAX_N_GROUP} with sequential)'}"))
        if p.color_palette is not None and group:
            issues.append(Issue("color_palette", "color_palette does not apply in group mode (sequential)"))
        if p.thinking and (refs or group):
            issues.append(Issue("thinking", "thinking only works for text-to-image outside group mode; DashScope "
                                            "ignores it with input images or sequential"))
        if p.prompt_extend is not None and not refs:
            issues.append(Issue("prompt_extend", "prompt_extend applies to image editing only (with reference_images)"))
        return issues

    def _check_video(self, info: ModelInfo, p: NeutralParams) -> list[Issue]:
        issues: list[Issue] = []
        model = info.model
        refs = p.reference_images or []
        if p.aspect_ratio and "aspect_ratio" in info.supports and p.aspect_ratio not in info.aspect_ratios:
            issues.append(Issue("aspect_ratio", not_one_of(info, "aspect_ratio", p.aspect_ratio, info.aspect_ratios)))
        if p.duration is not None and "duration" in info.supports:
            low, high = 2, 15
            if model == VIDEOEDIT or (model == R2V and p.reference_video):
                high = 10  # r2v with a reference video, and video edit, are 2–10 s
            if not low <= p.duration <= high:
                issues.append(Issue("duration", f"{p.duration} s; {model} takes {low}–{high} s"
                                                f"{' with a reference video' if model == R2V else ''}"))
        if model == I2V:
            if not refs and not p.reference_video:
                issues.append(Issue("reference_images", "wan2.7-i2v needs a first frame (reference_images) or a first "
                                                        "clip (reference_video)"))
            if p.reference_video and len(refs) > 1:
                issues.append(Issue("reference_images", "with a first clip (reference_video) wan2.7-i2v takes at most "
                                                        "one image, the last frame"))
        elif model == R2V:
            if not refs and not p.reference_video:
                issues.append(Issue("reference_images", "wan2.7-r2v needs at least one reference image or video"))
            elif len(refs) + (1 if p.reference_video else 0) > 5:
                issues.append(Issue("reference_images", "wan2.7-r2v takes at most 5 references, images and video "
                                                        "combined"))
        elif model == VIDEOEDIT and not p.reference_video:
            issues.append(Issue("reference_video", "wan2.7-videoedit edits exactly one input video: set "
                                                   "reference_video"))
        return issues

    def mode(self, model: str, params: NeutralParams) -> Mode:
        if model == T2V:
            return Mode.TEXT_TO_VIDEO
        if model == I2V:
            return Mode.IMAGE_TO_VIDEO
        if model == R2V:
            return Mode.REFERENCE_TO_VIDEO
        if model == VIDEOEDIT:
            return Mode.VIDEO_EDIT
        if params.regions and any(params.regions):
            return Mode.REGION_EDIT
        if params.sequential:
            return Mode.GROUP
        return Mode.IMAGE_EDIT if params.reference_images else Mode.TEXT_TO_IMAGE

    def estimate(self, model: str, params: NeutralParams) -> Estimate:
        """USD before submitting: per image × n (group mode: n is the maximum), or per second × duration."""
        info = self.info(model)
        if info.kind == "image":
            count = params.n or (MAX_N_GROUP if params.sequential else 1)
            usd = None if info.usd_per_output is None else round(info.usd_per_output * count, 6)
            return Estimate(credits=None, usd=usd)
        rate = (info.usd_per_second or {}).get(params.resolution or info.default_resolution or "")
        seconds = params.duration or info.default_duration or (10 if model == VIDEOEDIT else None)
        if rate is None or seconds is None:
            return Estimate(credits=None, usd=info.usd_per_output)
        return Estimate(credits=None, usd=round(rate * seconds, 6))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # -- wire mapping -------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, idempotency_key: str) -> HttpCall:
        # No idempotency header: DashScope documents none (the key is still recorded in our ledger).
        info = self.info(request.model)
        if info.kind == "image":
            body = self.image_body(request)
            path = IMAGE_ASYNC
        else:
            body = self.video_body(request)
            path = VIDEO_SYNTHESIS
        headers = {"X-DashScope-Async": "enable"}
        if any((r.url or "").startswith("oss://") for r in request.references):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        return HttpCall("POST", path, json_body=body, headers=headers)

    def image_body(self, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        images = [r for r in request.references if r.kind == "image"]
        content: list[dict[str, str]] = [{"image": _url(r)} for r in images]
        content.append({"text": request.prompt})
        parameters: dict[str, Any] = {"size": image_size_param(p)}
        parameters["n"] = p.n or (MAX_N_GROUP if p.sequential else 1)
        if p.sequential is not None:
            parameters["enable_sequential"] = p.sequential
        if p.thinking is not None:
            parameters["thinking_mode"] = p.thinking
        if p.color_palette is not None:
            parameters["color_palette"] = [{"hex": c.hex, "ratio": c.ratio} for c in p.color_palette]
        if p.regions is not None:
            parameters["bbox_list"] = [[list(box) for box in boxes] for boxes in p.regions]
        if p.negative_prompt is not None:
            parameters["negative_prompt"] = p.negative_prompt
        if p.prompt_extend is not None:
            parameters["prompt_extend"] = p.prompt_extend
        parameters["watermark"] = bool(p.watermark)
        parameters["seed"] = request.seed
        body: dict[str, Any] = {
            "model": request.model,
            "input": {"messages": [{"role": "user", "content": content}]},
            "parameters": parameters,
        }
        return _with_provider_params(body, p)

    def video_body(self, request: GenerationRequest) -> dict[str, Any]:
        info = self.info(request.model)
        p = request.params
        model = request.model
        inputs: dict[str, Any] = {"prompt": request.prompt}
        if p.negative_prompt is not None:
            inputs["negative_prompt"] = p.negative_prompt
        media = _video_media(model, request.references)
        if media:
            inputs["media"] = media
        resolution = p.resolution or info.default_resolution or "1080p"
        parameters: dict[str, Any] = {"resolution": resolution.upper()}
        ratio = p.aspect_ratio or info.default_aspect_ratio
        if ratio and model != I2V:
            parameters["ratio"] = ratio  # videoedit: absent = the input's ratio
        duration = p.duration or info.default_duration
        if duration is not None:
            parameters["duration"] = duration  # videoedit: absent (0) = keep the input length
        if p.audio_setting is not None:
            parameters["audio_setting"] = p.audio_setting
        parameters["prompt_extend"] = True if p.prompt_extend is None else p.prompt_extend
        parameters["watermark"] = bool(p.watermark)
        parameters["seed"] = request.seed
        return _with_provider_params({"model": model, "input": inputs, "parameters": parameters}, p)

    def presubmit_task_id(self, request: GenerationRequest, idempotency_key: str) -> str | None:
        return None  # DashScope names its tasks and takes no client id

    def accepted(self, reply: HttpReply) -> TaskSnapshot:
        return self.state(reply)

    def poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"{TASKS}/{task_id}")

    def cancel(self, task_id: str) -> HttpCall:
        """The SDK's cancel call (only PENDING tasks can be cancelled); the engine does not use it."""
        return HttpCall("POST", f"{TASKS}/{task_id}/cancel")

    def state(self, reply: HttpReply) -> TaskSnapshot:
        return read_state(reply)

    # -- the task list (sheet "Task list") -----------------------------------------------------------
    def list_tasks(self, model: str, start: datetime, end: datetime, page_no: int = 1) -> HttpCall:
        """One page of the account's tasks of `model` created in [start, end] (UTC, whole seconds)."""
        query = {"page_no": page_no, "page_size": LIST_PAGE_SIZE, "start_time": _compact(start),
                 "end_time": _compact(end), "model_name": model}
        return HttpCall("GET", f"{TASKS}?{urlencode(query)}")

    def listed(self, reply: HttpReply) -> TaskPage:
        """A page of the list; any shape but the documented one cannot prove anything and is refused."""
        return read_task_page(reply)

    def error(self, reply: HttpReply) -> e.ProviderError:
        return read_error(reply)

    # -- uploads ------------------------------------------------------------------------------
    def upload(self, model: str, ref: Reference, data: bytes) -> HttpCall | None:
        """Step 1 of the temporary upload (sheet "Files/uploads"): ask for a storage policy."""
        return HttpCall("GET", f"{UPLOADS}?action=getPolicy&model={model}")

    def uploaded(self, ref: Reference, reply: HttpReply) -> Reference | tuple[Reference, HttpCall]:
        """Step 2 posts the file to the policy's storage host; its 200 makes the file `oss://<key>`."""
        return read_upload_step(ref, reply)


# -- pure helpers -----------------------------------------------------------------------------


def image_size_param(p: NeutralParams) -> str:
    """`size`: explicit "W*H" for width/height or an aspect ratio, else the tier (default 2K)."""
    size = _explicit_size(p)
    if size is not None:
        return f"{size[0]}*{size[1]}"
    return p.resolution or "2K"


def _explicit_size(p: NeutralParams) -> tuple[int, int] | None:
    if p.width is not None and p.height is not None:
        return p.width, p.height
    if p.aspect_ratio:
        return fit_size(p.aspect_ratio, p.resolution or "2K")
    return None


def fit_size(aspect: str, gear: str) -> tuple[int, int]:
    """≈ gear² pixels in `aspect`, sides multiples of 16, inside the sheet's hard limits.

    `image_size` (what verification expects) rounds each side to the nearest 16, which can overshoot a
    little (16:9 2K is 2736*1536 > 2048², 8:1 2K is 5792*720, past 8:1); then the multiples of 16 nearest
    to the aspect that stay inside win.
    """
    cap = MAX_PIXELS_PRO_T2I if gear == "4K" else MAX_PIXELS
    first = image_size(aspect, gear)
    if _fits(first, cap):
        return first
    aw, ah = parse_aspect(aspect)
    target = aw / ah
    total = min(IMAGE_GEAR_SIDE[gear] ** 2, cap)
    h0 = int(math.sqrt(total / target)) // 16 * 16
    candidates = []
    for h in range(max(16, h0 - 64), h0 + 80, 16):
        low = max(16, int(target * h) // 16 * 16)
        candidates += [(low, h), (low + 16, h)]
    pool = [s for s in candidates if _fits(s, cap)] or [first]
    return min(pool, key=lambda s: (abs(math.log((s[0] / s[1]) / target)) > 0.02, abs(s[0] * s[1] - total)))


def _fits(size: tuple[int, int], max_pixels: int) -> bool:
    w, h = size
    return MIN_PIXELS <= w * h <= max_pixels and 1 / MAX_ASPECT <= w / h <= MAX_ASPECT


def _size_problem(size: tuple[int, int], max_pixels: int) -> str | None:
    w, h = size
    if not MIN_PIXELS <= w * h <= max_pixels:
        side = math.isqrt(max_pixels)
        return f"{w}*{h} is {w * h} pixels; DashScope takes {MIN_PIXELS} (768²) to {max_pixels} ({side}²) here"
    if not 1 / MAX_ASPECT <= w / h <= MAX_ASPECT:
        return f"{w}*{h} has an aspect outside 1:8 … 8:1"
    return None


def _url(ref: Reference) -> str:
    if not ref.url:
        raise e.ConfigError(f"reference '{ref.source}' has no URL yet (it must be uploaded or presigned first)")
    return ref.url


def _video_media(model: str, refs: tuple[Reference, ...]) -> list[dict[str, str]]:
    """The `media` list: i2v first_frame/last_frame/first_clip, r2v reference_*, videoedit video + reference_image."""
    images = [r for r in refs if r.kind == "image"]
    videos = [r for r in refs if r.kind == "video"]
    media: list[dict[str, str]] = []
    if model == I2V:
        if videos:
            media.append({"type": "first_clip", "url": _url(videos[0])})
            media.extend({"type": "last_frame", "url": _url(r)} for r in images[:1])
        else:
            for kind, ref in zip(("first_frame", "last_frame"), images, strict=False):
                media.append({"type": kind, "url": _url(ref)})
    elif model == R2V:
        media.extend({"type": "reference_image", "url": _url(r)} for r in images)
        media.extend({"type": "reference_video", "url": _url(r)} for r in videos)
    elif model == VIDEOEDIT:
        media.extend({"type": "video", "url": _url(r)} for r in videos)
        media.extend({"type": "reference_image", "url": _url(r)} for r in images)
    return media


def _with_provider_params(body: dict[str, Any], p: NeutralParams) -> dict[str, Any]:
    extra = dict(p.provider_params or {})
    extra_input = extra.pop("input", None)
    if isinstance(extra_input, dict):
        body["input"].update(extra_input)
    elif extra_input is not None:
        extra["input"] = extra_input  # not an object: leave it where the user put it
    body["parameters"].update(extra)
    return body


def _compact(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


PROVIDER = DashScope()
