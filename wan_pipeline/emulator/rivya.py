"""Rivya Public API v1 as the emulator speaks it — as strict as seed 000/001 and the Rivya sheet.

Choices where the sheet is open (kept in step with wan_pipeline/providers/rivya.py):
- select params must be JSON strings (the seed's examples); `seed` must be an integer;
- unknown `params` keys are rejected with validation_failed;
- create answers 200 with the task; a replayed Idempotency-Key with the same body answers the same task;
- insufficient_credits answers 402; 429 carries Retry-After.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wan_pipeline.emulator.common import (
    ConnectionDropped,
    bearer,
    media_url,
    read_json,
    request_id,
    size_for_image,
)
from wan_pipeline.emulator.limits import video_size
from wan_pipeline.emulator.mediatypes import sniff_mime
from wan_pipeline.emulator.state import EmulatorState, EmuTask, body_hash

PROTOCOL = "rivya"
IMAGE_PARAMS: dict[str, tuple[str, ...] | None] = {
    "aspect_ratio": ("1:1", "16:9", "4:3", "21:9", "3:4", "9:16", "8:1", "1:8"),
    "resolution": ("1K", "2K"),
    "watermark": ("false", "true"),
    "seed": None,
    "referenceMediaItems": None,
}
VIDEO_PARAMS: dict[str, tuple[str, ...] | None] = {
    "resolution": ("720p", "1080p"),
    "duration": ("5", "10", "15"),
    "aspect_ratio": ("16:9", "9:16", "1:1", "4:3", "3:4"),
    "negative_prompt": None,
    "prompt_extend": ("true", "false"),
    "watermark": ("false", "true"),
    "audio_setting": ("auto", "origin"),
    "seed": None,
    "referenceMediaItems": None,
}
MODELS = {
    "wan-2-7-image": {"credits": 5, "params": IMAGE_PARAMS, "max_refs": 9, "kind": "image"},
    "wan-2-7-video": {"credits": 80, "params": VIDEO_PARAMS, "max_refs": 2, "kind": "video"},
}
DEFAULTS = {"aspect_ratio": "1:1", "resolution": "2K"}
VIDEO_DEFAULTS = {"aspect_ratio": "16:9", "resolution": "720p", "duration": "5"}
VIDEO_FPS = 16
MAX_PROMPT = 5000
MAX_SEED = 2_147_483_647


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "requestId": request_id()}}, status_code=status, headers=headers
    )


def auth_error(request: Request) -> JSONResponse:
    """Sheet: no bearer token is `api_key_missing`, a token that is not a key is `api_key_invalid` (401)."""
    code = "api_key_invalid" if bearer(request) else "api_key_missing"
    return error(401, code, "A valid API key is required.")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def serialize(state: EmulatorState, task: EmuTask, base: str) -> dict[str, Any]:
    status = state.settle(task)
    done_at = task.created_at + task.queue_s + task.process_s
    now = time.time()
    result = None
    err = None
    final = 0.0
    if status == "succeeded":
        urls = [media_url(base, task.id, i, o["format"]) for i, o in enumerate(task.outputs)]
        result = {"primary_url": urls[0], "urls": urls}
        final = task.credits
    elif status == "failed":
        err = {
            "code": task.error_code,
            "message": "The generation failed."
            if task.error_code == "generation_failed"
            else "The request was rejected by content moderation.",
        }
    return {
        "id": task.id,
        "status": status,
        "model": task.model,
        "reserved_credits": _int_if_whole(task.credits),
        "final_credits": _int_if_whole(final),
        "created_at": _iso(task.created_at),
        "updated_at": _iso(min(now, done_at) if status in ("succeeded", "failed") else now),
        "result": result,
        "error": err,
    }


def _int_if_whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def validate(state: EmulatorState, body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    unknown = set(body) - {"model", "prompt", "params", "client_request_id"}
    if unknown:
        return f"unknown field(s): {', '.join(sorted(unknown))}"
    model = body.get("model")
    if model not in MODELS:
        return f"model must be one of {', '.join(MODELS)}"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if len(prompt) > MAX_PROMPT:
        return f"prompt must be at most {MAX_PROMPT} characters"
    crid = body.get("client_request_id")
    if crid is not None and (not isinstance(crid, str) or len(crid) > 128):
        return "client_request_id must be a string of at most 128 characters"
    params = body.get("params", {})
    if not isinstance(params, dict):
        return "params must be an object"
    spec = MODELS[model]
    allowed: dict[str, tuple[str, ...] | None] = spec["params"]  # type: ignore[assignment]
    for key, value in params.items():
        if key not in allowed:
            return f"params.{key} is not a parameter of {model}"
        options = allowed[key]
        if options is not None and (not isinstance(value, str) or value not in options):
            return f"params.{key} must be one of {', '.join(options)}"
    if "seed" in params:
        seed = params["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            return f"params.seed must be an integer between 0 and {MAX_SEED}"
    if "negative_prompt" in params and not isinstance(params["negative_prompt"], str):
        return "params.negative_prompt must be a string"
    refs = params.get("referenceMediaItems")
    if refs is not None:
        if not isinstance(refs, list) or len(refs) > int(spec["max_refs"]):  # type: ignore[call-overload]
            return f"params.referenceMediaItems must be a list of at most {spec['max_refs']} items"
        kinds = []
        for i, item in enumerate(refs):
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                return f"params.referenceMediaItems[{i}].url is required"
            allowed_kinds = ("image", "video") if spec["kind"] == "video" else ("image",)
            if item.get("kind") not in allowed_kinds:
                return f"params.referenceMediaItems[{i}].kind must be one of {', '.join(allowed_kinds)} for {model}"
            known = next((f for f in state.files.values() if f["url"] == item["url"]), None)
            if known is None:
                return f"params.referenceMediaItems[{i}].url must be a URL returned by /api/v1/files"
            if item["kind"] == "video" and item.get("durationToken") != known.get("duration_token"):
                return f"params.referenceMediaItems[{i}].durationToken does not match the uploaded file"
            kinds.append(item["kind"])
        if kinds.count("video") > 1 or (kinds.count("video") == 1 and kinds.count("image") > 1):
            return "params.referenceMediaItems: up to 2 images, or 1 video plus 1 optional image"
    return None


def _outputs(state: EmulatorState, body: dict[str, Any], sha: str) -> list[dict[str, Any]]:
    params = body.get("params", {})
    if MODELS[body["model"]]["kind"] == "image":
        width, height = size_for_image(
            params.get("aspect_ratio", DEFAULTS["aspect_ratio"]), params.get("resolution", DEFAULTS["resolution"])
        )
        return [{"kind": "image", "width": width, "height": height, "format": "png", "key": sha}]
    refs = params.get("referenceMediaItems") or []
    resolution = params.get("resolution", VIDEO_DEFAULTS["resolution"])
    aspect = params.get("aspect_ratio", VIDEO_DEFAULTS["aspect_ratio"])
    duration = int(params.get("duration", VIDEO_DEFAULTS["duration"]))
    video_ref = next((r for r in refs if r["kind"] == "video"), None)
    if video_ref is not None:
        duration = min(duration, 10)  # seed 001: video edit tops out at 10 s, longer is normalized down
    elif refs:
        # Image-to-video follows the uploaded frame's geometry (seed 001).
        first = next(f for f in state.files.values() if f["url"] == refs[0]["url"])
        aspect = f"{first.get('width') or 16}:{first.get('height') or 9}"
    width, height = video_size(aspect, resolution)
    return [
        {
            "kind": "video",
            "width": width,
            "height": height,
            "format": "mp4",
            "key": sha,
            "duration": duration,
            "fps": VIDEO_FPS,
        }
    ]


async def create(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    key = request.headers.get("idempotency-key")
    state.note_submit(key)
    state.note_create_body(await request.body())
    if state.faults.hit("rate_limit"):
        retry = state.faults.config.retry_after_s
        return error(429, "rate_limited", "Too many requests.", {"Retry-After": f"{retry:g}"})
    if state.faults.hit("server_error"):
        return error(503, "public_api_disabled", "The public API is temporarily unavailable.")
    body, problem = await read_json(request)
    if problem is None:
        problem = validate(state, body)
    if problem is not None:
        return error(400, "validation_failed", problem)
    sha = body_hash(body)
    with state.lock:
        replay = state.lookup_idempotent(PROTOCOL, key, sha)
        if replay == "conflict":
            return error(409, "idempotency_conflict", "Idempotency-Key was already used with a different request.")
        if isinstance(replay, EmuTask):
            return JSONResponse(serialize(state, replay, str(request.base_url)))
        model = MODELS[body["model"]]
        credits = float(model["credits"])  # type: ignore[arg-type]
        if state.balance < credits:
            return error(
                402, "insufficient_credits", f"This task needs {credits:g} credits; balance is {state.balance:g}."
            )
        outcome, code = state.decide_outcome()
        task = state.create_task(
            EmuTask(
                id=state.new_id("task_"),
                protocol=PROTOCOL,
                model=body["model"],
                created_at=time.time(),
                queue_s=state.config.queue_s,
                process_s=state.config.process_s,
                outcome=outcome,
                error_code=code,
                credits=credits,
                outputs=_outputs(state, body, sha),
                idempotency_key=key,
                body_sha256=sha,
                client_ref=body.get("client_request_id"),
            )
        )
    payload = serialize(state, task, str(request.base_url))
    if state.faults.hit("drop"):
        raise ConnectionDropped("emulated: task created, response lost")
    return JSONResponse(payload)


async def get_task(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    state.note_poll()
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    if state.faults.hit("rate_limit"):
        return error(
            429, "rate_limited", "Too many requests.", {"Retry-After": f"{state.faults.config.retry_after_s:g}"}
        )
    if state.faults.hit("server_error"):
        return error(500, "internal_error", "Internal error.")
    task = state.tasks.get(request.path_params["task_id"])
    if task is None or task.protocol != PROTOCOL:
        return error(404, "not_found", "Task not found.")
    return JSONResponse(serialize(state, task, str(request.base_url)))


async def credits(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    return JSONResponse({"current_credits": _int_if_whole(state.balance)})


async def upload_file(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    if not state.key_ok(bearer(request)):
        return auth_error(request)
    form = await request.form()
    upload = form.get("file")
    kind = form.get("kind")
    if upload is None or isinstance(upload, str):
        return error(400, "validation_failed", "file is required")
    if kind not in ("image", "video", "audio"):
        return error(400, "validation_failed", "kind must be image, video or audio")
    data = await upload.read()
    mime = sniff_mime(data[:32])
    allowed = {"image": ("image/jpeg", "image/png", "image/webp"), "video": ("video/mp4", "video/quicktime")}
    limits = {"image": 20 * 1024 * 1024, "video": 95 * 1024 * 1024}
    if mime not in allowed.get(str(kind), ()):
        return error(400, "validation_failed", f"file type {mime} is not allowed for kind {kind}")
    if len(data) > limits.get(str(kind), 10 * 1024 * 1024):
        return error(400, "validation_failed", "file is too large")
    model = form.get("model")
    if model is not None and model not in MODELS:
        return error(400, "validation_failed", f"model must be one of {', '.join(MODELS)}")
    if model is not None and kind == "video" and MODELS[str(model)]["kind"] != "video":
        return error(400, "validation_failed", f"{model} does not take video references")
    file_id = state.new_id("file_")
    url = f"{str(request.base_url).rstrip('/')}/_files/{file_id}"
    record: dict[str, Any] = {
        "id": file_id,
        "kind": kind,
        "url": url,
        "name": upload.filename,
        "mime_type": mime,
        "size_bytes": len(data),
    }
    try:
        record.update(_probe(data, str(kind)))
    except Exception:
        return error(400, "validation_failed", f"the {kind} file does not decode")
    if kind == "video":
        record["duration_token"] = "dtok_" + body_hash({"file": file_id, "d": record["duration_seconds"]})[:24]
    with state.lock:
        state.files[file_id] = record
        state.save()
    public = {k: v for k, v in record.items() if k not in ("width", "height")}
    return JSONResponse({**public, "created_at": _iso(time.time())})


def _probe(data: bytes, kind: str) -> dict[str, Any]:
    import io

    if kind == "image":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return {"width": img.width, "height": img.height}
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = float(stream.average_rate or 16)
        return {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "duration_seconds": round(frames / rate, 2),
        }


async def models(request: Request) -> Response:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": m,
                    "category": spec["kind"],
                    "runtime": "async_task",
                    "base_credits": spec["credits"],
                    "billing_type": "FIXED",
                    "max_prompt_length": MAX_PROMPT,
                    "api_status": "available",
                }
                for m, spec in MODELS.items()
            ],
        }
    )


ROUTES = [
    Route("/api/v1/generations", create, methods=["POST"]),
    Route("/api/v1/generations/{task_id}", get_task, methods=["GET"]),
    Route("/api/v1/credits", credits, methods=["GET"]),
    Route("/api/v1/files", upload_file, methods=["POST"]),
    Route("/api/v1/models", models, methods=["GET"]),
]
