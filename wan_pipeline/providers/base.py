"""The sans-I/O seam between provider modules and the task engine.

A provider module only builds `HttpCall`s and interprets `HttpReply`s; the engine owns every socket,
timer, retry and ledger write. So a provider is testable with golden JSON alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from wan_pipeline.errors import ProviderError
from wan_pipeline.providers.params import NeutralParams


class Mode(StrEnum):
    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_EDIT = "image_edit"
    REGION_EDIT = "region_edit"
    GROUP = "group"
    TEXT_TO_VIDEO = "text_to_video"
    IMAGE_TO_VIDEO = "image_to_video"
    REFERENCE_TO_VIDEO = "reference_to_video"
    VIDEO_EDIT = "video_edit"


class TaskStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class HttpCall:
    """A request to make, relative to the provider's base URL; auth headers are added by the engine."""

    method: Literal["GET", "POST"]
    path: str
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: multipart form fields and files: name -> str, or (filename, bytes, mime)
    form: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None

    def body_json(self) -> str:
        """The wire payload as canonical JSON text (what lineage's request_json records)."""
        return json.dumps(self.json_body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def to_record(self) -> str:
        """The whole call (never auth headers: the engine adds those) so a resume re-sends it byte for byte."""
        assert self.files is None, "uploads are not recorded for replay"
        return json.dumps(
            {"method": self.method, "path": self.path, "headers": self.headers, "json": self.json_body},
            ensure_ascii=False,
            sort_keys=True,
        )

    @staticmethod
    def from_record(text: str) -> HttpCall:
        data = json.loads(text)
        return HttpCall(data["method"], data["path"], json_body=data["json"], headers=dict(data["headers"]))


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return None


@dataclass(frozen=True)
class Reference:
    """A reference input, local or remote; `url` is filled once it has been uploaded or presigned."""

    kind: Literal["image", "video"]
    source: str  # the path or URL as the user wrote it
    path: Path | None = None
    url: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    duration_s: float | None = None
    #: provider-specific fields the upload API returned (e.g. Rivya's durationToken)
    upload_fields: dict[str, Any] = field(default_factory=dict)
    #: the file's bytes while a multi-step upload runs (a later step posts them to another host)
    data: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class GenerationRequest:
    """One task to submit, fully resolved and provider-neutral."""

    model: str
    prompt: str
    params: NeutralParams  # effective parameters, seed always set
    references: tuple[Reference, ...] = ()
    client_request_id: str | None = None

    @property
    def seed(self) -> int:
        assert self.params.seed is not None
        return self.params.seed


@dataclass(frozen=True)
class Usage:
    """What a host says a finished task is billed on, in neutral units; priced with the submitted model's
    price (declared or documented) by `planning.pricing`, since the host's answer may not name the model."""

    images: float | None = None  # output images produced (and billed)
    seconds: float | None = None  # output seconds of video billed
    resolution: str | None = None  # the video gear those seconds are billed at ("720p", "1080p")


@dataclass(frozen=True)
class TaskSnapshot:
    """What a provider said about a task at one moment, in neutral terms.

    Charges, where the host reports them: `credits_reserved` (a pre-charge, e.g. on create),
    `credits_final` / `cost_usd` (the settled amount; 0 for a failed task the host refunds), and `usage`
    (billed units the host reports without a price).
    """

    task_id: str
    status: TaskStatus
    output_urls: tuple[str, ...] = ()
    error: ProviderError | None = None
    credits_reserved: float | None = None
    credits_final: float | None = None
    cost_usd: float | None = None
    provider_seed: int | None = None
    progress: float | None = None
    usage: Usage | None = None
    #: seconds the task took on the host's own clock (its submit to its end), where the host reports both
    host_latency_s: float | None = None
    raw: Any = None


@dataclass(frozen=True)
class HostLimits:
    """How hard to drive a host by default: tasks in flight and creates per second (resource config overrides)."""

    max_concurrency: int
    submits_per_second: float


@dataclass(frozen=True)
class ListedTask:
    """One entry of a host's task list (DashScope): no prompt, no parameters, just what and when."""

    task_id: str
    model: str
    status: str
    created: str  # the host's own timestamp text, as listed


@dataclass(frozen=True)
class TaskPage:
    """One page of a host's task list, in the host's own order (oldest first)."""

    tasks: tuple[ListedTask, ...]
    page_no: int
    total_pages: int


@dataclass(frozen=True)
class Issue:
    """A reason a request cannot be sent to this provider/model, tied to a neutral parameter."""

    field: str
    reason: str


@dataclass(frozen=True)
class Estimate:
    credits: float | None
    usd: float | None
    #: where the figures come from: "declared" (the spec's pricing), "documented" (the catalog), ...
    source: str | None = None


class Provider(Protocol):
    """What every provider module offers (rivya.py is the reference implementation).

    - `submit` must be deterministic: the same request and key give the same bytes.
    - `presubmit_task_id`: hosts where the client names the task (Runware's taskUUID) return that id,
      so the engine records it *before* sending and can poll it after a crash instead of resending.
    - `charge_on_create`: see the attribute; a budget in that unit binds even where no price is known.
    - `supports_idempotency_key`: whether re-sending a create with the same key is safe. Where it is
      not, an attempt whose create may have reached the host is never re-sent automatically.
    - `accepted` may already be terminal (synchronous hosts).
    - `upload_kinds`: the reference kinds ("image", "video") the host's own upload API takes, declared as
      data so planning can refuse a local file up front without building a call.
    - `min_poll_interval_s`: the host's documented polling cadence; the engine's learned schedule never
      polls one task more often than this (capped by the configured `poll_max_s`).
    - `upload` returns None when the host has no upload API and takes only public HTTPS URLs; the
      engine then presigns the file from S3 storage (or refuses clearly with local storage).
      `uploaded` returns the finished Reference, or the Reference so far plus the next call of a
      multi-step upload (DashScope: policy, then a form POST to the storage host the policy names; a
      call's path may then be an absolute URL, which gets our credentials only on the provider's origin).
    """

    name: str
    key_env: str
    base_env: str
    default_base: str
    supports_idempotency_key: bool
    upload_kinds: frozenset[str]
    min_poll_interval_s: float
    default_limits: HostLimits
    #: the unit of the charge the host reports in its create answer ("credits": Rivya's and EvoLink's
    #: reservations), from which an undocumented price can be learned; None = not reported on create
    charge_on_create: str | None

    def models(self) -> tuple[str, ...]: ...
    def check(self, model: str, prompt: str, params: NeutralParams) -> list[Issue]: ...
    def prompt_fits(self, model: str, prompt: str) -> bool: ...
    def mode(self, model: str, params: NeutralParams) -> Mode: ...
    def estimate(self, model: str, params: NeutralParams) -> Estimate: ...
    def auth_headers(self, api_key: str) -> dict[str, str]: ...
    def submit(self, request: GenerationRequest, idempotency_key: str) -> HttpCall: ...
    def presubmit_task_id(self, request: GenerationRequest, idempotency_key: str) -> str | None: ...
    def accepted(self, reply: HttpReply) -> TaskSnapshot: ...
    def poll(self, task_id: str) -> HttpCall: ...
    def state(self, reply: HttpReply) -> TaskSnapshot: ...
    def error(self, reply: HttpReply) -> ProviderError: ...
    def upload(self, model: str, ref: Reference, data: bytes) -> HttpCall | None: ...
    def uploaded(self, ref: Reference, reply: HttpReply) -> Reference | tuple[Reference, HttpCall]: ...


@runtime_checkable
class ListsTasks(Protocol):
    """A host that lists an account's tasks by time and model (DashScope): how a create whose answer was
    lost is found again on a host without idempotency keys."""

    def list_tasks(self, model: str, start: datetime, end: datetime, page_no: int = 1) -> HttpCall: ...
    def listed(self, reply: HttpReply) -> TaskPage: ...


def retry_after_seconds(reply: HttpReply, now: datetime | None = None) -> float | None:
    """Retry-After in seconds, in either of its forms (RFC 9110 §10.2.3): delay-seconds or an HTTP-date."""
    value = reply.header("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None  # neither form: unknown, the caller backs off on its own schedule
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # an HTTP-date is always GMT
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_by_status(reply: HttpReply, code: str, message: str) -> ProviderError:
    """The class an HTTP status implies when the provider's own code says nothing more specific."""
    from wan_pipeline import errors as e

    status = reply.status
    kwargs: dict[str, Any] = {"code": code, "message": message, "http_status": status}
    if status == 429:
        return e.RateLimited(**kwargs, retry_after_s=retry_after_seconds(reply))
    if status == 402:
        return e.InsufficientCredits(**kwargs)
    if status in (401, 403):
        return e.AuthenticationFailed(**kwargs)
    if status == 409:
        return e.IdempotencyConflict(**kwargs)
    if status >= 500 or status in (408, 425):
        return e.Transient(**kwargs, retry_after_s=retry_after_seconds(reply))
    return e.RejectedByProvider(**kwargs)


def json_or_none(reply: HttpReply) -> Any:
    try:
        return reply.json()
    except (ValueError, UnicodeDecodeError):
        return None
