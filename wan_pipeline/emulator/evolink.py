"""EvoLink's Wan 2.7 task API as the emulator speaks it — as strict as seed 002 and providers/evolink.md.

Paths (relative to the base URL): POST /v1/images/generations, POST /v1/videos/generations,
GET /v1/tasks/{task_id}, GET /v1/credits. Every answer uses EvoLink's envelope
`{"error": {"code", "message", "type"[, "param"]}}`.

Choices where the sheet is open (the same as wan_pipeline/providers/evolink.py; tests/test_emulator_limits.py
notices when the two drift):
- image keys `image_urls`, `n`, `size`, `negative_prompt`, `seed`, `enable_safety_checker`,
  `enable_prompt_expansion` (editing mode only), `callback_url`; unknown keys are refused (400 with
  `param`), as are `wan2.7-image[-pro]` spellings: only the seed's hyphenated ids exist here;
- explicit `{width, height}`: 768x768..2048x2048 pixels, aspect 1:8..8:1; presets render at the sizes
  `PRESET_SIZES` (emulator/limits.py: the 1K gear of their aspect; `square` 768x768); no `size` = square_hd;
- creates answer the fields of seed 002's create response plus `usage` (the sheet's field notes: images are
  "pre-charged on `n`, final on images actually produced"; seed 002's image example lists no `usage`, but
  real image creates carry it); polls never repeat `usage`;
- no idempotency: every accepted POST is a new task; no Retry-After on 429 (none documented);
- failed tasks are free (refunded when they settle); `fail_task` ends with `generation_failed_no_content`
  (a "retry later" code), `reject_content` with `content_policy_violation`;
- prompts longer than documented are truncated, not refused (sheet: "overflow truncated") on video;
  the image prompt limit (seed 002: "Maximum 2000 characters") is enforced.

Emulator-only bookkeeping (EvoLink documents no credit↔USD rate and no Wan 2.7 image price):
- a video reserves its documented USD price as credits ($0.086/s at 720p, $0.144/s at 1080p), on the
  output seconds for text/image-to-video and input + output seconds for reference-video and video-edit,
  every input clip taken as EMULATED_INPUT_CLIP_S long (the emulator does not fetch input URLs);
- an image task reserves `IMAGE_CREDITS` per requested image (EvoLink documents no Wan 2.7 image price: this
  emulated account's own tariff, which a client can only learn from `usage.credits_reserved`).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wan_pipeline.emulator.common import ConnectionDropped, bearer, media_url, read_json
from wan_pipeline.emulator.limits import EVOLINK_MAX_PIXELS, EVOLINK_MIN_PIXELS, evolink_preset_sizes, video_size
from wan_pipeline.emulator.state import EmulatorState, EmuTask, body_hash

PROTOCOL = "evolink"
#: seed 002, `model`: the hyphenated image ids (the sheet, "Create request > Image", agrees)
IMAGE_MODELS = ("wan-2.7-image", "wan-2.7-image-pro")
#: the EvoLink sheet, "Create request > Video": the four video ids (no seed covers EvoLink video)
T2V = "wan2.7-text-to-video"
I2V = "wan2.7-image-to-video"
REFERENCE = "wan2.7-reference-video"
VIDEO_EDIT = "wan2.7-video-edit"
#: preset -> rendered pixels (emulator/limits.py says how the emulator reads the seed's preset names)
PRESET_SIZES = evolink_preset_sizes()
VIDEO_MODELS = (T2V, I2V, REFERENCE, VIDEO_EDIT)
MAX_SEED = 2_147_483_647
MAX_IMAGE_PROMPT = 2000
MAX_VIDEO_PROMPT = 5000
MAX_NEGATIVE = 500
ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4")
QUALITIES = ("720p", "1080p")
#: this emulated account's credits per image (undocumented by EvoLink; a client learns it from `usage`)
IMAGE_CREDITS = {"wan-2.7-image": 6.0, "wan-2.7-image-pro": 15.0}
USD_PER_SECOND = {"720p": 0.086, "1080p": 0.144}
EMULATED_INPUT_CLIP_S = 5
VIDEO_FPS = 16
TASK_ID_RE = re.compile(r"^task-unified-[0-9]+-[a-z0-9]{8}$")
STATUS = {"queued": "pending", "processing": "processing", "succeeded": "completed", "failed": "failed"}
FAIL_CODES = {"generation_failed": "generation_failed_no_content"}
FAIL_MESSAGES = {
    "content_policy_violation": "Content policy violation.\nYour request was blocked by safety filters.",
    "generation_failed_no_content": "The model returned no content. Please retry.",
}

IMAGE_KEYS = {"model", "prompt", "image_urls", "n", "size", "negative_prompt", "seed", "enable_safety_checker",
              "enable_prompt_expansion", "callback_url"}
VIDEO_COMMON = {"model", "prompt", "negative_prompt", "quality", "seed", "prompt_extend", "callback_url"}
VIDEO_KEYS: dict[str, set[str]] = {
    T2V: VIDEO_COMMON | {"aspect_ratio", "duration", "audio_urls"},
    I2V: VIDEO_COMMON | {"generation_mode", "image_start", "image_end", "video_urls", "audio_urls", "duration"},
    REFERENCE: VIDEO_COMMON | {"image_start", "image_urls", "video_urls", "model_params", "audio_urls",
                               "aspect_ratio", "duration"},
    VIDEO_EDIT: VIDEO_COMMON | {"video_urls", "image_urls", "keep_original_sound", "aspect_ratio", "duration"},
}
#: sheet: the six input combinations image-to-video accepts, with the mode each implies
I2V_COMBOS: dict[frozenset[str], str] = {
    frozenset({"image_start"}): "first_frame",
    frozenset({"image_start", "audio_urls"}): "first_frame",
    frozenset({"image_start", "image_end"}): "first_last_frame",
    frozenset({"image_start", "image_end", "audio_urls"}): "first_last_frame",
    frozenset({"video_urls"}): "video_continuation",
    frozenset({"video_urls", "image_end"}): "video_continuation",
}
VOICE_KEY_RE = re.compile(r"^(image|video)([1-9][0-9]*)$")


class Invalid(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def error(status: int, code: str | int, message: str, type_: str, param: str | None = None) -> JSONResponse:
    err: dict[str, Any] = {"code": code, "message": message, "type": type_}
    if param is not None:
        err["param"] = param
    return JSONResponse({"error": err}, status_code=status)


def auth_error() -> JSONResponse:
    return error(401, "unauthorized", "Invalid or missing API key.", "authentication_error")


# -- validation ----------------------------------------------------------------------------------


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    if key not in body:
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(key, f"{key} must be an integer between {low} and {high}")
    return value


def _bool(body: dict[str, Any], key: str) -> None:
    if key in body and not isinstance(body[key], bool):
        raise Invalid(key, f"{key} must be a boolean")


def _https(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > 2048:
        raise Invalid(param, f"{param} must be a public https:// URL")
    return value


def _url_list(body: dict[str, Any], key: str, low: int, high: int) -> list[str]:
    if key not in body:
        return []
    value = body[key]
    if not isinstance(value, list) or not low <= len(value) <= high:
        count = f"exactly {low}" if low == high else f"{low} to {high}"
        raise Invalid(key, f"{key} must be a list of {count} URLs")
    return [_https(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _text(body: dict[str, Any], key: str, limit: int | None, required: bool) -> None:
    value = body.get(key)
    if value is None:
        if required:
            raise Invalid(key, f"{key} is required")
        return
    if not isinstance(value, str) or (required and not value.strip()):
        raise Invalid(key, f"{key} must be a non-empty string" if required else f"{key} must be a string")
    if limit is not None and len(value) > limit:
        raise Invalid(key, f"{key} must be at most {limit} characters")


def _common(body: Any, allowed: set[str]) -> None:
    if not isinstance(body, dict):
        raise Invalid("body", "body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(unknown[0], f"unknown parameter: {unknown[0]}")
    if "callback_url" in body:
        _https(body["callback_url"], "callback_url")


def image_size_of(body: dict[str, Any]) -> tuple[int, int]:
    size = body.get("size", "square_hd")
    if isinstance(size, str):
        if size not in PRESET_SIZES:
            raise Invalid("size", f"size must be one of {', '.join(PRESET_SIZES)} or {{width, height}}")
        return PRESET_SIZES[size]
    if not isinstance(size, dict) or set(size) != {"width", "height"}:
        raise Invalid("size", "size must be a preset or an object with exactly width and height")
    w, h = size["width"], size["height"]
    if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in (w, h)):
        raise Invalid("size", "size.width and size.height must be positive integers")
    if not EVOLINK_MIN_PIXELS <= w * h <= EVOLINK_MAX_PIXELS:
        raise Invalid("size", "size must have between 768*768 and 2048*2048 pixels")
    if max(w / h, h / w) > 8:
        raise Invalid("size", "size aspect ratio must be within 1:8 and 8:1")
    return w, h


def validate_image(body: Any) -> tuple[int, int, int]:
    """(n, width, height) of a valid image request; raises Invalid."""
    _common(body, IMAGE_KEYS)
    model = body.get("model")
    if model in VIDEO_MODELS:
        raise Invalid("model", f"{model} is a video model: use /v1/videos/generations")
    if model not in IMAGE_MODELS:
        raise Invalid("model", f"model must be one of {', '.join(IMAGE_MODELS)}")
    _text(body, "prompt", MAX_IMAGE_PROMPT, required=True)
    urls = _url_list(body, "image_urls", 1, 4)
    edit = bool(urls)
    n = _int(body, "n", 1, 4 if edit else 5) or 1
    _text(body, "negative_prompt", MAX_NEGATIVE, required=False)
    _int(body, "seed", 0, MAX_SEED)
    _bool(body, "enable_safety_checker")
    _bool(body, "enable_prompt_expansion")
    if "enable_prompt_expansion" in body and not edit:
        raise Invalid("enable_prompt_expansion", "enable_prompt_expansion is only available in image editing mode")
    width, height = image_size_of(body)
    return n, width, height


def validate_video(body: Any) -> tuple[float, int, int, float]:
    """(billed seconds, width, height, output seconds) of a valid video request; raises Invalid."""
    if not isinstance(body, dict):
        raise Invalid("body", "body must be a JSON object")
    model = body.get("model")
    if model in IMAGE_MODELS:
        raise Invalid("model", f"{model} is an image model: use /v1/images/generations")
    if model not in VIDEO_KEYS:
        raise Invalid("model", f"model must be one of {', '.join(VIDEO_MODELS)}")
    _common(body, VIDEO_KEYS[model])
    # Overlong prompts are truncated by EvoLink, not refused (sheet); only the type is checked.
    _text(body, "prompt", None, required=model in (T2V, REFERENCE))
    _text(body, "negative_prompt", None, required=False)
    if "quality" in body and body["quality"] not in QUALITIES:
        raise Invalid("quality", "quality must be one of 720p, 1080p")
    _int(body, "seed", 1, MAX_SEED)
    _bool(body, "prompt_extend")
    if "aspect_ratio" in body and body["aspect_ratio"] not in ASPECTS:
        raise Invalid("aspect_ratio", f"aspect_ratio must be one of {', '.join(ASPECTS)}")
    aspect = body.get("aspect_ratio", "16:9")
    quality = body.get("quality", "720p")
    inputs_s = 0.0
    if model == T2V:
        _url_list(body, "audio_urls", 1, 1)
        duration = _int(body, "duration", 2, 15) or 5
    elif model == I2V:
        _image_to_video_inputs(body)
        duration = _int(body, "duration", 2, 15) or 5
        aspect = "16:9"  # the output follows the input; the emulator does not fetch it
    elif model == REFERENCE:
        videos = _reference_inputs(body)
        duration = _int(body, "duration", 2, 10 if videos else 15) or 5
        inputs_s = float(EMULATED_INPUT_CLIP_S * videos)
    else:  # VIDEO_EDIT
        _url_list(body, "video_urls", 1, 1)
        if "video_urls" not in body:
            raise Invalid("video_urls", "video_urls is required")
        _url_list(body, "image_urls", 0, 4)
        _bool(body, "keep_original_sound")
        if "duration" in body and body["duration"] != 0:
            _int(body, "duration", 2, 10)
        duration = body.get("duration") or EMULATED_INPUT_CLIP_S  # 0 = keep the whole input
        inputs_s = float(EMULATED_INPUT_CLIP_S)
    width, height = video_size(aspect, quality)
    return inputs_s + duration, width, height, float(duration)


def _image_to_video_inputs(body: dict[str, Any]) -> None:
    """image-to-video: one of the documented input combinations, and a generation_mode that matches it."""
    present = frozenset(k for k in ("image_start", "image_end", "video_urls", "audio_urls") if k in body)
    implied = I2V_COMBOS.get(present)
    if implied is None:
        raise Invalid("image_start", "unsupported input combination: give image_start (+ image_end) (+ "
                                     "audio_urls), or video_urls (+ image_end)")
    for key in ("image_start", "image_end"):
        if key in body:
            _https(body[key], key)
    _url_list(body, "video_urls", 1, 1)
    _url_list(body, "audio_urls", 1, 1)
    mode = body.get("generation_mode")
    if mode is not None and mode != implied:
        raise Invalid("generation_mode", f"generation_mode {mode!r} does not match the inputs ({implied})")


def _reference_inputs(body: dict[str, Any]) -> int:
    """reference-to-video: 1..5 images and videos together (voice bindings checked); the number of videos."""
    if "image_start" in body:
        _https(body["image_start"], "image_start")
    images = _url_list(body, "image_urls", 1, 5)
    videos = _url_list(body, "video_urls", 1, 5)
    if not images and not videos:
        raise Invalid("image_urls", "give at least one of image_urls or video_urls")
    if len(images) + len(videos) > 5:
        raise Invalid("image_urls", "image_urls and video_urls hold at most 5 items together")
    _url_list(body, "audio_urls", 1, 5)
    _voice_bindings(body.get("model_params"), len(images), len(videos))
    return len(videos)


def _voice_bindings(params: Any, images: int, videos: int) -> None:
    if params is None:
        return
    if not isinstance(params, dict) or set(params) - {"voice_bindings"}:
        raise Invalid("model_params", "model_params takes only voice_bindings")
    bindings = params.get("voice_bindings", {})
    if not isinstance(bindings, dict) or len(bindings) > 5:
        raise Invalid("model_params.voice_bindings", "voice_bindings must be an object of at most 5 entries")
    for key, url in bindings.items():
        match = VOICE_KEY_RE.match(key)
        if match is None or int(match.group(2)) > (images if match.group(1) == "image" else videos):
            raise Invalid("model_params.voice_bindings", f"voice_bindings key {key!r} names no input")
        _https(url, f"model_params.voice_bindings.{key}")


# -- tasks ---------------------------------------------------------------------------------------


def new_task_id(state: EmulatorState, now: float) -> str:
    """`task-unified-<unix>-<8 chars>`, the only id format EvoLink's task endpoint accepts (sheet)."""
    suffix = hashlib.sha256(state.new_id("evolink").encode()).hexdigest()[:8]
    return f"task-unified-{int(now)}-{suffix}"


def serialize(state: EmulatorState, task: EmuTask, base: str) -> dict[str, Any]:
    raw = state.settle(task)
    status = STATUS[raw]
    kind = task.extra["type"]
    progress = 0
    if status == "processing":
        elapsed = time.time() - task.created_at - task.queue_s
        progress = min(99, max(1, int(100 * elapsed / task.process_s))) if task.process_s else 99
    elif status == "completed":
        progress = 100
    out: dict[str, Any] = {
        "created": int(task.created_at), "id": task.id, "model": task.model, "object": f"{kind}.generation.task",
        "progress": progress, "status": status, "task_info": {"can_cancel": status == "pending"}, "type": kind,
    }
    if status == "completed":
        out["results"] = [media_url(base, task.id, i, o["format"]) for i, o in enumerate(task.outputs)]
    elif status == "failed":
        code = str(task.error_code)
        out["error"] = {"code": code, "message": FAIL_MESSAGES.get(code, "The task failed."), "type": "task_error"}
    return out


def created_answer(task: EmuTask) -> dict[str, Any]:
    """The create answer: always `pending` at 0 %, with the estimate and the reserved credits."""
    kind = task.extra["type"]
    out: dict[str, Any] = {
        "created": int(task.created_at), "id": task.id, "model": task.model, "object": f"{kind}.generation.task",
        "progress": 0, "status": "pending",
        "task_info": {"can_cancel": True, "estimated_time": 10 if kind == "image" else 120}, "type": kind,
    }
    rule = "per_image" if kind == "image" else "per_second"
    out["usage"] = {"billing_rule": rule, "credits_reserved": _plain(task.credits), "user_group": "default"}
    return out


def _plain(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


async def _create(request: Request, kind: str) -> Response:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error()
    state.note_submit(None)
    state.note_create_body(await request.body())
    if state.faults.hit("rate_limit"):
        return error(429, "rate_limit_exceeded", "Rate limit exceeded. Please slow down.", "rate_limit_error")
    if state.faults.hit("server_error"):
        return error(500, "internal_error", "Internal server error.", "api_error")
    body, problem = await read_json(request)
    if problem is not None:
        return error(400, "invalid_request", problem, "invalid_request_error", "body")
    try:
        if kind == "image":
            n, width, height = validate_image(body)
            credits = IMAGE_CREDITS[body["model"]] * n
            seconds = 0.0
        else:
            billed, width, height, seconds = validate_video(body)
            credits = round(USD_PER_SECOND[body.get("quality", "720p")] * billed, 4)
    except Invalid as bad:
        return error(400, "invalid_request", bad.message, "invalid_request_error", bad.param)
    sha = body_hash(body)
    with state.lock:
        if state.balance <= 0 or state.balance < credits:
            return error(402, "insufficient_quota", "Insufficient quota. Please top up your account.",
                         "insufficient_quota")
        outcome, code = state.decide_outcome()
        if kind == "image":
            outputs = [{"kind": "image", "width": width, "height": height, "format": "png", "key": f"{sha}:{i}"}
                       for i in range(n)]
        else:
            outputs = [{"kind": "video", "width": width, "height": height, "format": "mp4", "key": sha,
                        "duration": seconds, "fps": VIDEO_FPS}]
        now = time.time()
        task = state.create_task(EmuTask(
            id=new_task_id(state, now), protocol=PROTOCOL, model=body["model"], created_at=now,
            queue_s=state.config.queue_s, process_s=state.config.process_s, outcome=outcome,
            error_code=FAIL_CODES.get(code or "", code), credits=credits, outputs=outputs,
            idempotency_key=None, body_sha256=sha, client_ref=None, extra={"type": kind},
        ))
    payload = created_answer(task)
    if state.faults.hit("drop"):
        raise ConnectionDropped("emulated: task created, response lost")
    return JSONResponse(payload)


async def create_image(request: Request) -> Response:
    return await _create(request, "image")


async def create_video(request: Request) -> Response:
    return await _create(request, "video")


async def get_task(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    state.note_poll()
    if not state.key_ok(bearer(request)):
        return auth_error()
    if state.faults.hit("rate_limit"):
        # The task endpoint's documented 429 carries type evo_api_error (sheet "Errors & retries").
        return error(429, "rate_limit_exceeded", "Rate limit exceeded. Please slow down.", "evo_api_error")
    if state.faults.hit("server_error"):
        return error(500, "internal_error", "Internal server error.", "api_error")
    task_id = request.path_params["task_id"]
    if not TASK_ID_RE.match(task_id):
        return error(400, "invalid_task_id", "Invalid task ID format.", "invalid_request_error", "task_id")
    task = state.tasks.get(task_id)
    if task is None or task.protocol != PROTOCOL:
        return error(404, "task_not_found", "Task not found.", "invalid_request_error", "task_id")
    return JSONResponse(serialize(state, task, str(request.base_url)))


async def credits(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        # /v1/credits puts the integer HTTP status in `code` (sheet).
        return error(401, 401, "Invalid or missing API key.", "authentication_error")
    used = round(state.charged - state.refunded, 4)
    remaining = round(state.balance, 4)
    return JSONResponse({"success": True, "message": "", "data": {
        "token": {"remaining_credits": remaining, "unlimited_credits": False, "used_credits": used},
        "user": {"remaining_credits": remaining, "used_credits": used},
    }})


ROUTES = [
    Route("/v1/images/generations", create_image, methods=["POST"]),
    Route("/v1/videos/generations", create_video, methods=["POST"]),
    Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/v1/credits", credits, methods=["GET"]),
]
