"""Reading Runware's answers: error codes to the engine's error classes, and task states to snapshots.

Split out of `runware.py` (which holds the request side); the wire facts and choices are documented there.
"""

from __future__ import annotations

from typing import Any

from wan_pipeline import errors as e
from wan_pipeline.providers.base import HttpReply, TaskSnapshot, TaskStatus, error_by_status, json_or_none

PENDING_STATES = ("processing", "pending", "queued", "scheduled", "waiting")

# -- error classification (sheet "Errors & retries": the SDK's categories) -----------------------------

_AUTH_CODES = {"invalidApiKey", "missingApiKey", "unauthorized", "tokenExpired"}
_SAFETY_WORDS = ("contentpolicy", "nsfw", "blocked", "moderation", "safety")
_NOT_FOUND_CODES = {"taskFailedOrNotFound", "taskCancelled", "unknownModel"}
_PROVIDER_CODES = {"inferenceError", "taskFailed", "modelUnavailable", "noAvailableServer"}
_SERVER_CODES = {"internalServerError", "serviceUnavailable", "serverUnavailable", "standardError"}
_VALIDATION_PREFIXES = ("invalid", "missing", "unsupported", "conflict", "max", "unknown", "incompatible",
                        "duplicate", "array", "value")


def category(code: str) -> str | None:
    """The SDK's category for a Runware error code, or None when the code says nothing we know."""
    low = code.lower()
    if code in _AUTH_CODES or "apikey" in low:
        return "auth"
    if any(w in low for w in ("credit", "balance", "quota")):
        return "quota"
    if "ratelimit" in low:
        return "rateLimit"
    if any(w in low for w in _SAFETY_WORDS):
        return "safety"
    if code == "conflictTaskUUID":
        return "conflict"
    if code in _NOT_FOUND_CODES or "notfound" in low:
        return "notFound"
    if "timeout" in low:
        return "timeout"
    if code in _PROVIDER_CODES or low.startswith("provider"):
        return "provider"
    if code in _SERVER_CODES:
        return "serverError"
    if low.startswith(_VALIDATION_PREFIXES):
        return "validation"
    return None


#: a failed HTTP call: what the engine does next depends on the class alone
_HTTP_CLASSES: dict[str, type[e.ProviderError]] = {
    "auth": e.AuthenticationFailed,
    "quota": e.InsufficientCredits,
    "rateLimit": e.RateLimited,
    "safety": e.ContentRejected,
    "conflict": e.IdempotencyConflict,
    "notFound": e.RejectedByProvider,
    "validation": e.RejectedByProvider,
    # the SDK retries these categories ("provider, timeout, connection, rateLimit, serverError")
    "timeout": e.Transient,
    "provider": e.Transient,
    "serverError": e.Transient,
}


def task_error(code: str, message: str) -> e.ProviderError:
    """A task that ran and ended `status: "error"`: resubmittable unless the request itself is at fault."""
    kind = category(code)
    if kind == "safety":
        return e.ContentRejected(code=code, message=message)
    if kind == "auth":
        return e.AuthenticationFailed(code=code, message=message)
    if kind == "quota":
        return e.InsufficientCredits(code=code, message=message)
    if kind in ("validation", "conflict") or code == "unknownModel":
        return e.RejectedByProvider(code=code, message=message)
    return e.GenerationFailed(code=code, message=message)


def read_state(reply: HttpReply) -> TaskSnapshot:
    """A getResponse (or async ACK) answer as the snapshot of the one task it names."""
    data = json_or_none(reply)
    if not isinstance(data, dict):
        raise e.Transient(code="bad_response", message="answer is not a Runware response object",
                          http_status=reply.status)
    items = [i for i in data.get("data") or [] if isinstance(i, dict) and i.get("taskType") != "authentication"]
    errors = [x for x in data.get("errors") or [] if isinstance(x, dict)]
    if not items:
        if errors:
            first = errors[0]
            err = _http_error(reply, first)
            if not first.get("taskUUID"):
                raise err
            # A whole-task failure reported as a top-level error on a 200 (sheet "Task states").
            return TaskSnapshot(task_id=str(first["taskUUID"]), status=TaskStatus.FAILED,
                                error=task_error(err.code, err.message), raw=data)
        raise e.Transient(code="bad_response", message="Runware answered without any task item",
                          http_status=reply.status)
    task_id = str(items[0].get("taskUUID") or "")
    if not task_id:
        raise e.Transient(code="bad_response", message="task item without taskUUID", http_status=reply.status)
    mine = [i for i in items if i.get("taskUUID") == task_id]
    pending, done, failed = [], [], []
    for item in mine:
        status = item.get("status")
        url = item.get("imageURL") or item.get("videoURL")
        if status == "error" or (status is None and isinstance(item.get("error"), dict)):
            failed.append(item)
        elif status == "success" or (status is None and url):
            done.append(item)
        elif status is None or status in PENDING_STATES:
            pending.append(item)  # the async ACK carries only taskType + taskUUID
        else:
            raise e.Transient(code="unknown_status", message=f"unknown task status '{status}'")
    failed += [{"error": x} for x in errors if x.get("taskUUID") == task_id]
    costs = [float(i["cost"]) for i in done if _is_number(i.get("cost"))]
    cost = round(sum(costs), 10) if costs else None
    seeds = [int(i["seed"]) for i in done if _is_number(i.get("seed"))]
    progress = [float(i["progress"]) for i in pending if _is_number(i.get("progress"))]

    def snapshot(status: TaskStatus, **extra: Any) -> TaskSnapshot:
        return TaskSnapshot(task_id=task_id, status=status, cost_usd=cost,
                            provider_seed=seeds[0] if seeds else None, raw=data, **extra)

    if pending:
        return snapshot(TaskStatus.PENDING, progress=min(progress) if progress else None)
    urls = tuple(str(u) for u in (i.get("imageURL") or i.get("videoURL") for i in done) if u)
    if urls:
        return snapshot(TaskStatus.SUCCEEDED, output_urls=urls)
    if failed:
        err_obj = failed[0].get("error") or {}
        code = str(err_obj.get("code") or "taskFailed")
        return snapshot(TaskStatus.FAILED, error=task_error(code, str(err_obj.get("message") or "")))
    return snapshot(TaskStatus.FAILED, error=e.GenerationFailed(code="no_output",
                                                                message="task succeeded without result URLs"))

def read_error(reply: HttpReply) -> e.ProviderError:
    """A failed HTTP call as the error class the engine acts on (the SDK's categories)."""
    data = json_or_none(reply)
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return _http_error(reply, errors[0])
        err = data.get("error")
        if isinstance(err, dict):  # the pre-stream singular shape
            return _http_error(reply, {**err, "taskUUID": err.get("taskUUID") or data.get("taskUUID")})
        if err is True and data.get("errorId") == 19:  # legacy invalid-key answer (sheet "Auth")
            return e.AuthenticationFailed(code="invalidApiKey", message="invalid API key (errorId 19)",
                                          http_status=reply.status)
    return error_by_status(reply, code=f"http_{reply.status}", message=_snippet(reply))


def _http_error(reply: HttpReply, err: dict[str, Any]) -> e.ProviderError:
    code = str(err.get("code") or f"http_{reply.status}")
    message = str(err.get("message") or "")
    details = {k: err[k] for k in ("parameter", "taskType", "taskUUID", "documentation") if err.get(k) is not None}
    generic = error_by_status(reply, code, message)
    kind = category(code)
    cls = _HTTP_CLASSES.get(kind) if kind else None
    if cls is None:
        generic.details = details
        return generic
    return cls(code=code, message=message, http_status=reply.status, retry_after_s=generic.retry_after_s,
               details=details)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _snippet(reply: HttpReply) -> str:
    return reply.body[:200].decode("utf-8", errors="replace") or f"HTTP {reply.status}"
