"""Alibaba Model Studio (DashScope) as the emulator speaks it — as strict as providers/dashscope.md.

Paths are relative to the base URL (https://dashscope-intl.aliyuncs.com); the official SDK's
`dashscope.base_http_api_url = f"{base}/api/v1"` talks to it unchanged.

Choices where the sheet is open (kept in step with wan_pipeline/providers/dashscope.py):
- wan2.7-image* accept `parameters.negative_prompt` (≤ 500) and `parameters.prompt_extend` (seeds 002/003 forward
  them); prompt_extend has no effect without input images.
- Unknown keys are refused with InvalidParameter — stricter than the real host, which must tolerate at least
  the keys the official SDK (2.0.2) adds on its own, so those are accepted: `parameters.is_async`
  (ImageGeneration.async_call), `input.extend_prompt` (deprecated) and `input.function` (VideoSynthesis).
  Refusing the rest catches mapping mistakes that the real host might silently ignore.
- A FAILED task has `code`/`message` inside `output`; a query for an unknown or expired (> 24 h) task is
  HTTP 200 with `task_status: UNKNOWN`.
- Only a PENDING task can be cancelled (SDK docstring); otherwise 400 UnsupportedOperation.
- 429 `Throttling.RateQuota` has no Retry-After (none documented). A create that fails server-side is
  500 InternalError; a query hit by a server fault is a gateway 503 (the SDK retries those).
- Text over 5000 characters in an image request is truncated silently, as the sheet says, not refused.
- Billing: the account balance is in USD; a task reserves its price at creation and FAILED/CANCELED tasks
  are refunded ("failed generations are not billed"). Prices are the catalog's (sheet, Singapore).
- Times are UTC "YYYY-MM-DD hh:mm:ss.mmm"; result URLs carry an `Expires` 24 h after creation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import math
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from wan_pipeline.emulator.common import ConnectionDropped, bearer, media_url, read_json
from wan_pipeline.emulator.limits import IMAGE_GEAR_SIDE, VIDEO_SIZES
from wan_pipeline.emulator.mediatypes import sniff_mime
from wan_pipeline.emulator.state import EmulatorState, EmuTask, body_hash

PROTOCOL = "dashscope"
API = "/api/v1"
IMAGE_ASYNC = f"{API}/services/aigc/image-generation/generation"
IMAGE_SYNC = f"{API}/services/aigc/multimodal-generation/generation"
VIDEO_SYNTHESIS = f"{API}/services/aigc/video-generation/video-synthesis"
OSS_HOST = "/_dashscope_oss"  # the emulated temporary-storage host the upload policy points at

LIST_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")

IMAGE_USD = {"wan2.7-image": 0.030, "wan2.7-image-pro": 0.075}
VIDEO_USD_PER_SECOND = {"720P": 0.10, "1080P": 0.15}
VIDEO_MODELS = ("wan2.7-t2v", "wan2.7-i2v", "wan2.7-r2v", "wan2.7-videoedit")
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4")
MAX_PROMPT = 5000
MAX_NEGATIVE = 500
MAX_SEED = 2_147_483_647
TASK_TTL_S = 24 * 3600
SIZE_RE = re.compile(r"^([1-9][0-9]{1,4})\*([1-9][0-9]{1,4})$")
HEX_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
RATIO_RE = re.compile(r"^[0-9]{1,3}\.[0-9]{2}%$")

IMAGE_PARAMS = {"size", "n", "enable_sequential", "thinking_mode", "color_palette", "bbox_list", "watermark", "seed",
                "negative_prompt", "prompt_extend", "is_async"}
SDK_INPUTS = ("extend_prompt", "function")  # what VideoSynthesis.async_call always adds to `input`
VIDEO_INPUTS = {
    "wan2.7-t2v": {"prompt", "negative_prompt", "audio_url", *SDK_INPUTS},
    "wan2.7-i2v": {"prompt", "negative_prompt", "media", *SDK_INPUTS},
    "wan2.7-r2v": {"prompt", "media", *SDK_INPUTS},
    "wan2.7-videoedit": {"prompt", "negative_prompt", "media", *SDK_INPUTS},
}
VIDEO_PARAMS = {
    "wan2.7-t2v": {"resolution", "ratio", "duration", "prompt_extend", "watermark", "seed"},
    "wan2.7-i2v": {"resolution", "duration", "prompt_extend", "watermark", "seed"},
    "wan2.7-r2v": {"resolution", "ratio", "duration", "prompt_extend", "watermark", "seed"},
    "wan2.7-videoedit": {"resolution", "ratio", "duration", "audio_setting", "prompt_extend", "watermark", "seed"},
}
MEDIA_TYPES = {
    "wan2.7-i2v": ("first_frame", "last_frame", "driving_audio", "first_clip"),
    "wan2.7-r2v": ("reference_image", "reference_video", "first_frame"),
    "wan2.7-videoedit": ("video", "reference_image"),
}
I2V_COMBOS = (
    {"first_frame"}, {"first_frame", "driving_audio"}, {"first_frame", "last_frame"},
    {"first_frame", "last_frame", "driving_audio"}, {"first_clip"}, {"first_clip", "last_frame"},
)
IMAGE_MEDIA = ("first_frame", "last_frame", "reference_image")
VIDEO_MEDIA = ("first_clip", "reference_video", "video")


FAILURE_MESSAGES = {
    "DataInspectionFailed": "Output data may contain inappropriate content.",
    "InternalError.Algo": "An internal error has occured during algorithm execution.",
    "Canceled": "The task was canceled.",
}


class Invalid(Exception):
    """A request the host refuses with 400 InvalidParameter."""


# -- envelopes --------------------------------------------------------------------------------


def request_id() -> str:
    return str(uuid.uuid4())


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"request_id": request_id(), "code": code, "message": message}, status_code=status)


def auth_error(request: Request) -> JSONResponse:
    if bearer(request) is None:
        return error(401, "InvalidApiKey", "No API-key provided.")
    return error(401, "InvalidApiKey", "Invalid API-key provided.")


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# -- validation -------------------------------------------------------------------------------


def _bool(params: dict[str, Any], key: str) -> None:
    if key in params and not isinstance(params[key], bool):
        raise Invalid(f"parameters.{key} must be a boolean")


def _seed(params: dict[str, Any]) -> None:
    seed = params.get("seed")
    if "seed" in params and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise Invalid(f"parameters.seed must be an integer in [0, {MAX_SEED}]")


def _url_ok(state: EmulatorState, url: Any, where: str, oss_resolve: bool, image: bool) -> None:
    if not isinstance(url, str) or not url:
        raise Invalid(f"{where} must be a URL")
    if url.startswith(("https://", "http://")):
        return
    if image and url.startswith("data:image/"):
        if ";base64," not in url:
            raise Invalid(f"{where} must be a data:{{mime}};base64,{{data}} URI")
        return
    if url.startswith("oss://"):
        if not oss_resolve:
            raise Invalid(f"{where}: oss:// resources need the header X-DashScope-OssResourceResolve: enable")
        if _oss_file(state, url) is None:
            raise Invalid(f"{where}: {url} is not an uploaded temporary file")
        return
    raise Invalid(f"{where} must be a public HTTP/HTTPS URL{', a data URI' if image else ''} or an oss:// temp file")


def _check_keys(obj: dict[str, Any], allowed: set[str], where: str, model: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise Invalid(f"{where}.{unknown[0]} is not a parameter of {model}")


def validate_image(state: EmulatorState, body: Any, oss_resolve: bool) -> dict[str, Any]:
    """The image request, checked; returns what rendering needs (size, count, images, prompt)."""
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    _check_keys(body, {"model", "input", "parameters"}, "body", "the image API")
    model = body.get("model")
    inp = body.get("input")
    texts, images = _image_content(state, inp, oss_resolve)
    if len(texts) > 1:
        raise Invalid("input.messages[0].content takes one text item")
    if len(images) > 9:
        raise Invalid("input.messages[0].content takes at most 9 images")
    prompt = texts[0][:MAX_PROMPT] if texts else ""  # sheet: excess text is silently truncated
    if not images and not prompt.strip():
        raise Invalid("text is required for text-to-image")
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise Invalid("parameters must be an object")
    _check_keys(params, IMAGE_PARAMS, "parameters", str(model))
    for key in ("enable_sequential", "thinking_mode", "watermark", "prompt_extend", "is_async"):
        _bool(params, key)
    _seed(params)
    group = bool(params.get("enable_sequential", False))
    pro = model == "wan2.7-image-pro"
    t2i = not images
    n = params.get("n", 12 if group else 1)
    cap = 12 if group else 4
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= cap:
        raise Invalid(f"parameters.n must be an integer in [1, {cap}]{' with enable_sequential' if group else ''}")
    width, height = _image_size(state, params.get("size", "2K"), pro and t2i and not group, images)
    negative = params.get("negative_prompt")
    if negative is not None and (not isinstance(negative, str) or len(negative) > MAX_NEGATIVE):
        raise Invalid(f"parameters.negative_prompt must be a string of at most {MAX_NEGATIVE} characters")
    if "color_palette" in params:
        if group:
            raise Invalid("parameters.color_palette is not available with enable_sequential")
        _palette(params["color_palette"])
    if "bbox_list" in params:
        _bboxes(params["bbox_list"], len(images))
    return {"model": model, "width": width, "height": height, "count": n, "images": images, "prompt": prompt}


def _image_content(state: EmulatorState, inp: Any, oss_resolve: bool) -> tuple[list[str], list[str]]:
    """`input.messages`: one user message; its text items and its image URLs, in order."""
    if not isinstance(inp, dict) or set(inp) != {"messages"}:
        raise Invalid("input must be {\"messages\": [...]}")
    messages = inp["messages"]
    if not isinstance(messages, list):
        raise Invalid("input.messages must be a list")
    if len(messages) != 1:
        raise Invalid("input.messages must hold exactly one user message (single-turn only)")
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user" or set(message) != {"role", "content"}:
        raise Invalid("input.messages[0] must be {\"role\": \"user\", \"content\": [...]}")
    content = message["content"]
    if not isinstance(content, list) or not content:
        raise Invalid("input.messages[0].content must be a non-empty list")
    images: list[str] = []
    texts: list[str] = []
    for i, item in enumerate(content):
        where = f"input.messages[0].content[{i}]"
        if not isinstance(item, dict) or len(item) != 1 or not ({"text", "image"} & set(item)):
            raise Invalid(f"{where} must be {{\"text\": ...}} or {{\"image\": ...}}")
        if "text" in item:
            if not isinstance(item["text"], str):
                raise Invalid(f"{where}.text must be a string")
            texts.append(item["text"])
        else:
            _url_ok(state, item["image"], f"{where}.image", oss_resolve, image=True)
            images.append(item["image"])
    return texts, images


def _image_size(state: EmulatorState, size: Any, pro_t2i_single: bool, images: list[str]) -> tuple[int, int]:
    """`parameters.size`: a tier (4K only for pro text-to-image outside group mode) or "W*H" in bounds."""
    if not isinstance(size, str):
        raise Invalid("parameters.size must be a string")
    if size in IMAGE_GEAR_SIDE:
        if size == "4K" and not pro_t2i_single:
            raise Invalid("parameters.size 4K is only for wan2.7-image-pro text-to-image outside group mode")
        width, height = _tier_size(state, size, images[-1] if images else None)
    else:
        match = SIZE_RE.match(size)
        if match is None:
            raise Invalid("parameters.size must be 1K, 2K, 4K or \"W*H\"")
        width, height = int(match.group(1)), int(match.group(2))
        limit = 4096**2 if pro_t2i_single else 2048**2
        if not 768**2 <= width * height <= limit:
            raise Invalid(f"parameters.size {size}: total pixels must be in [{768**2}, {limit}]")
        if not 1 / 8 <= width / height <= 8:
            raise Invalid(f"parameters.size {size}: aspect ratio must be in [1:8, 8:1]")
    return width, height


def _palette(palette: Any) -> None:
    if not isinstance(palette, list) or not 3 <= len(palette) <= 10:
        raise Invalid("parameters.color_palette must hold 3 to 10 colours")
    total = Decimal(0)
    for i, colour in enumerate(palette):
        if not isinstance(colour, dict) or set(colour) != {"hex", "ratio"}:
            raise Invalid(f"parameters.color_palette[{i}] must be {{\"hex\", \"ratio\"}}")
        if not isinstance(colour["hex"], str) or not HEX_RE.match(colour["hex"]):
            raise Invalid(f"parameters.color_palette[{i}].hex must be #RRGGBB")
        if not isinstance(colour["ratio"], str) or not RATIO_RE.match(colour["ratio"]):
            raise Invalid(f"parameters.color_palette[{i}].ratio must be a percentage with 2 decimals, e.g. 25.00%")
        try:
            total += Decimal(colour["ratio"].rstrip("%"))
        except InvalidOperation as exc:  # pragma: no cover - RATIO_RE guards this
            raise Invalid("bad ratio") from exc
    if total != Decimal("100.00"):
        raise Invalid(f"parameters.color_palette ratios must sum to 100.00%, not {total}%")


def _bboxes(bbox_list: Any, images: int) -> None:
    if not isinstance(bbox_list, list) or len(bbox_list) != images:
        raise Invalid(f"parameters.bbox_list must have one entry per input image ({images})")
    for i, boxes in enumerate(bbox_list):
        if not isinstance(boxes, list) or len(boxes) > 2:
            raise Invalid(f"parameters.bbox_list[{i}] must be a list of at most 2 boxes")
        for box in boxes:
            ok = isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in box)
            if not ok or box[2] <= box[0] or box[3] <= box[1]:
                raise Invalid(f"parameters.bbox_list[{i}] boxes must be [x1, y1, x2, y2] pixels with x1<x2, y1<y2")


def validate_video(state: EmulatorState, body: Any, oss_resolve: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    _check_keys(body, {"model", "input", "parameters"}, "body", "the video API")
    model = str(body.get("model"))
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise Invalid("input must be an object")
    _check_keys(inp, VIDEO_INPUTS[model], "input", model)
    prompt = inp.get("prompt")
    if model in ("wan2.7-t2v", "wan2.7-r2v") and (not isinstance(prompt, str) or not prompt.strip()):
        raise Invalid("input.prompt is required")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT):
        raise Invalid(f"input.prompt must be a string of at most {MAX_PROMPT} characters")
    negative = inp.get("negative_prompt")
    if negative is not None and (not isinstance(negative, str) or len(negative) > MAX_NEGATIVE):
        raise Invalid(f"input.negative_prompt must be a string of at most {MAX_NEGATIVE} characters")
    if "extend_prompt" in inp and not isinstance(inp["extend_prompt"], bool):
        raise Invalid("input.extend_prompt must be a boolean")
    if "function" in inp and inp["function"] != "video-synthesis":
        raise Invalid("input.function must be video-synthesis")
    if "audio_url" in inp:
        _url_ok(state, inp["audio_url"], "input.audio_url", oss_resolve, image=False)
    media = _media(state, model, inp.get("media"), oss_resolve)
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise Invalid("parameters must be an object")
    _check_keys(params, VIDEO_PARAMS[model], "parameters", model)
    for key in ("prompt_extend", "watermark"):
        _bool(params, key)
    _seed(params)
    resolution = params.get("resolution", "1080P")
    if resolution not in ("720P", "1080P"):
        raise Invalid("parameters.resolution must be 720P or 1080P")
    ratio = params.get("ratio")
    if ratio is not None and ratio not in RATIOS:
        raise Invalid(f"parameters.ratio must be one of {', '.join(RATIOS)}")
    has_ref_video = any(m["type"] == "reference_video" for m in media)
    if model == "wan2.7-videoedit":
        duration = params.get("duration", 0)
        ok = isinstance(duration, int) and not isinstance(duration, bool) and (duration == 0 or 2 <= duration <= 10)
        if not ok:
            raise Invalid("parameters.duration must be 0 (keep the input length) or an integer in [2, 10]")
    else:
        duration = params.get("duration", 5)
        high = 10 if has_ref_video else 15
        if isinstance(duration, bool) or not isinstance(duration, int) or not 2 <= duration <= high:
            raise Invalid(f"parameters.duration must be an integer in [2, {high}]"
                          f"{' with a reference video' if has_ref_video else ''}")
    if "audio_setting" in params and params["audio_setting"] not in ("auto", "origin"):
        raise Invalid("parameters.audio_setting must be auto or origin")
    return {"model": model, "media": media, "resolution": resolution, "ratio": ratio, "duration": duration,
            "prompt": prompt or "", "prompt_extend": params.get("prompt_extend", True)}


def _media(state: EmulatorState, model: str, media: Any, oss_resolve: bool) -> list[dict[str, str]]:
    if model == "wan2.7-t2v":
        return []
    if not isinstance(media, list) or not media:
        raise Invalid("input.media is required")
    types = MEDIA_TYPES[model]
    out: list[dict[str, str]] = []
    for i, item in enumerate(media):
        if not isinstance(item, dict) or set(item) != {"type", "url"}:
            raise Invalid(f"input.media[{i}] must be {{\"type\", \"url\"}}")
        if item["type"] not in types:
            raise Invalid(f"input.media[{i}].type must be one of {', '.join(types)} for {model}")
        _url_ok(state, item["url"], f"input.media[{i}].url", oss_resolve, image=item["type"] in IMAGE_MEDIA)
        out.append({"type": item["type"], "url": item["url"]})
    kinds = [m["type"] for m in out]
    if model == "wan2.7-i2v" and (len(set(kinds)) != len(kinds) or set(kinds) not in I2V_COMBOS):
        raise Invalid("input.media: wan2.7-i2v takes first_frame [+ last_frame] [+ driving_audio], or first_clip "
                      "[+ last_frame]")
    if model == "wan2.7-r2v":
        refs = [k for k in kinds if k in ("reference_image", "reference_video")]
        if not 1 <= len(refs) <= 5 or kinds.count("first_frame") > 1:
            raise Invalid("input.media: wan2.7-r2v takes 1 to 5 reference images and videos combined")
    if model == "wan2.7-videoedit" and (kinds.count("video") != 1 or kinds.count("reference_image") > 3):
        raise Invalid("input.media: wan2.7-videoedit takes exactly one video and at most 3 reference images")
    return out


# -- sizes from inputs ------------------------------------------------------------------------


def _oss_file(state: EmulatorState, url: str) -> dict[str, Any] | None:
    key = url[len("oss://"):]
    return next((f for f in state.files.values() if f.get("protocol") == PROTOCOL and f.get("key") == key), None)


def _probe(state: EmulatorState, url: str) -> tuple[int, int, float | None] | None:
    """Width, height (and duration) of an input the emulator can see: a data URI, a temp upload, its own media."""
    if url.startswith("data:image/") and ";base64," in url:
        try:
            data = base64.b64decode(url.split(";base64,", 1)[1], validate=False)
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                return img.size[0], img.size[1], None
        except (binascii.Error, OSError, ValueError):
            return None
    if url.startswith("oss://"):
        meta = _oss_file(state, url)
        if meta and meta.get("width"):
            return int(meta["width"]), int(meta["height"]), meta.get("duration_s")
        return None
    match = re.search(r"/_media/([^/]+)/([0-9]+)\.[a-z0-9]+$", urlsplit(url).path)
    if match:
        task = state.tasks.get(match.group(1))
        index = int(match.group(2))
        if task is not None and index < len(task.outputs):
            out = task.outputs[index]
            return int(out["width"]), int(out["height"]), out.get("duration")
    return None


def _tier_size(state: EmulatorState, tier: str, last_image: str | None) -> tuple[int, int]:
    """A tier renders square without images, else in the aspect of the LAST input image (sheet, `size`)."""
    total = IMAGE_GEAR_SIDE[tier] ** 2
    probed = _probe(state, last_image) if last_image else None
    aspect = probed[0] / probed[1] if probed else 1.0
    aspect = min(8.0, max(1 / 8, aspect))
    width = math.sqrt(total * aspect)
    return max(16, round(width / 16) * 16), max(16, round(total / width / 16) * 16)


def _nearest_ratio(width: int, height: int) -> str:
    return min(RATIOS, key=lambda r: abs(math.log((width / height) / (int(r.split(":")[0]) / int(r.split(":")[1])))))


# -- handlers ---------------------------------------------------------------------------------


async def _guarded(request: Request, needs_async: bool) -> tuple[EmulatorState, Response | None]:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return state, auth_error(request)
    async_header = (request.headers.get("x-dashscope-async") or "").lower() == "enable"
    if needs_async and not async_header:
        return state, error(403, "AccessDenied", "current user api does not support synchronous calls")
    state.note_submit(None)
    state.note_create_body(await request.body())
    if state.faults.hit("rate_limit"):
        return state, error(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
    if state.faults.hit("server_error"):
        return state, error(500, "InternalError", "An internal error has occurred, please try again later.")
    return state, None


def _model_error(body: Any, kind: str) -> JSONResponse | None:
    if not isinstance(body, dict):
        return error(400, "InvalidParameter", "body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "InvalidParameter", "Model is required")
    known = (*IMAGE_USD, *VIDEO_MODELS)
    if model not in known:
        return error(404, "ModelNotFound", f"Model not exist: {model}")
    wanted = IMAGE_USD if kind == "image" else VIDEO_MODELS
    if model not in wanted:
        return error(400, "InvalidParameter", f"Model {model} is not supported by the {kind} API")
    return None


def _new_task(state: EmulatorState, body: Any, model: str, usd: float, outputs: list[dict[str, Any]],
              extra: dict[str, Any], sync: bool = False) -> EmuTask | JSONResponse:
    with state.lock:
        if state.balance + 1e-9 < usd:
            return error(400, "Arrearage", "Access denied, please make sure your account is in good standing.")
        outcome, code = state.decide_outcome()
        if code == "content_policy_violation":
            code = "DataInspectionFailed"
        elif code is not None:
            code = "InternalError.Algo"
        return state.create_task(EmuTask(
            id=str(uuid.uuid4()), protocol=PROTOCOL, model=model, created_at=time.time(),
            queue_s=0.0 if sync else state.config.queue_s, process_s=0.0 if sync else state.config.process_s,
            outcome=outcome, error_code=code, credits=usd, outputs=outputs, idempotency_key=None,
            body_sha256=body_hash(body), client_ref=None, extra=extra,
        ))


async def _validated(
    request: Request, kind: str, needs_async: bool, validate: Callable[[EmulatorState, Any, bool], dict[str, Any]]
) -> tuple[EmulatorState, Any, dict[str, Any]] | Response:
    """Auth, the async header, a JSON body, a known model and the kind's own validation — or the refusal."""
    state, refused = await _guarded(request, needs_async=needs_async)
    if refused is not None:
        return refused
    body, problem = await read_json(request)
    if problem is not None:
        return error(400, "InvalidParameter", problem)
    model_problem = _model_error(body, kind)
    if model_problem is not None:
        return model_problem
    oss = (request.headers.get("x-dashscope-ossresourceresolve") or "").lower() == "enable"
    try:
        return state, body, validate(state, body, oss)
    except Invalid as exc:
        return error(400, "InvalidParameter", str(exc))


async def _image(request: Request, sync: bool) -> Response:
    checked = await _validated(request, "image", not sync, validate_image)
    if isinstance(checked, Response):
        return checked
    state, body, spec = checked
    sha = body_hash(body)
    outputs = [{"kind": "image", "width": spec["width"], "height": spec["height"], "format": "png",
                "key": f"{sha}:{i}"} for i in range(spec["count"])]
    usd = round(IMAGE_USD[spec["model"]] * spec["count"], 6)
    extra = {"kind": "image", "input_tokens": 1000 * (1 + len(spec["images"])) + len(spec["prompt"])}
    task = _new_task(state, body, spec["model"], usd, outputs, extra, sync=sync)
    if isinstance(task, JSONResponse):
        return task
    base = str(request.base_url)
    if sync:
        await asyncio.sleep(state.config.queue_s + state.config.process_s)
        if state.settle(task) == "failed":
            return _sync_failure(task)
        data = serialize(state, task, base)
        output = {"choices": data["output"]["choices"], "finished": True}
        payload: dict[str, Any] = {"request_id": request_id(), "output": output, "usage": data["usage"]}
    else:
        payload = {"output": {"task_status": "PENDING", "task_id": task.id}, "request_id": request_id()}
    if state.faults.hit("drop"):
        raise ConnectionDropped("emulated: task created, response lost")
    if state.config.answer_delay_s:
        await asyncio.sleep(state.config.answer_delay_s)  # the task exists; its answer is still on the way
    return JSONResponse(payload)


def _sync_failure(task: EmuTask) -> JSONResponse:
    code = str(task.error_code)
    return error(400 if code == "DataInspectionFailed" else 500, code, FAILURE_MESSAGES.get(code, "failed"))


async def image_async(request: Request) -> Response:
    return await _image(request, sync=False)


async def image_sync(request: Request) -> Response:
    return await _image(request, sync=True)


async def video(request: Request) -> Response:
    checked = await _validated(request, "video", True, validate_video)
    if isinstance(checked, Response):
        return checked
    state, body, spec = checked
    media: list[dict[str, str]] = spec["media"]
    source = next((m["url"] for m in media if m["type"] in ("video", "first_clip", "first_frame")), None)
    probed = _probe(state, source) if source else None
    ratio = spec["ratio"] or (_nearest_ratio(probed[0], probed[1]) if probed else "16:9")
    width, height = VIDEO_SIZES[spec["resolution"].lower()][ratio]
    input_seconds = 0.0
    if spec["model"] == "wan2.7-videoedit":
        input_seconds = float(probed[2]) if probed and probed[2] else 5.0
    seconds = spec["duration"] or max(2, round(input_seconds))
    sha = body_hash(body)
    outputs = [{"kind": "video", "width": width, "height": height, "format": "mp4", "key": sha,
                "duration": seconds, "fps": 16}]
    usd = round(VIDEO_USD_PER_SECOND[spec["resolution"]] * seconds, 6)
    extra = {"kind": "video", "ratio": ratio, "sr": int(spec["resolution"].rstrip("P")), "seconds": seconds,
             "input_seconds": input_seconds, "prompt": spec["prompt"], "prompt_extend": spec["prompt_extend"]}
    task = _new_task(state, body, spec["model"], usd, outputs, extra)
    if isinstance(task, JSONResponse):
        return task
    payload = {"output": {"task_status": "PENDING", "task_id": task.id}, "request_id": request_id()}
    if state.faults.hit("drop"):
        raise ConnectionDropped("emulated: task created, response lost")
    if state.config.answer_delay_s:
        await asyncio.sleep(state.config.answer_delay_s)  # the task exists; its answer is still on the way
    return JSONResponse(payload)


def status_of(state: EmulatorState, task: EmuTask) -> str:
    if task.extra.get("canceled"):
        return "CANCELED"
    if time.time() - task.created_at > TASK_TTL_S:
        return "UNKNOWN"
    return {"queued": "PENDING", "processing": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}[
        state.settle(task)]


def serialize(state: EmulatorState, task: EmuTask, base: str) -> dict[str, Any]:
    status = status_of(state, task)
    if status == "UNKNOWN":
        return {"request_id": request_id(), "output": {"task_id": task.id, "task_status": "UNKNOWN"}}
    output: dict[str, Any] = {"task_id": task.id, "task_status": status, "submit_time": _fmt(task.created_at)}
    if status != "PENDING" and not task.extra.get("canceled"):
        output["scheduled_time"] = _fmt(task.created_at + task.queue_s)
    if status in ("SUCCEEDED", "FAILED", "CANCELED"):
        output["end_time"] = _fmt(task.extra.get("canceled_at") or task.created_at + task.queue_s + task.process_s)
    payload: dict[str, Any] = {"request_id": request_id(), "output": output}
    expires = int(task.created_at + TASK_TTL_S)
    signature = hashlib.sha256(task.id.encode()).hexdigest()[:24]
    signed = f"?Expires={expires}&OSSAccessKeyId=emulated&Signature={signature}"
    if status == "SUCCEEDED" and task.extra.get("kind") == "image":
        urls = [media_url(base, task.id, i, o["format"]) + signed for i, o in enumerate(task.outputs)]
        output["finished"] = True
        output["choices"] = [{"finish_reason": "stop", "message": {
            "role": "assistant", "content": [{"type": "image", "image": url} for url in urls]}}]
        first = task.outputs[0]
        payload["usage"] = {"size": f"{first['width']}*{first['height']}", "image_count": len(task.outputs),
                            "input_tokens": task.extra.get("input_tokens", 0), "output_tokens": 2,
                            "total_tokens": task.extra.get("input_tokens", 0) + 2}
    elif status == "SUCCEEDED":
        output["orig_prompt"] = task.extra.get("prompt", "")
        if task.extra.get("prompt_extend", True):
            output["actual_prompt"] = f"{task.extra.get('prompt', '')} (rewritten by the emulator's prompt extender)"
        output["video_url"] = media_url(base, task.id, 0, "mp4") + signed
        seconds = task.extra.get("seconds", 5)
        payload["usage"] = {"duration": seconds, "input_video_duration": task.extra.get("input_seconds", 0),
                            "output_video_duration": seconds, "video_count": 1, "ratio": task.extra.get("ratio"),
                            "SR": task.extra.get("sr")}
    elif status == "FAILED":
        output["code"] = task.error_code
        output["message"] = FAILURE_MESSAGES.get(str(task.error_code), FAILURE_MESSAGES["InternalError.Algo"])
    return payload


async def get_task(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    state.note_poll()
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    if state.faults.hit("rate_limit"):
        return error(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
    if state.faults.hit("server_error"):
        return PlainTextResponse("Service Unavailable", status_code=503)
    task_id = request.path_params["task_id"]
    task = state.tasks.get(task_id)
    if task is None or task.protocol != PROTOCOL:
        return JSONResponse({"request_id": request_id(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
    return JSONResponse(serialize(state, task, str(request.base_url)))


async def cancel_task(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    task = state.tasks.get(request.path_params["task_id"])
    if task is None or task.protocol != PROTOCOL or status_of(state, task) != "PENDING":
        return error(400, "UnsupportedOperation",
                     "Failed to cancel the task, please confirm if the task is in PENDING status.")
    with state.lock:
        now = time.time()
        # A cancelled task is never billed: it settles at once as failed, which refunds it.
        task.extra["canceled"] = True
        task.extra["canceled_at"] = now
        task.outcome, task.error_code = "failed", "Canceled"
        task.queue_s = task.process_s = 0.0
        state.settle(task)
        state.save()
    return JSONResponse({"request_id": request_id()})


async def list_tasks(request: Request) -> Response:
    """GET /api/v1/tasks — the SDK's list (sheet "Task list"): an account's tasks, oldest first, filtered by
    creation time (UTC, whole seconds, both ends inclusive), model and status; how a client finds tasks
    whose create answer it lost. Entries carry no prompt or parameters, as the sheet says."""
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    if state.faults.hit("rate_limit"):
        return error(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
    q = request.query_params
    try:
        page_no, page_size = int(q.get("page_no", "1")), int(q.get("page_size", "10"))
        start = _parse_compact(q.get("start_time"))
        end = _parse_compact(q.get("end_time"))
    except ValueError:
        return error(400, "InvalidParameter", "page_no/page_size must be integers, times YYYYMMDDhhmmss")
    if page_no < 1 or not 1 <= page_size <= 100:
        return error(400, "InvalidParameter", "page_no must be >= 1 and page_size in [1, 100]")
    if q.get("status") and q["status"] not in LIST_STATUSES:
        return error(400, "InvalidParameter", f"status must be one of {', '.join(LIST_STATUSES)}")
    rows = []
    with state.lock:
        mine = sorted((t for t in state.tasks.values() if t.protocol == PROTOCOL), key=lambda t: t.created_at)
        for task in mine:
            status = status_of(state, task)
            if q.get("model_name") and task.model != q["model_name"]:
                continue
            if q.get("status") and status != q["status"]:
                continue
            if (start is not None and task.created_at < start) or (end is not None and task.created_at >= end + 1):
                continue
            rows.append({"task_id": task.id, "model_name": task.model, "status": status,
                         "gmt_create": _fmt(task.created_at)})
    page = rows[(page_no - 1) * page_size: page_no * page_size]
    return JSONResponse({"request_id": request_id(), "total": len(rows), "page_no": page_no,
                         "page_size": page_size, "total_page": max(1, math.ceil(len(rows) / page_size)),
                         "data": page})


def _parse_compact(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()


async def upload_policy(request: Request) -> Response:
    """GET /api/v1/uploads?action=getPolicy&model=… — the temporary-storage policy (sheet, Files/uploads)."""
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    if request.query_params.get("action") != "getPolicy" or not request.query_params.get("model"):
        return error(400, "InvalidParameter", "action=getPolicy and model are required")
    directory = f"dashscope-instant/{uuid.uuid4().hex}"
    policy = base64.b64encode(f'{{"dir":"{directory}"}}'.encode()).decode()
    return JSONResponse({"request_id": request_id(), "data": {
        "policy": policy, "signature": hashlib.sha256(policy.encode()).hexdigest()[:28],
        "upload_dir": directory, "upload_host": str(request.base_url).rstrip("/") + OSS_HOST,
        "expire_in_seconds": 300, "max_file_size_mb": 100, "capacity_limit_mb": 999999999,
        "oss_access_key_id": "emulated-oss-key", "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true",
    }})


async def oss_upload(request: Request) -> Response:
    """The emulated OSS host: a multipart POST form as the SDK's OssUtils.upload sends it."""
    state: EmulatorState = request.app.state.emulator
    form = await request.form()
    missing = [k for k in ("OSSAccessKeyId", "Signature", "policy", "key", "success_action_status", "file")
               if k not in form]
    if missing:
        return PlainTextResponse(f"missing form field(s): {', '.join(missing)}", status_code=400)
    upload = form["file"]
    if isinstance(upload, str):
        return PlainTextResponse("file must be a file part", status_code=400)
    data = await upload.read()
    if len(data) > 100 * 1024 * 1024:
        return PlainTextResponse("EntityTooLarge", status_code=400)
    meta: dict[str, Any] = {"protocol": PROTOCOL, "key": str(form["key"]), "size_bytes": len(data)}
    meta.update(_media_facts(data))
    with state.lock:
        state.files[state.new_id("oss_")] = meta
        state.save()
    return Response(status_code=200)


def _media_facts(data: bytes) -> dict[str, Any]:
    mime = sniff_mime(data[:32]) or "application/octet-stream"
    facts: dict[str, Any] = {"mime_type": mime}
    try:
        if mime.startswith("image/"):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                facts["width"], facts["height"] = img.size
        elif mime.startswith("video/"):
            import av

            with av.open(io.BytesIO(data)) as container:
                stream = container.streams.video[0]
                facts["width"], facts["height"] = stream.codec_context.width, stream.codec_context.height
                if stream.duration is not None and stream.time_base is not None:
                    facts["duration_s"] = float(stream.duration * stream.time_base)
    except Exception:  # an unreadable file is still stored; the host checks media when the task runs
        pass
    return facts


ROUTES = [
    Route(IMAGE_ASYNC, image_async, methods=["POST"]),
    Route(IMAGE_SYNC, image_sync, methods=["POST"]),
    Route(VIDEO_SYNTHESIS, video, methods=["POST"]),
    Route(f"{API}/tasks", list_tasks, methods=["GET"]),
    Route(f"{API}/tasks/{{task_id}}", get_task, methods=["GET"]),
    Route(f"{API}/tasks/{{task_id}}/cancel", cancel_task, methods=["POST"]),
    Route(f"{API}/uploads", upload_policy, methods=["GET"]),
    Route(OSS_HOST, oss_upload, methods=["POST"]),
]
