"""Reading DashScope's answers: task states, the task list, errors, and the temporary-upload policy.

Split out of `dashscope.py` (which holds the request side); the wire facts and choices are documented there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from wan_pipeline import errors as e
from wan_pipeline.providers.base import (
    HttpCall,
    HttpReply,
    ListedTask,
    Reference,
    TaskPage,
    TaskSnapshot,
    TaskStatus,
    Usage,
    error_by_status,
    json_or_none,
)

#: task_status values (sheet "Task states"; SDK dashscope/common/constants.py TaskStatus)
PENDING_STATES = ("PENDING", "RUNNING", "SUSPENDED")
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")

#: error families (the part of a code before the first '.'), sheet "Errors & retries"
_ERROR_CLASSES: dict[str, type[e.ProviderError]] = {
    "InvalidParameter": e.RejectedByProvider,
    "DataInspectionFailed": e.ContentRejected,
    "Arrearage": e.InsufficientCredits,
    "InvalidApiKey": e.AuthenticationFailed,
    "AccessDenied": e.AuthenticationFailed,
    "ModelNotFound": e.RejectedByProvider,
    "NotFound": e.RejectedByProvider,
    "Throttling": e.RateLimited,
    "InternalError": e.Transient,
}


def read_state(reply: HttpReply) -> TaskSnapshot:
    """A task answer (or the synchronous endpoint's result) as a snapshot (sheet "Task states")."""
    data = json_or_none(reply)
    if not isinstance(data, dict):
        raise e.Transient(code="bad_response", message="task answer is not JSON", http_status=reply.status)
    output = data.get("output")
    if not isinstance(output, dict):
        if data.get("code"):  # the image doc's top-level query error
            raise _classify(reply, str(data["code"]), str(data.get("message") or ""))
        raise e.Transient(code="bad_response", message="task answer has no output", http_status=reply.status)
    status = output.get("task_status")
    task_id = str(output.get("task_id") or data.get("request_id") or "")
    if status is None and "choices" in output:
        status = "SUCCEEDED"  # the synchronous endpoint answers with the result itself
    urls = _output_urls(output)
    error: e.ProviderError | None = None
    cost: float | None = None
    if status in PENDING_STATES:
        task_status = TaskStatus.PENDING
    elif status == "SUCCEEDED":
        task_status = TaskStatus.SUCCEEDED
        if not urls:
            task_status = TaskStatus.FAILED
            error = e.GenerationFailed(code="no_output", message="task succeeded without result URLs")
    elif status == "FAILED":
        task_status = TaskStatus.FAILED
        code = output.get("code") or data.get("code") or "InternalError"
        message = output.get("message") or data.get("message") or "task failed"
        error = _task_error(str(code), str(message))
        cost = 0.0  # sheet, Pricing: failures cost nothing
    elif status == "CANCELED":
        task_status = TaskStatus.FAILED
        error = e.RejectedByProvider(code="Canceled", message="the task was cancelled before it ran")
        cost = 0.0  # cancelled while PENDING: never ran, never billed
    elif status == "UNKNOWN":
        task_status = TaskStatus.FAILED
        error = e.GenerationFailed(code="UnknownTask", message="DashScope no longer knows this task (not found or "
                                                               "expired after 24 h)")
    else:
        raise e.Transient(code="unknown_status", message=f"unknown task_status '{status}'")
    usage = billed_usage(data.get("usage")) if task_status == TaskStatus.SUCCEEDED else None
    return TaskSnapshot(task_id=task_id, status=task_status, output_urls=urls, error=error, cost_usd=cost,
                        usage=usage, host_latency_s=_host_latency(output), raw=data)


def _host_latency(output: dict[str, Any]) -> float | None:
    """`end_time` - `submit_time` of a finished task (sheet "Task states": "YYYY-MM-DD hh:mm:ss.fff", both on the
    host's clock, so their difference holds whatever our clock says); None when either is missing or unreadable."""
    try:
        start = datetime.strptime(str(output["submit_time"]), "%Y-%m-%d %H:%M:%S.%f")
        end = datetime.strptime(str(output["end_time"]), "%Y-%m-%d %H:%M:%S.%f")
    except (KeyError, ValueError):
        return None
    latency = (end - start).total_seconds()
    return latency if latency >= 0 else None


def read_task_page(reply: HttpReply) -> TaskPage:
    """A page of the list; any shape but the documented one cannot prove anything and is refused."""
    data = json_or_none(reply)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(_listed_ok(x) for x in entries):
        raise e.Transient(code="cannot_reconcile", message="the task list answer has an unknown shape")
    assert isinstance(data, dict)
    page_no, total = data.get("page_no", 1), data.get("total_page", 1)
    if not isinstance(page_no, int) or not isinstance(total, int):
        raise e.Transient(code="cannot_reconcile", message="the task list answer has no page numbers")
    tasks = tuple(ListedTask(x["task_id"], x["model_name"], x.get("status") or x.get("task_status") or "",
                             x["gmt_create"]) for x in entries)
    return TaskPage(tasks, page_no, total)


def read_error(reply: HttpReply) -> e.ProviderError:
    """A failed HTTP call by its error family (sheet "Errors & retries")."""
    data = json_or_none(reply)
    if not isinstance(data, dict) or not data.get("code"):
        return error_by_status(reply, code=f"http_{reply.status}", message=_snippet(reply))
    return _classify(reply, str(data["code"]), str(data.get("message") or ""))


def read_upload_step(ref: Reference, reply: HttpReply) -> Reference | tuple[Reference, HttpCall]:
    """Step 2 posts the file to the policy's storage host; its 200 makes the file `oss://<key>`."""
    if "key" in ref.upload_fields:
        if reply.status != 200:
            raise e.Transient(code="upload_failed", message=f"OSS upload answered HTTP {reply.status}",
                              http_status=reply.status)
        return replace(ref, url=f"oss://{ref.upload_fields['key']}")
    data = json_or_none(reply)
    # The SDK reads the policy from `data`; the sheet calls the object `output`: take either.
    policy = (data.get("data") or data.get("output")) if isinstance(data, dict) else None
    if not isinstance(policy, dict) or not policy.get("upload_host") or ref.data is None or ref.path is None:
        raise e.Transient(code="upload_failed", message="upload policy answer has no upload_host",
                          http_status=reply.status)
    key = f"{policy['upload_dir']}/{ref.path.name}"
    form = {
        "OSSAccessKeyId": str(policy["oss_access_key_id"]),
        "Signature": str(policy["signature"]),
        "policy": str(policy["policy"]),
        "key": key,
        "x-oss-object-acl": str(policy.get("x_oss_object_acl", "private")),
        "x-oss-forbid-overwrite": str(policy.get("x_oss_forbid_overwrite", "true")),
        "success_action_status": "200",
        "x-oss-content-type": ref.mime_type or "application/octet-stream",
    }
    call = HttpCall("POST", str(policy["upload_host"]), form=form,
                    files={"file": (ref.path.name, ref.data, ref.mime_type or "application/octet-stream")})
    return replace(ref, upload_fields={**ref.upload_fields, "key": key}), call


def _output_urls(output: dict[str, Any]) -> tuple[str, ...]:
    urls: list[str] = []
    for choice in output.get("choices") or []:
        message = (choice or {}).get("message") or {}
        content = message.get("content") or []
        for item in content if isinstance(content, list) else []:
            if isinstance(item, dict) and isinstance(item.get("image"), str):
                urls.append(item["image"])
    if isinstance(output.get("video_url"), str) and output["video_url"]:
        urls.append(output["video_url"])
    return tuple(urls)


def billed_usage(usage: Any) -> Usage | None:
    """A finished task's `usage` in neutral units: images produced, or output seconds at a gear."""
    units = billed_units(usage)
    if units is None:
        return None
    if units[0] == "image":
        return Usage(images=units[1])
    return Usage(seconds=units[1], resolution=units[0])


def _listed_ok(entry: Any) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("task_id", "model_name",
                                                                                     "gmt_create"))


def billed_units(usage: Any) -> tuple[str, float] | None:
    """What a finished task is billed on: ("image", image_count) or ("<720p|1080p>", output seconds)."""
    if not isinstance(usage, dict):
        return None
    if isinstance(usage.get("image_count"), int | float):
        return "image", float(usage["image_count"])
    seconds = usage.get("output_video_duration", usage.get("duration"))
    sr = usage.get("SR")
    if isinstance(seconds, int | float) and sr in (720, 1080, "720", "1080"):
        return f"{int(sr)}p", float(seconds)
    return None


def _family(code: str) -> str:
    return code.split(".", 1)[0]


def _classify(reply: HttpReply, code: str, message: str) -> e.ProviderError:
    generic = error_by_status(reply, code, message)
    cls = _ERROR_CLASSES.get(_family(code))
    if cls is None:
        return generic
    return cls(code=code, message=message, http_status=reply.status, retry_after_s=generic.retry_after_s)


def _task_error(code: str, message: str) -> e.ProviderError:
    """A FAILED task's code: moderation is permanent, a bad input is ours, anything else a failed generation."""
    family = _family(code)
    if family == "DataInspectionFailed":
        return e.ContentRejected(code=code, message=message)
    if family in ("InvalidParameter", "ModelNotFound", "NotFound"):
        return e.RejectedByProvider(code=code, message=message)
    if family in ("InvalidApiKey", "AccessDenied"):
        return e.AuthenticationFailed(code=code, message=message)
    if family == "Arrearage":
        return e.InsufficientCredits(code=code, message=message)
    return e.GenerationFailed(code=code, message=message)


def _snippet(reply: HttpReply) -> str:
    return reply.body[:200].decode("utf-8", errors="replace") or f"HTTP {reply.status}"
