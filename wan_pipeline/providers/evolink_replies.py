"""Reading EvoLink's answers: task objects to snapshots, and error codes to the engine's error classes.

Split out of `evolink.py` (which holds the request side); the wire facts and choices are documented there.
"""

from __future__ import annotations

from typing import Any

from wan_pipeline import errors as e
from wan_pipeline.providers.base import HttpReply, TaskSnapshot, TaskStatus, Usage, error_by_status, json_or_none

_HTTP_CODES: dict[str, type[e.ProviderError]] = {
    "invalid_request": e.RejectedByProvider,
    "invalid_task_id": e.RejectedByProvider,
    "unauthorized": e.AuthenticationFailed,
    "insufficient_quota": e.InsufficientCredits,
    "quota_exceeded": e.InsufficientCredits,
    # A key without access to the model can submit nothing of this dataset: stop, as for a bad key.
    "model_access_denied": e.AuthenticationFailed,
    "permission_denied": e.AuthenticationFailed,
    "task_not_found": e.RejectedByProvider,
    "rate_limit_exceeded": e.RateLimited,
    "internal_error": e.Transient,
}
_HTTP_TYPES: dict[str, type[e.ProviderError]] = {
    "authentication_error": e.AuthenticationFailed,
    "insufficient_quota": e.InsufficientCredits,
    "rate_limit_error": e.RateLimited,
    "api_error": e.Transient,
    "upstream_error": e.Transient,
    "service_unavailable_error": e.Transient,
}
#: `error.code` of a failed task (sheet "Errors & retries", error-codes page)
TASK_ERRORS: dict[str, type[e.ProviderError]] = {
    # fix, then retry: the same request fails the same way
    "content_policy_violation": e.ContentRejected,
    "invalid_parameters": e.RejectedByProvider,
    "image_processing_error": e.RejectedByProvider,
    "image_dimension_mismatch": e.RejectedByProvider,
    "request_cancelled": e.RejectedByProvider,
    # retry later: a new attempt with the same seed may succeed
    "generation_failed_no_content": e.GenerationFailed,
    "service_error": e.GenerationFailed,
    "generation_timeout": e.GenerationFailed,
    "resource_exhausted": e.GenerationFailed,
    "quota_exceeded": e.InsufficientCredits,
    "service_unavailable": e.GenerationFailed,
    "resource_not_found": e.GenerationFailed,
    "unknown_error": e.GenerationFailed,
}
_CONTENT_WORDS = ("content", "moderation", "safety", "sensitive", "nsfw")


def read_state(reply: HttpReply) -> TaskSnapshot:
    """An EvoLink task object (create answer or poll) as a snapshot (sheet "Task states")."""
    data = json_or_none(reply)
    if not isinstance(data, dict) or "id" not in data or "status" not in data:
        raise e.Transient(code="bad_response", message="answer is not an EvoLink task object",
                          http_status=reply.status)
    status = str(data["status"])
    error: e.ProviderError | None = None
    urls: tuple[str, ...] = ()
    if status == "completed":
        task_status = TaskStatus.SUCCEEDED
        urls = _result_urls(data)
        if not urls:
            task_status = TaskStatus.FAILED
            error = e.GenerationFailed(code="no_output", message="task completed without result URLs")
    elif status == "failed":
        task_status = TaskStatus.FAILED
        err = _obj(data.get("error"))
        error = task_error(str(err.get("code") or "unknown_error"), str(err.get("message") or "task failed"))
    elif status in ("pending", "processing"):
        task_status = TaskStatus.PENDING
    else:
        raise e.Transient(code="unknown_status", message=f"unknown task status '{status}'")
    usage = _obj(data.get("usage"))
    produced = Usage(images=float(len(urls))) if task_status == TaskStatus.SUCCEEDED and data.get(
        "type") == "image" else None
    return TaskSnapshot(
        task_id=str(data["id"]),
        status=task_status,
        output_urls=urls,
        error=error,
        credits_reserved=_num(usage.get("credits_reserved")),
        # Sheet "Pricing": failed tasks are free; a completed task's final charge is never reported.
        credits_final=0.0 if status == "failed" else None,
        progress=_num(data.get("progress")),
        usage=produced,
        raw=data,
    )


def read_error(reply: HttpReply) -> e.ProviderError:
    """A failed HTTP call by its `error.code`, else its `error.type` (sheet "Errors & retries")."""
    data = json_or_none(reply)
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return error_by_status(reply, code=f"http_{reply.status}", message=_snippet(reply))
    # /v1/credits puts the integer HTTP status in `code` (sheet): fall back to `type` then.
    raw_code = err.get("code")
    code = str(raw_code) if raw_code not in (None, "") else f"http_{reply.status}"
    message = str(err.get("message") or "")
    kind = str(err.get("type") or "")
    cls = _HTTP_CODES.get(code) or _HTTP_TYPES.get(kind)
    generic = error_by_status(reply, code, message)
    if cls is None:
        return generic
    details: dict[str, object] = {"type": kind} if kind else {}
    if err.get("param"):
        details["param"] = err["param"]
    return cls(code=code, message=message, http_status=reply.status, retry_after_s=generic.retry_after_s,
               details=details)


def _result_urls(data: dict[str, Any]) -> tuple[str, ...]:
    results = data.get("results")
    if isinstance(results, list) and results:
        return tuple(str(u) for u in results if isinstance(u, str) and u)
    # EvoLink's own client also knows `result_data[]` items (sheet "Results", inferred optional).
    out: list[str] = []
    for item in data.get("result_data") or []:
        if isinstance(item, dict):
            url = item.get("image_url") or item.get("video_url")
            if isinstance(url, str) and url:
                out.append(url)
    return tuple(out)


def task_error(code: str, message: str) -> e.ProviderError:
    cls = TASK_ERRORS.get(code)
    if cls is None:
        cls = e.ContentRejected if any(w in code.lower() for w in _CONTENT_WORDS) else e.GenerationFailed
    return cls(code=code, message=message)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _snippet(reply: HttpReply) -> str:
    return reply.body[:200].decode("utf-8", errors="replace") or f"HTTP {reply.status}"
