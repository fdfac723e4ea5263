"""Rivya Public API v1 — `wan-2-7-image` (seed 000) and `wan-2-7-video` (seed 001).

Wire facts (seed 000 and providers/rivya.md):
- POST /api/v1/generations with the model id top-level and model controls inside `params`;
  GET /api/v1/generations/{id} until `succeeded` or `failed`.
- "select" params travel as strings (`"watermark": "false"`), `seed` as a JSON number — as the seed's
  request examples do; the sheet notes native booleans are undocumented, so we never rely on them.
- Errors: `{"error": {"code", "message", "requestId"}}`; a failed task carries `error.code` in the task.
- `Idempotency-Key` on every create (sheet "Idempotency"); same key + same body returns the same task.
- References go through the Files API (multipart: file, kind, model) and into `params.referenceMediaItems`
  with the returned url and, for video, `durationSeconds` + `durationToken` (seed 001 upload policy).

Open questions of the sheet, decided (the emulator follows the same choices):
- selects must be strings; unknown `params` keys are rejected (we never send any but provider_params).
- Files API answer: `{"id","kind","url","name","mime_type","size_bytes","duration_seconds","duration_token"}`
  (the sheet's probable shape); we read `url` and the duration fields only.
- Video edit with duration > 10: seed 001 says Rivya shortens it silently; we refuse it before sending.
- `audio_setting` outside video edit: the seed's examples send "auto" in every mode, so "auto" is always
  sent; "origin" without a source video is refused.
- Video price: FIXED 80 credits whatever the resolution or duration (seed 001 "FIXED").
"""

from __future__ import annotations

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
from wan_pipeline.providers.catalog import CatalogBacked, not_one_of
from wan_pipeline.providers.params import NeutralParams

GENERATIONS = "/api/v1/generations"
FILES = "/api/v1/files"

_ERROR_CLASSES: dict[str, type[e.ProviderError]] = {
    "validation_failed": e.RejectedByProvider,
    "webhook_url_rejected": e.RejectedByProvider,
    "not_found": e.RejectedByProvider,
    "api_key_missing": e.AuthenticationFailed,
    "api_key_invalid": e.AuthenticationFailed,
    "api_key_revoked": e.AuthenticationFailed,
    "api_key_expired": e.AuthenticationFailed,
    "api_scope_denied": e.AuthenticationFailed,
    "idempotency_conflict": e.IdempotencyConflict,
    "rate_limited": e.RateLimited,
    "insufficient_credits": e.InsufficientCredits,
    "public_api_disabled": e.Transient,
    "generation_failed": e.GenerationFailed,
}
# Task-level codes the sheet does not list but a moderation refusal would plausibly use.
_CONTENT_CODES = ("content", "moderation", "safety", "sensitive", "nsfw")


class Rivya(CatalogBacked):
    name = "rivya"
    key_env = "RIVYA_API_KEY"
    base_env = "RIVYA_BASE_URL"
    default_base = "https://rivya.ai"
    supports_idempotency_key = True
    upload_kinds: frozenset[str] = frozenset({"image", "video"})  # its Files API takes images and videos
    #: the closest two polls of one task may be (sheet "Task states": first poll after 2–3 s, then every 5–10 s)
    min_poll_interval_s: float = 2.0
    #: tasks in flight and creates per second when the resource config names none
    #: (no published limits (sheet); a conservative start)
    default_limits: HostLimits = HostLimits(max_concurrency=8, submits_per_second=2.0)
    charge_on_create: str | None = "credits"  # reserved_credits

    # -- capabilities -------------------------------------------------------------------------
    def check(self, model: str, prompt: str, params: NeutralParams) -> list[Issue]:
        info, issues = self.common_issues(model, prompt, params)
        if info is None:
            return issues
        if params.aspect_ratio and params.aspect_ratio not in info.aspect_ratios:
            issues.append(
                Issue("aspect_ratio", not_one_of(info, "aspect_ratio", params.aspect_ratio, info.aspect_ratios))
            )
        if params.resolution and params.resolution not in info.resolutions:
            issues.append(Issue("resolution", not_one_of(info, "resolution", params.resolution, info.resolutions)))
        if params.duration is not None and info.durations and params.duration not in info.durations:
            allowed = tuple(str(d) for d in info.durations)
            issues.append(Issue("duration", not_one_of(info, "duration", str(params.duration), allowed)))
        refs = params.reference_images or []
        if len(refs) > info.max_reference_images:
            issues.append(
                Issue("reference_images", f"{len(refs)} images; {model} takes at most {info.max_reference_images}")
            )
        sources = [("reference_images", r) for r in refs]
        if params.reference_video:
            sources.append(("reference_video", params.reference_video))
        for column, ref in sources:
            if ref.startswith("http"):
                # Sheet: "References must be Files API URLs; arbitrary public URLs are not described as accepted".
                issues.append(
                    Issue(
                        column,
                        f"'{ref}': rivya takes reference files only through its Files API; "
                        "give a local path and it is uploaded",
                    )
                )
        if info.kind == "video":
            issues.extend(_video_rules(params))
        return issues

    def mode(self, model: str, params: NeutralParams) -> Mode:
        if self.info(model).kind == "video":
            if params.reference_video:
                return Mode.VIDEO_EDIT
            return Mode.IMAGE_TO_VIDEO if params.reference_images else Mode.TEXT_TO_VIDEO
        return Mode.IMAGE_EDIT if params.reference_images else Mode.TEXT_TO_IMAGE

    def estimate(self, model: str, params: NeutralParams) -> Estimate:
        info = self.info(model)
        return Estimate(credits=info.credits_per_output, usd=info.usd_per_output)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # -- wire mapping -------------------------------------------------------------------------
    def wire_params(self, request: GenerationRequest) -> dict[str, Any]:
        """Every documented control is sent explicitly (as the seeds' requests do), selects as strings."""
        info = self.info(request.model)
        p = request.params
        out: dict[str, Any]
        if info.kind == "video":
            # Key order of seed 001's minimal request; negative_prompt only when there is one.
            out = {
                "resolution": p.resolution or info.default_resolution,
                "duration": str(p.duration or info.default_duration),
                "aspect_ratio": p.aspect_ratio or info.default_aspect_ratio,
            }
            if p.negative_prompt:
                out["negative_prompt"] = p.negative_prompt
            out.update(
                {
                    "prompt_extend": _select_bool(True if p.prompt_extend is None else p.prompt_extend),
                    "watermark": _select_bool(p.watermark or False),
                    "audio_setting": p.audio_setting or "auto",
                    "seed": request.seed,
                }
            )
        else:
            out = {
                "aspect_ratio": p.aspect_ratio or info.default_aspect_ratio,
                "resolution": p.resolution or info.default_resolution,
                "watermark": _select_bool(p.watermark or False),
                "seed": request.seed,
            }
        if request.references:
            # Video first for video edit (the sheet's example lists the clip, then the image).
            ordered = sorted(request.references, key=lambda r: r.kind != "video")
            out["referenceMediaItems"] = [_media_item(r) for r in ordered]
        if p.provider_params:
            out.update(p.provider_params)
        return out

    def submit(self, request: GenerationRequest, idempotency_key: str) -> HttpCall:
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "params": self.wire_params(request)}
        if request.client_request_id:
            body["client_request_id"] = request.client_request_id
        return HttpCall("POST", GENERATIONS, json_body=body, headers={"Idempotency-Key": idempotency_key})

    def presubmit_task_id(self, request: GenerationRequest, idempotency_key: str) -> str | None:
        return None  # Rivya names its tasks; the Idempotency-Key makes a re-sent create safe instead

    def accepted(self, reply: HttpReply) -> TaskSnapshot:
        return self.state(reply)

    def poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"{GENERATIONS}/{task_id}")

    def state(self, reply: HttpReply) -> TaskSnapshot:
        data = json_or_none(reply)
        if not isinstance(data, dict) or "id" not in data or "status" not in data:
            raise e.Transient(
                code="bad_response", message="task response is not a Rivya task object", http_status=reply.status
            )
        status = str(data["status"])
        result = data.get("result") or {}
        urls: tuple[str, ...] = tuple(
            result.get("urls") or ([result["primary_url"]] if result.get("primary_url") else [])
        )
        error: e.ProviderError | None = None
        if status == "succeeded":
            task_status = TaskStatus.SUCCEEDED
            if not urls:
                task_status = TaskStatus.FAILED
                error = e.GenerationFailed(code="no_output", message="task succeeded without result URLs")
        elif status == "failed":
            task_status = TaskStatus.FAILED
            err = data.get("error") or {}
            error = _task_error(str(err.get("code") or "generation_failed"), str(err.get("message") or "failed"))
        elif status in ("queued", "processing"):
            task_status = TaskStatus.PENDING
        else:
            raise e.Transient(code="unknown_status", message=f"unknown task status '{status}'")
        return TaskSnapshot(
            task_id=str(data["id"]),
            status=task_status,
            output_urls=urls,
            error=error,
            credits_reserved=_num(data.get("reserved_credits")),
            # Sheet: final_credits is 0 until settled; only a terminal task's value is an actual.
            credits_final=_num(data.get("final_credits")) if task_status != TaskStatus.PENDING else None,
            raw=data,
        )

    def error(self, reply: HttpReply) -> e.ProviderError:
        data = json_or_none(reply)
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            return error_by_status(reply, code=f"http_{reply.status}", message=_snippet(reply))
        code = str(err.get("code") or f"http_{reply.status}")
        message = str(err.get("message") or "")
        cls = _ERROR_CLASSES.get(code)
        if cls is None:
            return error_by_status(reply, code, message)
        generic = error_by_status(reply, code, message)
        return cls(code=code, message=message, http_status=reply.status, retry_after_s=generic.retry_after_s)

    # -- uploads (Files API) ------------------------------------------------------------------
    def upload(self, model: str, ref: Reference, data: bytes) -> HttpCall | None:
        assert ref.path is not None and ref.mime_type is not None
        return HttpCall(
            "POST",
            FILES,
            form={"kind": ref.kind, "model": model},
            files={"file": (ref.path.name, data, ref.mime_type)},
        )

    def uploaded(self, ref: Reference, reply: HttpReply) -> Reference:
        data = json_or_none(reply)
        if not isinstance(data, dict) or not data.get("url"):
            raise e.Transient(code="bad_response", message="Files API answer has no url", http_status=reply.status)
        fields: dict[str, Any] = {}
        if data.get("duration_token"):
            fields["durationToken"] = data["duration_token"]
        if data.get("duration_seconds") is not None:
            fields["durationSeconds"] = data["duration_seconds"]
        from dataclasses import replace

        return replace(ref, url=str(data["url"]), upload_fields=fields)


def _video_rules(params: NeutralParams) -> list[Issue]:
    """Seed 001's upload policy: ≤ 2 assets — up to 2 images (image-to-video) or 1 video + ≤ 1 image (edit)."""
    issues = []
    images = len(params.reference_images or [])
    if params.reference_video and images > 1:
        issues.append(Issue("reference_images", "video edit takes one video plus at most one image"))
    if params.reference_video and params.duration is not None and params.duration > 10:
        # Seed 001: video editing "tops out at 10 seconds" and Rivya silently shortens longer selections;
        # refusing here keeps what is paid for equal to what was asked.
        issues.append(Issue("duration", f"{params.duration}s: rivya video edit allows at most 10 s"))
    if params.audio_setting == "origin" and not params.reference_video:
        issues.append(Issue("audio_setting", "'origin' keeps the source video's audio; it needs a reference_video"))
    return issues


def _media_item(ref: Reference) -> dict[str, Any]:
    item: dict[str, Any] = {"url": ref.url, "kind": ref.kind}
    if ref.path is not None:
        item["name"] = ref.path.name
    if ref.mime_type:
        item["mimeType"] = ref.mime_type
    item.update(ref.upload_fields)
    return item


def _select_bool(value: bool) -> str:
    return "true" if value else "false"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _task_error(code: str, message: str) -> e.ProviderError:
    if any(word in code.lower() for word in _CONTENT_CODES):
        return e.ContentRejected(code=code, message=message)
    cls = _ERROR_CLASSES.get(code, e.GenerationFailed)
    if cls in (e.RejectedByProvider, e.AuthenticationFailed):
        return cls(code=code, message=message)
    return e.GenerationFailed(code=code, message=message)


def _snippet(reply: HttpReply) -> str:
    return reply.body[:200].decode("utf-8", errors="replace") or f"HTTP {reply.status}"


PROVIDER = Rivya()
