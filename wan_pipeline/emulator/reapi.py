"""reAPI as the emulator speaks it — as strict as seed 003 and the reAPI sheet (providers/reapi.md).

Paths (relative to the base URL https://reapi.ai): POST /api/v1/images/generations,
POST /api/v1/videos/generations, GET /api/v1/tasks/{id}. Every create answers
`{"id", "model", "status": "processing", "created_at"}`; the task then reads `processing` until it is
`completed` (`output.image_urls` / `output.video_urls`, served by /_media) or `failed` (`error`).
Errors use the reAPI envelope `{"error": {"code": <int>, "message", "request_id"}}`.

Choices where the sheet is open (kept in step with wan_pipeline/providers/reapi.py):
- Status codes: create 200; 40001 -> 404; validation 400; 402/429 as documented; the create-side
  server_error fault is 500 60001 (task not persisted, nothing charged); the poll-side one 500 60099.
- No deduplication: an `Idempotency-Key` is counted in the report but never replays a task.
- Image validation: unknown fields are 20003 (every image field is documented); every size/resolution
  problem (bad value, 4K outside Pro text-to-image, pixel limits) is 20005, other invalid values 20003.
  A gear in `size` together with `resolution`, or pixels with `resolution`, is 20003 (conflict).
- Defaults (upstream Wan, dashscope.md): gear 2K; square without images; with images the aspect of the
  last input image when the emulator can know it (one of its own /_media URLs), else square.
- `thinking_mode` with images or in group mode is ignored, not refused (seed 003).
- Video: only model/prompt/resolution/duration are documented, so other fields are tolerated and
  ignored (the sheet lists probable knobs it cannot confirm); duration 2-15, defaults 1080P / 5 s, 16:9.
- Failed tasks: generation failures read `{"code": 60099, "message": "Generic internal error"}` (the
  sheet's failed example); moderation refusals carry 60099 with Wan's upstream DataInspectionFailed text.
- Billing: charged at submit, refunded when the task fails (sheet "Pricing"). The per-image and
  per-second USD rates below are placeholders of the emulator, NOT documented prices; only the formula
  credits = ceil(usd × count × 1000) is reAPI's. The task payload reports no credits or cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wan_pipeline.emulator.common import ConnectionDropped, is_loopback_http, media_url
from wan_pipeline.emulator.limits import image_size, video_size
from wan_pipeline.emulator.state import EmulatorState, EmuTask, body_hash

PROTOCOL = "reapi"
IMAGES = "/api/v1/images/generations"
VIDEOS = "/api/v1/videos/generations"
TASKS = "/api/v1/tasks"

IMAGE_MODELS = ("wan2.7-image", "wan2.7-image-pro")
PRO = "wan2.7-image-pro"
VIDEO_MODELS = ("wan2.7-video",)
IMAGE_FIELDS = frozenset({"model", "prompt", "image_urls", "n", "size", "resolution", "negative_prompt", "watermark",
                          "seed", "thinking_mode", "enable_sequential", "bbox_list", "color_palette"})
ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
GEARS = ("1K", "2K", "4K")
VIDEO_RESOLUTIONS = ("720P", "1080P")
MAX_PROMPT = 5000
MAX_SEED = 2_147_483_647
MAX_IMAGES = 9
PIXELS_RE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
HEX_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
RATIO_RE = re.compile(r"^([0-9]{1,3}(?:\.[0-9]{1,2})?)%$")
MEDIA_PATH_RE = re.compile(r"/_media/([^/]+)/([0-9]+)\.[a-z0-9]+$")
DEFAULT_GEAR = "2K"
DEFAULT_VIDEO = {"resolution": "1080P", "duration": 5, "aspect": "16:9", "fps": 16}

#: emulator placeholders, NOT reAPI prices (the sheet only says Pro > Standard, video per second)
EMULATED_USD_PER_IMAGE = {"wan2.7-image": 0.03, "wan2.7-image-pro": 0.06}
EMULATED_USD_PER_SECOND = {"720P": 0.10, "1080P": 0.15}
CONTENT_MESSAGE = "DataInspectionFailed: Input or output data may contain inappropriate content."


class Invalid(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def request_id() -> str:
    return f"req_{uuid.uuid4()}"


def error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "request_id": request_id()}},
                        status_code=status, headers=headers)


def auth_error(request: Request, state: EmulatorState) -> JSONResponse | None:
    """Sheet "Auth": 10001 header missing, 10002 not `Bearer <key>`, 10003 key invalid (all 401)."""
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        return error(401, 10001, "Missing Authorization header.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error(401, 10002, "Authorization header must be 'Bearer <key>'.")
    if not state.key_ok(token.strip()):
        return error(401, 10003, "Invalid API key.")
    return None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- image requests --------------------------------------------------------------------------------


def validate_image(state: EmulatorState, body: Any, base_url: str) -> dict[str, Any]:
    """The checked request: {"model", "count", "width", "height"}; raises Invalid with reAPI's code."""
    if not isinstance(body, dict):
        raise Invalid(20001, "Request body must be a JSON object.")
    unknown = sorted(set(body) - IMAGE_FIELDS)
    if unknown:
        raise Invalid(20003, f"Unknown parameter: {unknown[0]}")
    model = body.get("model")
    if model is None:
        raise Invalid(20002, "Missing required parameter: model")
    if model not in IMAGE_MODELS:
        raise Invalid(20004, f"Model '{model}' is not supported on this endpoint.")
    for name in ("watermark", "thinking_mode", "enable_sequential"):
        if name in body and not isinstance(body[name], bool):
            raise Invalid(20003, f"Invalid value for {name}: must be a boolean")
    group = body.get("enable_sequential") is True
    images = _image_urls(body.get("image_urls"), base_url)
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise Invalid(20003, "Invalid value for prompt: must be a string")
    if not images and not (prompt or "").strip():
        raise Invalid(20002, "Missing required parameter: prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT:
        raise Invalid(20007, f"Prompt exceeds the maximum length of {MAX_PROMPT} characters.")
    if "negative_prompt" in body and not isinstance(body["negative_prompt"], str):
        raise Invalid(20003, "Invalid value for negative_prompt: must be a string")
    n = body.get("n", 1)
    cap = 12 if group else 4
    if not _int(n) or not 1 <= n <= cap:
        raise Invalid(20003, f"Invalid value for n: must be an integer in [1, {cap}]")
    if "seed" in body and (not _int(body["seed"]) or not 0 <= body["seed"] <= MAX_SEED):
        raise Invalid(20003, f"Invalid value for seed: must be an integer in [0, {MAX_SEED}]")
    if "bbox_list" in body:
        _bbox_list(body["bbox_list"], len(images))
    if "color_palette" in body:
        if group:
            raise Invalid(20003, "color_palette is not available with enable_sequential")
        _palette(body["color_palette"])
    width, height = _image_geometry(state, model, body, images, group)
    return {"model": model, "count": n, "width": width, "height": height}


def _image_urls(value: Any, base_url: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IMAGES:
        raise Invalid(20003, f"Invalid value for image_urls: must be an array of 1 to {MAX_IMAGES} URLs")
    for i, url in enumerate(value):
        if not isinstance(url, str):
            raise Invalid(20003, f"Invalid value for image_urls[{i}]: must be a string")
        if url.startswith("data:") or ";base64," in url[:100]:
            raise Invalid(20003, f"image_urls[{i}]: base64 / data: URIs are not accepted; use a public HTTPS URL")
        # DESIGN §6: plain http only where the emulator itself is served over loopback http (presigned test S3).
        if not (url.startswith("https://") or (is_loopback_http(url) and is_loopback_http(base_url))):
            raise Invalid(20003, f"image_urls[{i}]: media URLs must be public HTTPS URLs")
    return list(value)


def _bbox_list(value: Any, images: int) -> None:
    if not isinstance(value, list) or len(value) != images:
        raise Invalid(20003, f"Invalid value for bbox_list: must have one entry per image_urls item ({images})")
    for i, boxes in enumerate(value):
        if not isinstance(boxes, list) or len(boxes) > 2:
            raise Invalid(20003, f"Invalid value for bbox_list[{i}]: a list of at most 2 boxes")
        for box in boxes:
            ok = isinstance(box, list) and len(box) == 4 and all(_int(v) and v >= 0 for v in box)
            if not ok or box[2] <= box[0] or box[3] <= box[1]:
                raise Invalid(20003, f"Invalid box in bbox_list[{i}]: [x1, y1, x2, y2] integers with x1<x2, y1<y2")


def _palette(value: Any) -> None:
    if not isinstance(value, list) or not 3 <= len(value) <= 10:
        raise Invalid(20003, "Invalid value for color_palette: 3 to 10 items")
    total = Decimal(0)
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"hex", "ratio"}:
            raise Invalid(20003, f"Invalid value for color_palette[{i}]: must be {{hex, ratio}}")
        if not isinstance(item["hex"], str) or not HEX_RE.match(item["hex"]):
            raise Invalid(20003, f"Invalid value for color_palette[{i}].hex: must be #RRGGBB")
        match = RATIO_RE.match(item["ratio"]) if isinstance(item["ratio"], str) else None
        if match is None:
            raise Invalid(20003, f"Invalid value for color_palette[{i}].ratio: must be a percentage like '23.51%'")
        total += Decimal(match.group(1))
    if total != Decimal(100):
        raise Invalid(20003, f"color_palette ratios must sum to 100.00%, not {total}%")


def _image_geometry(
    state: EmulatorState, model: str, body: dict[str, Any], images: list[str], group: bool
) -> tuple[int, int]:
    size, resolution = body.get("size"), body.get("resolution")
    if size is not None and not isinstance(size, str):
        raise Invalid(20003, "Invalid value for size: must be a string")
    if resolution is not None and (not isinstance(resolution, str) or resolution.upper() not in GEARS):
        raise Invalid(20005, f"resolution '{resolution}' is not supported by {model}")
    size_gear = size.upper() if size is not None and size.upper() in GEARS else None
    pixels = PIXELS_RE.match(size) if size is not None else None
    if size is not None and size_gear is None and pixels is None and size not in ASPECTS:
        raise Invalid(20005, f"size '{size}' is not supported by {model}")
    if resolution is not None and (size_gear or pixels):
        raise Invalid(20003, "size and resolution conflict: pair an aspect ratio in size with the gear in resolution")
    text_to_image = not images and not group
    four_k_ok = model == PRO and text_to_image
    if pixels is not None:
        width, height = int(pixels.group(1)), int(pixels.group(2))
        top = 4096 * 4096 if four_k_ok else 2048 * 2048
        if not 768 * 768 <= width * height <= top or max(width / height, height / width) > 8:
            raise Invalid(20005, f"size '{size}' is not supported by {model} in this mode")
        return width, height
    gear = (resolution.upper() if resolution else None) or size_gear or DEFAULT_GEAR
    if gear == "4K" and not four_k_ok:
        where = "on the standard tier" if model != PRO else "in editing or group mode"
        raise Invalid(20005, f"size 4K is not supported by {model} {where}; the maximum is 2K")
    if size in ASPECTS:
        aspect = size
    elif images:
        aspect = _aspect_of(state, images[-1]) or "1:1"  # seed 003: the output follows the last input image
    else:
        aspect = "1:1"
    return image_size(aspect, gear)


def _aspect_of(state: EmulatorState, url: str) -> str | None:
    """The aspect of one of the emulator's own results; other hosts' images are not fetched."""
    match = MEDIA_PATH_RE.search(urlsplit(url).path)
    task = state.tasks.get(match.group(1)) if match else None
    if match is None or task is None or int(match.group(2)) >= len(task.outputs):
        return None
    out = task.outputs[int(match.group(2))]
    return f"{out['width']}:{out['height']}"


# -- video requests --------------------------------------------------------------------------------


def validate_video(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid(20001, "Request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise Invalid(20002, "Missing required parameter: model")
    if model not in VIDEO_MODELS:
        raise Invalid(20004, f"Model '{model}' is not supported on this endpoint.")
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise Invalid(20003, "Invalid value for prompt: must be a string")
    if not (prompt or "").strip():
        raise Invalid(20002, "Missing required parameter: prompt")
    if len(prompt or "") > MAX_PROMPT:
        raise Invalid(20007, f"Prompt exceeds the maximum length of {MAX_PROMPT} characters.")
    resolution = body.get("resolution", DEFAULT_VIDEO["resolution"])
    if not isinstance(resolution, str) or resolution.upper() not in VIDEO_RESOLUTIONS:
        raise Invalid(20005, f"resolution '{resolution}' is not supported by {model} (720P or 1080P)")
    duration = body.get("duration", DEFAULT_VIDEO["duration"])
    if not _int(duration) or not 2 <= duration <= 15:
        raise Invalid(20003, "Invalid value for duration: must be an integer number of seconds in [2, 15]")
    width, height = video_size(str(DEFAULT_VIDEO["aspect"]), resolution.lower())
    return {"model": model, "resolution": resolution.upper(), "duration": duration, "width": width, "height": height}


# -- tasks -----------------------------------------------------------------------------------------


def _task_id(state: EmulatorState) -> str:
    return "task_" + hashlib.sha256(state.new_id("reapi").encode()).hexdigest()[:32]


def _credits(usd: float) -> float:
    return float(math.ceil(round(usd * 1000, 9)))


def public_status(status: str) -> str:
    """The emulator's clock has a `queued` phase; reAPI knows only `processing` before the end."""
    return {"succeeded": "completed", "failed": "failed"}.get(status, "processing")


def serialize(state: EmulatorState, task: EmuTask, base: str) -> dict[str, Any]:
    status = public_status(state.settle(task))
    output: dict[str, Any] | None = None
    err: dict[str, Any] | None = None
    if status == "completed":
        urls = [media_url(base, task.id, i, o["format"]) for i, o in enumerate(task.outputs)]
        output = {"video_urls" if task.outputs[0]["kind"] == "video" else "image_urls": urls}
    elif status == "failed":
        message = CONTENT_MESSAGE if task.error_code == "content_policy_violation" else "Generic internal error"
        err = {"code": 60099, "message": message, "request_id": task.extra.get("request_id")}
    return {"id": task.id, "model": task.model, "status": status, "created_at": int(task.created_at),
            "output": output, "error": err}


async def _create(request: Request, kind: str) -> Response:
    state: EmulatorState = request.app.state.emulator
    denied = auth_error(request, state)
    if denied is not None:
        return denied
    key = request.headers.get("idempotency-key")
    state.note_submit(key)
    state.note_create_body(await request.body())
    if state.faults.hit("rate_limit"):
        retry = state.faults.config.retry_after_s
        return error(429, 50001, "Rate limit exceeded.", {"Retry-After": f"{retry:g}"})
    if state.faults.hit("server_error"):
        return error(500, 60001, "Failed to persist task; credits refunded.")
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return error(400, 20001, "Request body must be a JSON object.")
    base = str(request.base_url)
    try:
        checked = validate_image(state, body, base) if kind == "image" else validate_video(body)
    except Invalid as bad:
        return error(400, bad.code, bad.message)
    sha = body_hash(body)
    if kind == "image":
        count = int(checked["count"])
        usd = EMULATED_USD_PER_IMAGE[checked["model"]] * count
        outputs = [{"kind": "image", "width": checked["width"], "height": checked["height"], "format": "png",
                    "key": f"{sha}#{i}"} for i in range(count)]
    else:
        usd = EMULATED_USD_PER_SECOND[checked["resolution"]] * checked["duration"]
        outputs = [{"kind": "video", "width": checked["width"], "height": checked["height"], "format": "mp4",
                    "key": sha, "duration": checked["duration"], "fps": DEFAULT_VIDEO["fps"]}]
    credits = _credits(usd)
    with state.lock:
        if state.balance < credits:
            return error(402, 30001, f"Insufficient credits: this request needs {credits:g}, "
                                     f"the balance is {state.balance:g}.")
        outcome, code = state.decide_outcome()
        task = state.create_task(EmuTask(
            id=_task_id(state), protocol=PROTOCOL, model=checked["model"], created_at=time.time(),
            queue_s=state.config.queue_s, process_s=state.config.process_s, outcome=outcome, error_code=code,
            credits=credits, outputs=outputs, idempotency_key=key, body_sha256=sha, client_ref=None,
            extra={"request_id": request_id()},
        ))
    payload = {"id": task.id, "model": task.model, "status": "processing", "created_at": int(task.created_at)}
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
    denied = auth_error(request, state)
    if denied is not None:
        return denied
    if state.faults.hit("rate_limit"):
        return error(429, 50001, "Rate limit exceeded.", {"Retry-After": f"{state.faults.config.retry_after_s:g}"})
    if state.faults.hit("server_error"):
        return error(500, 60099, "Generic internal error")
    task = state.tasks.get(request.path_params["task_id"])
    if task is None or task.protocol != PROTOCOL:
        return error(404, 40001, "Task not found.")
    return JSONResponse(serialize(state, task, str(request.base_url)))


ROUTES = [
    Route(IMAGES, create_image, methods=["POST"]),
    Route(VIDEOS, create_video, methods=["POST"]),
    Route(TASKS + "/{task_id}", get_task, methods=["GET"]),
]
