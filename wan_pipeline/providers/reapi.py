"""reAPI (reapi.ai) — `wan2.7-image`, `wan2.7-image-pro` (seed 003) and `wan2.7-video` (providers/reapi.md).

Wire facts (seed 003 and the reAPI sheet):
- POST /api/v1/images/generations (images) or /api/v1/videos/generations (video) with a flat JSON body;
  the answer is `{"id": "task_...", "model", "status": "processing", "created_at"}`; then
  GET /api/v1/tasks/{id} until `completed` (`output.image_urls` / `output.video_urls`) or `failed`
  (`error: {code, message, request_id}`). `processing` is the only non-terminal state.
- There is no `mode` field: no `image_urls` = text-to-image; `image_urls` = edit / multi-image reference;
  `bbox_list` added = region edit; `enable_sequential: true` = group series.
- Image fields map one to one: aspect_ratio -> `size` ("16:9"), width/height -> `size` ("1024x1024"),
  resolution -> `resolution` (gear), thinking -> `thinking_mode`, sequential -> `enable_sequential`,
  regions -> `bbox_list`, reference_images -> `image_urls`, color_palette -> `color_palette` (as documented).
  Only what the user set is sent, in the order of the seed's and sheet's examples, so the seed's quick
  example comes out byte for byte from {aspect_ratio "16:9", resolution "2K", n 1}.
- Errors: `{"error": {"code": <5-digit int>, "message", "request_id"}}`; the first digit is the category.
- No deduplication (sheet "Idempotency"): an `Idempotency-Key` header is accepted but has no effect, so
  `supports_idempotency_key` is False. We still send it: it is harmless and names the attempt in logs.
- No upload API: references must be public HTTPS URLs (`upload()` returns None; the engine presigns).
- The task payload reports no usage or cost (sheet "Results"), so snapshots carry no credits.
- Price: credits = ceil(per_image_usd × n × 1000), 1 credit = $0.001 (seed 003 "Pricing"); the per-image
  USD is only on the model page, so the catalog leaves it None and `estimate` says "unknown".

Seed vs sheet: they agree on every image field and rule. The sheet adds the video model, the numeric
error codes and the task states, which the seed does not cover; nothing in them contradicts the seed.
One inconsistency inside seed 003 itself: its `color_palette` example has two colours while its text (and
the sheet) say 3-10; we keep the rule (NeutralParams and the emulator refuse fewer than three).

Open questions of the sheet, decided (the emulator, wan_pipeline/emulator/reapi.py, follows the same):
- Defaults when `size`/`resolution` are omitted: we send only what the user set and read the host's
  defaults as Wan's upstream ones (dashscope.md): gear 2K; square without images; with images the
  aspect of the LAST input image (seed 003 "Modes").
- `size` gear together with `resolution`, or pixels together with `resolution`: never sent by us (we
  put an aspect or pixels in `size` and the gear in `resolution`); pixels + a gear is refused
  ("the two styles cannot be mixed", dashscope.md), the emulator answers 400 20003 to either.
- aspect_ratio with reference images is refused: the seed says the output aspect follows the last
  input image, so an aspect would be silently ignored.
- `thinking: true` outside text-to-image non-group is refused (the seed says it is ignored there, so
  the user would not get what they asked for); `thinking: false` is sent as given.
- Validation codes: every size/resolution problem is 20005, every other invalid value 20003
  (the sheet: "which of 20003/20005 each Wan validation failure maps to is not documented").
- HTTP status: submit answers 200; 40001 (task not found) is 404; 7xxxx is 503.
- `output`/`error` are null (not omitted) while `processing`; the submit answer has only the four
  fields of the seed's example. We accept either shape.
- Failed-task moderation: the sheet has no moderation code; a failed task whose message says the
  content was refused (Wan's upstream `DataInspectionFailed` "inappropriate content") is
  ContentRejected, every other failed task GenerationFailed (2xxxx inside a task: RejectedByProvider).
- Video (`wan2.7-video`): only `model`, `prompt`, `resolution` ("720P"|"1080P") and `duration` are
  confirmed, so those are all we map; every other video knob is refused (provider_params can still
  carry one). Duration 2-15 s and the defaults 1080P / 5 s / 16:9 are read from upstream (dashscope.md).
  Text-to-video only: the media field names are undocumented.
"""

from __future__ import annotations

import math
import re
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
    TaskStatus,
    error_by_status,
    json_or_none,
)
from wan_pipeline.providers.catalog import CatalogBacked, ModelInfo, not_one_of, unsupported
from wan_pipeline.providers.params import NeutralParams

IMAGES = "/api/v1/images/generations"
VIDEOS = "/api/v1/videos/generations"
TASKS = "/api/v1/tasks"

PRO = "wan2.7-image-pro"
MAX_N = 4  # seed 003: n in [1, 4] ...
MAX_N_GROUP = 12  # ... and [1, 12] with enable_sequential
# Explicit pixel sizes (Wan upstream, dashscope.md): total pixels in [768², 2048²], up to 4096² for
# Pro text-to-image outside group mode (the same rule as the 4K gear), aspect within 1:8 .. 8:1.
MIN_PIXELS = 768 * 768
MAX_PIXELS = 2048 * 2048
MAX_PIXELS_4K = 4096 * 4096

#: the sheet's code table ("Errors & retries") -> DESIGN §9 class
CODE_CLASSES: dict[int, type[e.ProviderError]] = {
    10001: e.AuthenticationFailed,  # header missing
    10002: e.AuthenticationFailed,  # not "Bearer <key>"
    10003: e.AuthenticationFailed,  # key invalid
    10004: e.AuthenticationFailed,  # key revoked
    10005: e.AuthenticationFailed,  # sign-in required
    10006: e.AuthenticationFailed,  # origin not allowed (403)
    20001: e.RejectedByProvider,  # body is not a JSON object
    20002: e.RejectedByProvider,  # required parameter missing
    20003: e.RejectedByProvider,  # value invalid
    20004: e.RejectedByProvider,  # model not supported on this endpoint
    20005: e.RejectedByProvider,  # size not supported by this model
    20006: e.RejectedByProvider,  # quality not supported by this model
    20007: e.RejectedByProvider,  # prompt exceeds max length
    30001: e.InsufficientCredits,
    30002: e.RejectedByProvider,  # cannot determine pricing for this model
    40001: e.RejectedByProvider,  # task not found
    50001: e.RateLimited,
    60001: e.Transient,  # failed to persist task, credits refunded
    60002: e.Transient,  # failed to start workflow, credits refunded
    60099: e.Transient,  # generic internal error
    70001: e.Transient,  # Temporal cluster unavailable
    70002: e.Transient,  # database unavailable
}
#: codes the table does not list, by their first digit (the sheet: "first digit = category")
CATEGORY_CLASSES: dict[str, type[e.ProviderError]] = {
    "1": e.AuthenticationFailed,
    "2": e.RejectedByProvider,
    "4": e.RejectedByProvider,
    "5": e.RateLimited,
    "6": e.Transient,
    "7": e.Transient,
}
#: words of a failed task's message that mean moderation refused it (see the module docstring)
CONTENT_WORDS = ("inappropriate", "moderation", "datainspection", "content policy", "sensitive", "nsfw", "safety")

#: a URL scheme (two letters or more, so a Windows drive letter is not one): http:, data:, s3:, ...
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")

TASK_STATES = {"processing": TaskStatus.PENDING, "completed": TaskStatus.SUCCEEDED, "failed": TaskStatus.FAILED}


@dataclass(frozen=True)
class _Shape:
    """What the request shape makes of an image request (seed 003 "Modes")."""

    references: bool
    group: bool

    @property
    def text_to_image(self) -> bool:
        return not self.references and not self.group


class ReApi(CatalogBacked):
    name = "reapi"
    key_env = "REAPI_API_KEY"
    base_env = "REAPI_BASE_URL"
    default_base = "https://reapi.ai"
    supports_idempotency_key = False  # sheet "Idempotency": no deduplication; every POST is a new charge
    upload_kinds: frozenset[str] = frozenset()  # public URLs only: local files travel as presigned S3 URLs
    #: the closest two polls of one task may be (sheet: "one request every 1–2 s"; polling is free)
    min_poll_interval_s: float = 1.0
    #: tasks in flight and creates per second when the resource config names none
    #: (sheet: limits exist (429 + Retry-After), numbers not published)
    default_limits: HostLimits = HostLimits(max_concurrency=8, submits_per_second=2.0)
    charge_on_create: str | None = None  # no usage or cost anywhere (sheet "Results")

    # -- capabilities -------------------------------------------------------------------------
    def unsupported_reason(self, info: ModelInfo, name: str) -> str:
        return unsupported(info, name) + _why_unsupported(info)

    def prompt_fits(self, model: str, prompt: str) -> bool:
        # the image and video rules also refuse an empty prompt (in some modes)
        return super().prompt_fits(model, prompt) and bool(prompt.strip())

    def check(self, model: str, prompt: str, params: NeutralParams) -> list[Issue]:
        info, issues = self.common_issues(model, prompt, params)
        if info is None:
            return issues
        if params.resolution and params.resolution not in info.resolutions:
            hint = f"; 4K needs {PRO} (text-to-image)" if params.resolution == "4K" and info.kind == "image" else ""
            issues.append(Issue("resolution", not_one_of(info, "resolution", params.resolution, info.resolutions)
                                + hint))
        if info.kind == "video":
            issues.extend(_video_rules(info, prompt, params))
        else:
            issues.extend(_image_rules(info, prompt, params))
        return issues

    def mode(self, model: str, params: NeutralParams) -> Mode:
        if self.info(model).kind == "video":
            return Mode.TEXT_TO_VIDEO  # the sheet names no media fields for wan2.7-video
        if params.sequential:
            return Mode.GROUP
        if params.regions is not None:
            return Mode.REGION_EDIT
        if params.reference_images:
            return Mode.IMAGE_EDIT
        return Mode.TEXT_TO_IMAGE

    def estimate(self, model: str, params: NeutralParams) -> Estimate:
        """credits = ceil(usd × count × 1000) (seed 003 "Pricing"); unknown while the USD rate is unknown."""
        info = self.info(model)
        usd: float | None
        if info.kind == "video":
            seconds = params.duration or info.default_duration or 0
            rate = (info.usd_per_second or {}).get(params.resolution or info.default_resolution or "")
            usd = rate * seconds if rate is not None else None
        else:
            usd = info.usd_per_output * (params.n or 1) if info.usd_per_output is not None else None
        if usd is None or info.usd_per_credit is None:
            return Estimate(credits=None, usd=None)
        credits = math.ceil(round(usd / info.usd_per_credit, 9))
        return Estimate(credits=float(credits), usd=credits * info.usd_per_credit)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # -- wire mapping -------------------------------------------------------------------------
    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body, keys in the order of the seed's and sheet's examples."""
        info = self.info(request.model)
        p = request.params
        out: dict[str, Any] = {"model": request.model}
        if request.prompt:
            out["prompt"] = request.prompt
        if info.kind == "video":
            if p.resolution:
                out["resolution"] = p.resolution.upper()  # "720P" | "1080P" (sheet's video example)
            if p.duration is not None:
                out["duration"] = p.duration
        else:
            if request.references:
                out["image_urls"] = [_public_url(r) for r in request.references]
            if p.regions is not None:
                out["bbox_list"] = [[list(box) for box in boxes] for boxes in p.regions]
            if p.aspect_ratio:
                out["size"] = p.aspect_ratio
            elif p.width is not None and p.height is not None:
                out["size"] = f"{p.width}x{p.height}"
            if p.resolution:
                out["resolution"] = p.resolution
            if p.n is not None:
                out["n"] = p.n
            if p.negative_prompt is not None:
                out["negative_prompt"] = p.negative_prompt
            if p.watermark is not None:
                out["watermark"] = p.watermark
            if p.seed is not None:
                out["seed"] = p.seed
            if p.thinking is not None:
                out["thinking_mode"] = p.thinking
            if p.sequential is not None:
                out["enable_sequential"] = p.sequential
            if p.color_palette is not None:
                out["color_palette"] = [{"hex": c.hex, "ratio": c.ratio} for c in p.color_palette]
        if p.provider_params:
            out.update(p.provider_params)
        return out

    def submit(self, request: GenerationRequest, idempotency_key: str) -> HttpCall:
        path = VIDEOS if self.info(request.model).kind == "video" else IMAGES
        return HttpCall("POST", path, json_body=self.body(request), headers={"Idempotency-Key": idempotency_key})

    def presubmit_task_id(self, request: GenerationRequest, idempotency_key: str) -> str | None:
        return None  # reAPI names its tasks

    def accepted(self, reply: HttpReply) -> TaskSnapshot:
        return self.state(reply)

    def poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"{TASKS}/{task_id}")

    def state(self, reply: HttpReply) -> TaskSnapshot:
        data = json_or_none(reply)
        if not isinstance(data, dict) or "id" not in data or "status" not in data:
            raise e.Transient(code="bad_response", message="answer is not a reAPI task envelope",
                              http_status=reply.status)
        status = str(data["status"])
        if status not in TASK_STATES:
            raise e.Transient(code="unknown_status", message=f"unknown task status '{status}'")
        task_status = TASK_STATES[status]
        raw_output = data.get("output")
        output: dict[str, Any] = raw_output if isinstance(raw_output, dict) else {}
        urls = tuple(str(u) for u in (output.get("image_urls") or output.get("video_urls") or []))
        error: e.ProviderError | None = None
        if task_status is TaskStatus.SUCCEEDED and not urls:
            task_status = TaskStatus.FAILED
            error = e.GenerationFailed(code="no_output", message="task completed without output URLs")
        elif task_status is TaskStatus.FAILED:
            raw_error = data.get("error")
            err: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            error = _task_error(_code(err.get("code")) or "generation_failed", str(err.get("message") or "failed"))
            urls = ()
        return TaskSnapshot(task_id=str(data["id"]), status=task_status, output_urls=urls, error=error, raw=data)

    def error(self, reply: HttpReply) -> e.ProviderError:
        data = json_or_none(reply)
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            return error_by_status(reply, code=f"http_{reply.status}", message=_snippet(reply))
        code = _code(err.get("code")) or f"http_{reply.status}"
        message = str(err.get("message") or "")
        details: dict[str, object] = {"request_id": err["request_id"]} if err.get("request_id") else {}
        generic = error_by_status(reply, code, message)
        cls = _class_of(code)
        if cls is None:
            generic.details.update(details)
            return generic
        retry_after = generic.retry_after_s
        return cls(code=code, message=message, http_status=reply.status, retry_after_s=retry_after, details=details)

    # -- uploads: none (public HTTPS URLs only, seed 003 "image_urls") ----------------------------
    def upload(self, model: str, ref: Reference, data: bytes) -> HttpCall | None:
        return None

    def uploaded(self, ref: Reference, reply: HttpReply) -> Reference:
        return ref  # never called: upload() never asks for a call


# -- rules ----------------------------------------------------------------------------------------


def _why_unsupported(info: ModelInfo) -> str:
    if info.kind == "video":
        return " (reAPI documents only model, prompt, resolution and duration for wan2.7-video; " \
               "provider_params can carry other fields unchecked)"
    return ""


def _image_rules(info: ModelInfo, prompt: str, params: NeutralParams) -> list[Issue]:
    issues: list[Issue] = []
    refs = params.reference_images or []
    shape = _Shape(references=bool(refs), group=bool(params.sequential))
    where = f"{info.provider}/{info.model}"
    if not refs and not prompt.strip():
        issues.append(Issue("prompt", "a prompt is required for text-to-image (no reference images)"))
    if params.aspect_ratio:
        if shape.references:
            issues.append(Issue("aspect_ratio", "with reference images the output takes the aspect of the last "
                                                "input image on reAPI; remove aspect_ratio"))
        elif params.aspect_ratio not in info.aspect_ratios:
            issues.append(Issue("aspect_ratio", not_one_of(info, "aspect_ratio", params.aspect_ratio,
                                                           info.aspect_ratios)))
    if params.resolution == "4K" and "4K" in info.resolutions and not shape.text_to_image:
        issues.append(Issue("resolution", f"4K on {where} is text-to-image only (no reference images, no "
                                          "sequential); editing and group modes go up to 2K"))
    if params.width is not None and params.height is not None:
        if params.resolution is not None:
            issues.append(Issue("resolution", "give either width/height or resolution: pixel sizes and gears "
                                              "cannot be mixed"))
        issues.extend(_pixel_rules(info, params.width, params.height, shape))
    n = params.n or 1
    if shape.group and n > MAX_N_GROUP:
        issues.append(Issue("n", f"{n} images; group mode makes at most {MAX_N_GROUP}"))
    elif not shape.group and n > MAX_N:
        issues.append(Issue("n", f"{n} images; at most {MAX_N} per task (up to {MAX_N_GROUP} with sequential)"))
    if params.thinking and not shape.text_to_image:
        issues.append(Issue("thinking", "thinking only works for text-to-image outside group mode; reAPI "
                                        "ignores it with reference images or sequential"))
    if params.color_palette is not None and shape.group:
        issues.append(Issue("color_palette", "color_palette is not available in group mode (sequential)"))
    if len(refs) > info.max_reference_images:
        issues.append(Issue("reference_images", f"{len(refs)} images; {where} takes at most "
                                                f"{info.max_reference_images}"))
    for ref in refs:
        if _SCHEME_RE.match(ref) and not ref.startswith("https://"):
            issues.append(Issue("reference_images", f"'{ref[:80]}': reAPI takes public HTTPS URLs only (or a "
                                                    "local file, served from S3 storage by a presigned URL)"))
    return issues


def _pixel_rules(info: ModelInfo, width: int, height: int, shape: _Shape) -> list[Issue]:
    issues: list[Issue] = []
    top = MAX_PIXELS_4K if info.model == PRO and shape.text_to_image else MAX_PIXELS
    total = width * height
    if not MIN_PIXELS <= total <= top:
        side = math.isqrt(top)
        issues.append(Issue("width", f"{width}x{height} is {total} pixels; {info.provider}/{info.model} takes "
                                     f"768x768 to {side}x{side} pixels in this mode"))
    if max(width / height, height / width) > 8:
        issues.append(Issue("width", f"{width}x{height} is outside the aspect range 1:8 to 8:1"))
    return issues


def _video_rules(info: ModelInfo, prompt: str, params: NeutralParams) -> list[Issue]:
    issues: list[Issue] = []
    if not prompt.strip():
        issues.append(Issue("prompt", "a prompt is required for text-to-video"))
    if params.duration is not None and info.durations and params.duration not in info.durations:
        issues.append(Issue("duration", f"{params.duration} s; {info.provider}/{info.model} makes "
                                        f"{min(info.durations)} to {max(info.durations)} s"))
    return issues


# -- parsing --------------------------------------------------------------------------------------


def _public_url(ref: Reference) -> str:
    if not ref.url:
        raise e.ConfigError(f"reference '{ref.source}' has no public URL (reAPI has no upload API)")
    return ref.url


def _code(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


def _class_of(code: str) -> type[e.ProviderError] | None:
    if code.isdigit():
        known = CODE_CLASSES.get(int(code))
        if known is not None:
            return known
        if len(code) == 5:
            return CATEGORY_CLASSES.get(code[0])
    return None


def _task_error(code: str, message: str) -> e.ProviderError:
    """A failed task's `error`: moderation -> ContentRejected, 2xxxx -> RejectedByProvider, else GenerationFailed."""
    if any(word in message.lower() for word in CONTENT_WORDS):
        return e.ContentRejected(code=code, message=message)
    cls = _class_of(code)
    if cls is e.RejectedByProvider:
        return e.RejectedByProvider(code=code, message=message)
    return e.GenerationFailed(code=code, message=message)


def _snippet(reply: HttpReply) -> str:
    return reply.body[:200].decode("utf-8", errors="replace") or f"HTTP {reply.status}"


PROVIDER = ReApi()
