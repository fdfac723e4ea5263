"""Runware's REST API as the emulator speaks it — as strict as seed 004 and the Runware sheet.

One route, `POST /v1`, taking a JSON array of tasks (`imageInference`, `videoInference`, `getResponse`,
`imageUpload`, and an optional leading `authentication` element); answers `{"data": [...]}` and/or
`{"errors": [...]}` with errors scoped to their task.

Choices where the sheet is open (kept in step with wan_pipeline/providers/runware.py):
- a taskUUID already used (by any task) is refused: HTTP 400 `conflictTaskUUID`, nothing created or billed;
- `deliveryMethod: "async"` answers the ACK item `{taskType, taskUUID}`; `sync` holds the request until
  the task is done and answers the result items (no `status`, as the sheet's sync example);
- getResponse: pending → one item `status: "processing"`; done → one item per result with
  `status: "success"`; failed → one item `status: "error"` with `error: {code, message}`, all HTTP 200;
  an unknown taskUUID → HTTP 404 `taskFailedOrNotFound`;
- `cost` (USD) on each result item only with `includeCost: true`; a failed task costs nothing (refunded);
- Pro is charged per image; video per second at its resolution on output seconds, plus input seconds
  for a video edit (`inputs.video`), taken to be as long as the output;
- `editRegions` boxes must be `[x1, y1, x2, y2]` arrays;
- `safety` (`{checkContent, mode: none|fast}`) is accepted: seed 004 lists it for this model, which wins over
  the sheet's community report that Alibaba models refuse it (the adapter never sends it either way);
- video renders as MP4 only (`WEBM`/`MOV` are refused: the emulator cannot render them), 30 fps;
- `webhookURL` / `uploadEndpoint` are accepted and ignored (the emulator calls nobody);
- 429 carries Retry-After (DESIGN §10's fault), although the sheet documents none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wan_pipeline.emulator.common import ConnectionDropped, bearer, media_url
from wan_pipeline.emulator.mediatypes import sniff_mime
from wan_pipeline.emulator.state import EmulatorState, EmuTask, body_hash

PROTOCOL = "runware"
IMAGE_PRICES = {"alibaba:wan@2.7-image": 0.03, "alibaba:wan@2.7-image-pro": 0.075}
VIDEO_MODEL = "alibaba:wan@2.7"
VIDEO_RATES = {"720p": 0.10, "1080p": 0.15}
VIDEO_PAIRS: dict[str, list[tuple[int, int]]] = {
    "720p": [(1280, 720), (720, 1280), (960, 960), (1088, 832), (832, 1088)],
    "1080p": [(1920, 1080), (1080, 1920), (1440, 1440), (1632, 1248), (1248, 1632)],
}
DOCS = {
    "alibaba:wan@2.7-image": "https://runware.ai/docs/models/alibaba-wan2-7-image",
    "alibaba:wan@2.7-image-pro": "https://runware.ai/docs/models/alibaba-wan2-7-image-pro",
    VIDEO_MODEL: "https://runware.ai/docs/models/alibaba-wan2-7",
}
MAX_PROMPT = 3000
MAX_SEED = 2_147_483_647
MIN_SIDE, MAX_SIDE, STEP = 768, 2048, 16
VIDEO_FPS = 30
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE)
HEX_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
RATIO_RE = re.compile(r"^([0-9]{1,3}(?:\.[0-9]+)?)%$")

PLATFORM_KEYS = {"taskType", "taskUUID", "outputType", "outputFormat", "outputQuality", "webhookURL",
                 "deliveryMethod", "uploadEndpoint", "ttl", "includeCost", "numberResults", "providerSettings",
                 "safety"}
IMAGE_KEYS = PLATFORM_KEYS | {"model", "positivePrompt", "width", "height", "seed", "settings", "inputs"}
VIDEO_KEYS = PLATFORM_KEYS | {"model", "positivePrompt", "negativePrompt", "width", "height", "resolution",
                              "duration", "seed", "settings", "inputs"}
INFERENCE = ("imageInference", "videoInference")
FAULT_CODES = {"content_policy_violation": ("contentPolicyViolation", "The content was flagged by the content policy."),
               "generation_failed": ("inferenceError", "The inference failed.")}


class Refusal(Exception):
    """One task's error entry and the HTTP status it implies."""

    def __init__(self, status: int, code: str, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.parameter = status, code, message, parameter


def _entry(code: str, message: str, task: dict[str, Any] | None = None, parameter: str | None = None,
           task_type: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "message": message}
    if parameter:
        out["parameter"] = parameter
    task = task or {}
    out["taskType"] = task_type or task.get("taskType")
    if isinstance(task.get("taskUUID"), str):
        out["taskUUID"] = task["taskUUID"]
    model = task.get("model")
    out["documentation"] = DOCS.get(model, "https://runware.ai/docs/platform/errors") if isinstance(model, str) \
        else "https://runware.ai/docs/platform/errors"
    return out


def errors_response(status: int, entries: list[dict[str, Any]], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": entries}, status_code=status, headers=headers)


def auth_refusal(token: str | None) -> JSONResponse:
    """Sheet "Auth": HTTP 401 with the authentication task's error."""
    if token:
        entry = {"code": "invalidApiKey", "message": "Invalid API key. Get one at https://my.runware.ai/signup",
                 "parameter": "apiKey", "taskType": "authentication"}
    else:
        entry = {"code": "missingApiKey", "message": "Missing API key. Send 'Authorization: Bearer <key>' or an "
                 "authentication task first.", "parameter": "apiKey", "taskType": "authentication"}
    return errors_response(401, [entry])


# -- validation -----------------------------------------------------------------------------------------


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(param: str, message: str) -> Refusal:
    """Runware's `invalid<Parameter>` code for the parameter's last path segment."""
    name = param.split(".")[-1].split("[")[0]
    return Refusal(400, "invalid" + name[:1].upper() + name[1:], message, param)


def _platform(task: dict[str, Any], kind: str) -> None:
    uid = task.get("taskUUID")
    if uid is None:
        raise Refusal(400, "missingTaskUUID", "taskUUID is required.", "taskUUID")
    if not isinstance(uid, str) or not UUID4_RE.match(uid):
        raise _bad("taskUUID", "taskUUID must be a UUID v4 string.")
    output_type = task.get("outputType", "URL")
    allowed_types = ("URL", "base64Data", "dataURI") if kind == "image" else ("URL",)
    if output_type not in allowed_types:
        raise _bad("outputType", f"outputType must be one of {', '.join(allowed_types)}.")
    fmt = task.get("outputFormat")
    if fmt is not None:
        if kind == "image" and fmt not in ("JPG", "PNG", "WEBP"):
            raise _bad("outputFormat", "outputFormat must be one of JPG, PNG, WEBP.")
        if kind == "video" and fmt not in ("MP4", "WEBM", "MOV"):
            raise _bad("outputFormat", "outputFormat must be one of MP4, WEBM, MOV.")
        if kind == "video" and fmt != "MP4":
            raise Refusal(400, "unsupportedOutputFormat", f"the emulator renders MP4 only, not {fmt}.", "outputFormat")
    quality = task.get("outputQuality")
    if quality is not None and (not _int(quality) or not 20 <= quality <= 99):
        raise _bad("outputQuality", "outputQuality must be an integer between 20 and 99.")
    if task.get("deliveryMethod", "sync") not in ("sync", "async"):
        raise _bad("deliveryMethod", "deliveryMethod must be one of sync, async.")
    if not isinstance(task.get("includeCost", False), bool):
        raise _bad("includeCost", "includeCost must be a boolean.")
    ttl = task.get("ttl")
    if ttl is not None and (not _int(ttl) or ttl < 60 or output_type != "URL"):
        raise _bad("ttl", "ttl must be an integer of at least 60, and only with outputType URL.")
    n = task.get("numberResults", 1)
    if not _int(n) or not 1 <= n <= 20:
        raise _bad("numberResults", "numberResults must be an integer between 1 and 20.")
    for key in ("webhookURL", "uploadEndpoint"):
        value = task.get(key)
        if value is not None and (not isinstance(value, str) or not value.startswith(("https://", "http://"))):
            raise _bad(key, f"{key} must be a URI.")
    if "providerSettings" in task and not isinstance(task["providerSettings"], dict):
        raise _bad("providerSettings", "providerSettings must be an object.")
    safety = task.get("safety")
    if safety is not None and (
        not isinstance(safety, dict) or set(safety) - {"checkContent", "mode"}
        or not isinstance(safety.get("checkContent", False), bool) or safety.get("mode", "none") not in ("none", "fast")
    ):
        raise _bad("safety", "safety must be {\"checkContent\": boolean, \"mode\": \"none\"|\"fast\"}.")


def _keys(task: dict[str, Any], allowed: set[str]) -> None:
    for key in task:
        if key not in allowed:
            raise Refusal(400, "unknownParameter", f"'{key}' is not a parameter of {task.get('taskType')}.", key)


def _prompt(task: dict[str, Any], required: bool) -> None:
    prompt = task.get("positivePrompt")
    if prompt is None:
        if required:
            raise Refusal(400, "missingPositivePrompt", "positivePrompt is required.", "positivePrompt")
        return
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("positivePrompt", "positivePrompt must be a non-empty string.")
    if len(prompt) > MAX_PROMPT:
        raise Refusal(400, "invalidPositivePromptLength",
                      f"positivePrompt must be at most {MAX_PROMPT} characters.", "positivePrompt")


def _seed(task: dict[str, Any]) -> None:
    seed = task.get("seed")
    if seed is not None and (not _int(seed) or not 0 <= seed <= MAX_SEED):
        raise _bad("seed", f"seed must be an integer between 0 and {MAX_SEED}.")


def _image_ref(state: EmulatorState, value: Any, param: str) -> dict[str, Any]:
    """UUID (of an upload), URL, data URI or raw base64 (sheet "Inputs")."""
    if not isinstance(value, str) or not value:
        raise _bad(param, f"{param} must be a UUID, URL, data URI or base64 string.")
    if UUID4_RE.match(value):
        found = state.files.get(value)
        if found is None or found.get("protocol") != PROTOCOL:
            raise _bad(param, f"{param}: no uploaded image has the UUID {value}.")
        return found
    if value.startswith(("https://", "http://")):
        return {"url": value}
    raw = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(param, f"{param} is not a UUID, URL, data URI or base64 image.") from None
    mime = sniff_mime(data[:32])
    if mime not in ("image/png", "image/jpeg", "image/webp"):
        raise _bad(param, f"{param} does not decode to a PNG, JPEG or WEBP image.")
    return {"mime_type": mime, **_image_dims(data)}


def _image_dims(data: bytes) -> dict[str, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return {"width": img.size[0], "height": img.size[1]}
    except OSError:
        return {}


def validate_image(state: EmulatorState, task: dict[str, Any]) -> dict[str, Any]:
    _keys(task, IMAGE_KEYS)
    _platform(task, "image")
    model = task.get("model")
    if model is None:
        raise Refusal(400, "missingModel", "model is required.", "model")
    if model not in IMAGE_PRICES:
        code = "invalidModel" if model == VIDEO_MODEL else "unknownModel"
        raise Refusal(400, code, f"'{model}' is not an imageInference model here.", "model")
    _prompt(task, required=True)
    for side in ("width", "height"):
        value = task.get(side)
        if value is None:
            raise Refusal(400, "missing" + side.capitalize(), f"{side} is required.", side)
        if not _int(value) or not MIN_SIDE <= value <= MAX_SIDE or value % STEP:
            raise _bad(side, f"Invalid value for '{side}' parameter. {side.capitalize()} must be an integer value "
                             f"between {MIN_SIDE} and {MAX_SIDE}, in multiples of {STEP}.")
    _seed(task)
    inputs = task.get("inputs", {})
    if not isinstance(inputs, dict):
        raise _bad("inputs", "inputs must be an object.")
    for key in inputs:
        if key != "referenceImages":
            raise Refusal(400, "unknownParameter", f"'inputs.{key}' is not an input of {model}.", f"inputs.{key}")
    refs = inputs.get("referenceImages")
    if refs is not None:
        if not isinstance(refs, list) or not 1 <= len(refs) <= 9:
            raise _bad("inputs.referenceImages", "referenceImages must be a list of 1 to 9 images.")
        for i, ref in enumerate(refs):
            _image_ref(state, ref, f"inputs.referenceImages[{i}]")
    settings = task.get("settings", {})
    if not isinstance(settings, dict):
        raise _bad("settings", "settings must be an object.")
    for key, value in settings.items():
        if key in ("thinking", "sequential"):
            if not isinstance(value, bool):
                raise _bad(f"settings.{key}", f"settings.{key} must be a boolean.")
        elif key == "colorPalette":
            _palette(value)
        elif key == "editRegions":
            _regions(value, len(refs or []))
        else:
            raise Refusal(400, "unknownParameter", f"'settings.{key}' is not a setting of {model}.", f"settings.{key}")
    n = int(task.get("numberResults", 1))
    fmt = str(task.get("outputFormat", "JPG")).lower()
    return {"kind": "image", "width": task["width"], "height": task["height"], "format": fmt, "count": n,
            "cost_each": IMAGE_PRICES[model]}


def _palette(value: Any) -> None:
    param = "settings.colorPalette"
    if not isinstance(value, list) or not 3 <= len(value) <= 10:
        raise _bad(param, "colorPalette must be a list of 3 to 10 colours.")
    total = 0.0
    for item in value:
        if not isinstance(item, dict) or set(item) != {"hex", "ratio"} or not isinstance(item["hex"], str) \
                or not HEX_RE.match(item["hex"]):
            raise _bad(param, "each colorPalette entry must be {\"hex\": \"#RRGGBB\", \"ratio\": \"NN%\"}.")
        ratio = item["ratio"]
        if isinstance(ratio, str) and RATIO_RE.match(ratio):
            total += float(ratio[:-1])
        elif _int(ratio) or isinstance(ratio, float):
            total += float(ratio)
        else:
            raise _bad(param, "colorPalette ratios must be percentages like \"34%\".")
    if abs(total - 100.0) > 0.01:
        raise _bad(param, f"colorPalette ratios must sum to 100%, not {total:g}%.")


def _regions(value: Any, images: int) -> None:
    param = "settings.editRegions"
    if not isinstance(value, list) or len(value) != images:
        raise _bad(param, f"editRegions must have one entry per reference image ({images}).")
    for boxes in value:
        if not isinstance(boxes, list):
            raise _bad(param, "each editRegions entry must be a list of [x1, y1, x2, y2] boxes.")
        for box in boxes:
            if not isinstance(box, list) or len(box) != 4 or not all(_int(v) and v >= 0 for v in box) \
                    or box[2] <= box[0] or box[3] <= box[1]:
                raise _bad(param, "each box must be [x1, y1, x2, y2] in pixels with x1 < x2 and y1 < y2.")


def validate_video(state: EmulatorState, task: dict[str, Any]) -> dict[str, Any]:
    _keys(task, VIDEO_KEYS)
    _platform(task, "video")
    model = task.get("model")
    if model is None:
        raise Refusal(400, "missingModel", "model is required.", "model")
    if model != VIDEO_MODEL:
        code = "invalidModel" if model in IMAGE_PRICES else "unknownModel"
        raise Refusal(400, code, f"'{model}' is not a videoInference model here.", "model")
    inputs = task.get("inputs", {})
    if not isinstance(inputs, dict):
        raise _bad("inputs", "inputs must be an object.")
    for key in inputs:
        if key not in ("frameImages", "referenceImages", "referenceVideos", "video", "audio"):
            raise Refusal(400, "unknownParameter", f"'inputs.{key}' is not an input of {model}.", f"inputs.{key}")
    frames = inputs.get("frameImages")
    refs_i, refs_v, source = inputs.get("referenceImages"), inputs.get("referenceVideos"), inputs.get("video")
    _prompt(task, required=frames is None)
    if task.get("negativePrompt") is not None and not isinstance(task["negativePrompt"], str):
        raise _bad("negativePrompt", "negativePrompt must be a string.")
    _seed(task)
    first_frame = _video_inputs(state, inputs)
    follows_input = frames is not None or source is not None
    width, height, resolution = _video_geometry(task, follows_input, first_frame)
    with_refs = refs_i is not None or refs_v is not None or source is not None
    duration = task.get("duration", 5)
    limit = 10 if with_refs else 15
    if not _int(duration) or not 2 <= duration <= limit:
        raise _bad("duration", f"duration must be an integer between 2 and {limit} seconds"
                               + (" with reference media." if with_refs else "."))
    _video_settings(task, model, with_shot_refs=refs_i is not None or refs_v is not None)
    n = int(task.get("numberResults", 1))
    billed_seconds = duration * 2 if source is not None else duration  # input + output seconds for an edit
    return {"kind": "video", "width": width, "height": height, "format": "mp4", "count": n, "duration": duration,
            "cost_each": round(VIDEO_RATES[str(resolution)] * billed_seconds, 6)}


def _video_inputs(state: EmulatorState, inputs: dict[str, Any]) -> dict[str, Any]:
    """The media inputs' shapes; the first frame's stored image (empty without frames)."""
    frames = inputs.get("frameImages")
    refs_i, refs_v, source = inputs.get("referenceImages"), inputs.get("referenceVideos"), inputs.get("video")
    if frames is not None and (refs_i is not None or refs_v is not None or source is not None):
        raise Refusal(400, "incompatibleParameters",
                      "inputs.frameImages cannot be combined with referenceImages, referenceVideos or video.",
                      "inputs.frameImages")
    first_frame: dict[str, Any] = {}
    if frames is not None:
        if not isinstance(frames, list) or not 1 <= len(frames) <= 2:
            raise _bad("inputs.frameImages", "frameImages must be a list of 1 or 2 frames.")
        for i, frame in enumerate(frames):
            image = frame.get("image") if isinstance(frame, dict) else frame
            if isinstance(frame, dict) and (set(frame) - {"image", "frame"} or frame.get("frame") not in
                                            (None, "first", "last")):
                raise _bad("inputs.frameImages", "each frame is {\"image\": ..., \"frame\": \"first\"|\"last\"}.")
            found = _image_ref(state, image, f"inputs.frameImages[{i}]")
            if i == 0:
                first_frame = found
    for name, value in (("referenceImages", refs_i), ("referenceVideos", refs_v)):
        if value is not None and (not isinstance(value, list) or not value
                                  or not all(isinstance(v, str) and v for v in value)):
            raise _bad(f"inputs.{name}", f"{name} must be a non-empty list of strings.")
    for name in ("video", "audio"):
        if inputs.get(name) is not None and not isinstance(inputs[name], str):
            raise _bad(f"inputs.{name}", f"inputs.{name} must be a string (URL or UUID).")
    return first_frame


def _video_geometry(task: dict[str, Any], follows_input: bool,
                    first_frame: dict[str, Any]) -> tuple[int, int, str]:
    """width, height and resolution: asked for (one of the allowed pairs), or following the input."""
    has_size = "width" in task or "height" in task
    if follows_input and has_size:
        raise Refusal(400, "incompatibleParameters", "Give either inputs.frameImages (or an input video) or "
                      "width/height, not both.", "width")
    resolution = task.get("resolution")
    if resolution is not None and resolution not in VIDEO_RATES:
        raise _bad("resolution", "resolution must be one of 720p, 1080p.")
    if not follows_input:
        width, height = task.get("width"), task.get("height")
        if width is None or height is None:
            raise Refusal(400, "missingWidth" if width is None else "missingHeight",
                          "width and height are required without inputs.frameImages.", "width")
        tier = next((t for t, pairs in VIDEO_PAIRS.items() if (width, height) in pairs), None)
        if tier is None:
            allowed = ", ".join(f"{w}x{h}" for pairs in VIDEO_PAIRS.values() for w, h in pairs)
            raise _bad("width", f"width x height must be one of {allowed}.")
        if resolution is not None and resolution != tier:
            raise _bad("resolution", f"{width}x{height} is a {tier} size, not {resolution}.")
        resolution = tier
    else:
        resolution = resolution or "1080p"
        width, height = _follow_size(first_frame, resolution)
    return width, height, str(resolution)


def _video_settings(task: dict[str, Any], model: str, with_shot_refs: bool) -> None:
    """`settings` of a video task: only `shotType`, and only with reference images or videos."""
    settings = task.get("settings", {})
    if not isinstance(settings, dict):
        raise _bad("settings", "settings must be an object.")
    for key, value in settings.items():
        if key != "shotType":
            raise Refusal(400, "unknownParameter", f"'settings.{key}' is not a setting of {model}.", f"settings.{key}")
        if not isinstance(value, str):
            raise _bad("settings.shotType", "shotType must be a string.")
        if not with_shot_refs:
            raise Refusal(400, "incompatibleParameters", "settings.shotType requires referenceImages or "
                          "referenceVideos.", "settings.shotType")


def _follow_size(first_frame: dict[str, Any], resolution: str) -> tuple[int, int]:
    """An output that follows its input: the allowed pair nearest the first frame's aspect (16:9 if unknown)."""
    pairs = VIDEO_PAIRS[resolution]
    if not first_frame.get("width") or not first_frame.get("height"):
        return pairs[0]
    aspect = first_frame["width"] / first_frame["height"]
    return min(pairs, key=lambda p: abs(p[0] / p[1] - aspect))


# -- tasks ----------------------------------------------------------------------------------------------


def _uuid_from(*parts: object) -> str:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def _used(state: EmulatorState, task_uuid: str) -> bool:
    return task_uuid in state.tasks or any(f.get("taskUUID") == task_uuid for f in state.files.values())


def create(state: EmulatorState, task: dict[str, Any], spec: dict[str, Any]) -> EmuTask:
    """Charge and record one inference task (caller holds the lock and has checked the UUID)."""
    # The request without its taskUUID: the same request bought under two taskUUIDs shows as two tasks of one body.
    sha = body_hash({k: v for k, v in task.items() if k != "taskUUID"})
    count, seed = spec["count"], task.get("seed")
    seeds = [((seed if seed is not None else int(sha[:8], 16) % MAX_SEED) + i) % (MAX_SEED + 1) for i in range(count)]
    outputs = []
    for i in range(count):
        out: dict[str, Any] = {"kind": spec["kind"], "width": spec["width"], "height": spec["height"],
                               "format": spec["format"], "key": sha if i == 0 else f"{sha}:{i}"}
        if spec["kind"] == "video":
            out.update(duration=spec["duration"], fps=VIDEO_FPS)
        outputs.append(out)
    outcome, code = state.decide_outcome()
    return state.create_task(EmuTask(
        id=task["taskUUID"], protocol=PROTOCOL, model=task["model"], created_at=time.time(),
        queue_s=state.config.queue_s, process_s=state.config.process_s, outcome=outcome, error_code=code,
        credits=round(spec["cost_each"] * count, 6), outputs=outputs, idempotency_key=task["taskUUID"],
        body_sha256=sha, client_ref=None,
        extra={"taskType": task["taskType"], "seeds": seeds, "cost_each": spec["cost_each"],
               "includeCost": bool(task.get("includeCost", False)), "outputType": task.get("outputType", "URL"),
               "deliveryMethod": task.get("deliveryMethod", "sync")},
    ))


def result_items(state: EmulatorState, task: EmuTask, base: str, with_status: bool = True) -> list[dict[str, Any]]:
    status = state.settle(task)
    head = {"taskType": task.extra["taskType"], "taskUUID": task.id}
    if status in ("queued", "processing"):
        return [{**head, "status": "processing"}]
    if status == "failed":
        code, message = FAULT_CODES.get(task.error_code or "", ("inferenceError", "The inference failed."))
        return [{**head, "status": "error", "error": {"code": code, "message": message}}]
    items = []
    image = task.extra["taskType"] == "imageInference"
    for i, out in enumerate(task.outputs):
        item: dict[str, Any] = dict(head)
        if with_status:
            item["status"] = "success"
        media_uuid = _uuid_from(task.id, "output", i)
        if image:
            item["imageUUID"] = media_uuid
            output_type = task.extra.get("outputType", "URL")
            if output_type == "URL":
                item["imageURL"] = media_url(base, task.id, i, out["format"])
            else:
                from wan_pipeline.emulator.imagegen import render_image

                data = base64.b64encode(render_image(out["key"], out["width"], out["height"], out["format"]))
                encoded = data.decode("ascii")
                mime = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[out["format"]]
                if output_type == "base64Data":
                    item["imageBase64Data"] = encoded
                else:
                    item["imageDataURI"] = f"data:{mime};base64,{encoded}"
        else:
            item["videoUUID"] = media_uuid
            item["videoURL"] = media_url(base, task.id, i, out["format"])
        item["seed"] = task.extra["seeds"][i]
        if task.extra.get("includeCost"):
            item["cost"] = task.extra["cost_each"]
        items.append(item)
    return items


def upload(state: EmulatorState, task: dict[str, Any], base: str) -> dict[str, Any]:
    for key in task:
        if key not in ("taskType", "taskUUID", "image"):
            raise Refusal(400, "unknownParameter", f"'{key}' is not a parameter of imageUpload.", key)
    uid = task.get("taskUUID")
    if not isinstance(uid, str) or not UUID4_RE.match(uid):
        raise _bad("taskUUID", "taskUUID must be a UUID v4 string.")
    image = task.get("image")
    if image is None:
        raise Refusal(400, "missingImage", "image is required.", "image")
    if isinstance(image, str) and UUID4_RE.match(image):
        raise _bad("image", "image must be a URL, data URI or base64 string.")
    found = _image_ref(state, image, "image")
    image_uuid = _uuid_from(uid, "upload")
    ext = {"image/png": "png", "image/webp": "webp"}.get(found.get("mime_type", ""), "jpg")
    url = f"{base.rstrip('/')}/_files/{image_uuid}.{ext}"
    with state.lock:
        if _used(state, uid):
            raise Refusal(400, "conflictTaskUUID", f"taskUUID {uid} has already been used.", "taskUUID")
        state.files[image_uuid] = {"id": image_uuid, "protocol": PROTOCOL, "taskUUID": uid, "url": url, **found}
        state.save()
    return {"taskType": "imageUpload", "taskUUID": uid, "imageUUID": image_uuid, "imageURL": url}


# -- the route ------------------------------------------------------------------------------------------


async def tasks_endpoint(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    token = bearer(request)
    tasks: list[Any] = list(body) if isinstance(body, list) else []
    if tasks and isinstance(tasks[0], dict) and tasks[0].get("taskType") == "authentication":
        first = tasks.pop(0)  # sheet "Auth": an authentication object as the array's first element
        if token is None and isinstance(first.get("apiKey"), str):
            token = first["apiKey"] or None
    if not state.key_ok(token):
        return auth_refusal(token)
    if not isinstance(body, list) or not tasks:
        return errors_response(400, [_entry("invalidRequestBody", "The body must be a JSON array of task objects.")])
    creates = [t for t in tasks if isinstance(t, dict) and t.get("taskType") in INFERENCE]
    for t in creates:
        state.note_submit(t.get("taskUUID") if isinstance(t.get("taskUUID"), str) else None)
    if creates:
        state.note_create_body(raw)
    if state.faults.hit("rate_limit"):
        retry = f"{state.faults.config.retry_after_s:g}"
        return errors_response(429, [_entry("rateLimitExceeded", "Queue capacity exceeded; retry later.")],
                               {"Retry-After": retry})
    if state.faults.hit("server_error"):
        return errors_response(503, [_entry("serverUnavailable", "Temporary capacity constraint.")])
    base = str(request.base_url)
    data: list[dict[str, Any]] = []
    errors: list[tuple[int, dict[str, Any]]] = []
    created: list[EmuTask] = []
    for task in tasks:
        try:
            await _one_task(state, task, base, data, created)
        except Refusal as refusal:
            errors.append((refusal.status, _entry(refusal.code, refusal.message, task if isinstance(task, dict)
                                                  else None, refusal.parameter)))
    if created and state.faults.hit("drop"):
        raise ConnectionDropped("emulated: task created, response lost")
    payload: dict[str, Any] = {"data": data}
    if errors:
        payload["errors"] = [entry for _, entry in errors]
    status = errors[0][0] if errors and not data else 200
    return JSONResponse(payload, status_code=status)


async def _one_task(state: EmulatorState, task: Any, base: str, data: list[dict[str, Any]],
                    created: list[EmuTask]) -> None:
    """One element of the request array: its answer items go to `data`, or it raises a Refusal."""
    if not isinstance(task, dict):
        raise Refusal(400, "invalidTask", "Each task must be a JSON object.")
    kind = task.get("taskType")
    if kind in INFERENCE:
        made = _inference(state, task)
        created.append(made)
        if made.extra["deliveryMethod"] == "async":
            data.append({"taskType": kind, "taskUUID": made.id})
        else:  # sync: hold the request until the task is done (sheet "sync")
            await asyncio.sleep(max(0.0, made.created_at + made.queue_s + made.process_s - time.time()))
            data.extend(result_items(state, made, base, with_status=False))
    elif kind == "getResponse":
        state.note_poll()
        uid = task.get("taskUUID")
        if not isinstance(uid, str) or not UUID4_RE.match(uid):
            raise _bad("taskUUID", "taskUUID must be a UUID v4 string.")
        found = state.tasks.get(uid)
        if found is None or found.protocol != PROTOCOL:
            raise Refusal(404, "taskFailedOrNotFound", f"No task found with taskUUID {uid}.", "taskUUID")
        data.extend(result_items(state, found, base))
    elif kind == "imageUpload":
        data.append(upload(state, task, base))
    elif kind == "authentication":
        raise Refusal(400, "invalidTask", "authentication must be the first element of the array.")
    else:
        raise Refusal(400, "unsupportedTaskType", f"taskType '{kind}' is not supported.", "taskType")


def _inference(state: EmulatorState, task: dict[str, Any]) -> EmuTask:
    spec = validate_image(state, task) if task["taskType"] == "imageInference" else validate_video(state, task)
    with state.lock:
        if _used(state, task["taskUUID"]):
            raise Refusal(400, "conflictTaskUUID", f"taskUUID {task['taskUUID']} has already been used.", "taskUUID")
        cost = round(spec["cost_each"] * spec["count"], 6)
        if state.balance < cost:
            raise Refusal(402, "insufficientCredits",
                          f"Insufficient credits: this task costs ${cost:g}; the balance is ${state.balance:g}.")
        return create(state, task, spec)


ROUTES = [Route("/v1", tasks_endpoint, methods=["POST"])]
