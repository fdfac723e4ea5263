"""The async task engine: submit, poll, download — with retries, rate limits, budget and the ledger.

It owns all I/O; provider modules only build and read payloads. Rules (DESIGN §9):
- an attempt is recorded before its submission and its task id right after;
- a recorded task is polled, never resubmitted; an attempt whose submission may or may not have
  reached the provider (network error, 5xx) is re-sent with the *same* idempotency key;
- the budget is checked before every submission, under a lock, counting what is already committed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from wan_pipeline import errors as e
from wan_pipeline.execution.wire import CONNECT_ERROR, Wire
from wan_pipeline.money.ledger import (
    FAILED,
    STORED,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    Attempt,
    Ledger,
    StoredOutput,
    held_credits,
    held_usd,
    utcnow,
)
from wan_pipeline.outputs.media import Expectation, MediaInfo, inspect_media
from wan_pipeline.outputs.storage import Storage
from wan_pipeline.planning.plan import PlannedTask, canonical_json
from wan_pipeline.planning.spec import Budget
from wan_pipeline.planning.table import safe_name
from wan_pipeline.providers.base import HttpCall, HttpReply, Provider, Reference, TaskSnapshot, TaskStatus
from wan_pipeline.providers.catalog import find_model
from wan_pipeline.providers.mediatypes import EXTENSIONS
from wan_pipeline.providers.sizes import image_size, video_size

#: failures that will not change by asking again with the same request
PERMANENT = (e.ContentRejected.__name__, e.RejectedByProvider.__name__, e.IdempotencyConflict.__name__)
#: failures where the provider may hold a task we never heard about: the same key must be reused
AMBIGUOUS = (e.Transient.__name__, e.RateLimited.__name__, e.AmbiguousSubmission.__name__)
#: failures that prove the create was not acted on (it was refused before any work)
DEFINITELY_NOT_SENT = (
    e.RateLimited.__name__,
    e.BudgetExceeded.__name__,
    e.InsufficientCredits.__name__,
    e.AuthenticationFailed.__name__,
)


@dataclass(frozen=True)
class EngineSettings:
    max_concurrency: int = 4
    submits_per_second: float = 2.0
    poll_initial_s: float = 2.5
    poll_max_s: float = 10.0
    poll_growth: float = 1.5
    poll_deadline_s: float = 900.0
    http_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    generation_attempts: int = 2  # per run, per output, for provider-side failures
    download_retries: int = 4
    request_timeout_s: float = 60.0
    poll_deadline_video_s: float = 3600.0
    #: re-send a create that may have reached a host without idempotency keys (explicit opt-in)
    resubmit_ambiguous: bool = False


@dataclass
class Outcome:
    task: PlannedTask
    status: str  # "stored" | "failed" | "pending"
    attempt: Attempt | None = None
    outputs: list[StoredOutput] = field(default_factory=list)
    error: e.ProviderError | None = None
    submitted_now: int = 0
    latency_s: float | None = None


EventSink = Callable[[str, PlannedTask, str], None]


class RateGate:
    """Spaces submissions and honours a shared pause after a 429 (Retry-After applies to all calls)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next_submit = 0.0
        self._pause_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    async def before_call(self) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def before_submit(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = max(self._next_submit - now, self._pause_until - now, 0.0)
            self._next_submit = max(now, self._next_submit) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base·2^retry)]."""
    return rng.uniform(0, min(cap, base * (2**retry)))


class TaskEngine:
    def __init__(
        self,
        provider: Provider,
        wire: Wire,
        ledger: Ledger,
        storage: Storage,
        budget: Budget,
        settings: EngineSettings = EngineSettings(),
        run_id: str | None = None,
        on_event: EventSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.wire = wire
        self.ledger = ledger
        self.storage = storage
        self.budget = budget
        self.settings = settings
        self.run_id = run_id
        self.on_event = on_event or (lambda kind, task, detail: None)
        self.rng = rng or random.Random()
        self.gate = RateGate(settings.submits_per_second)
        self._budget_lock = asyncio.Lock()
        self._stop: e.ProviderError | None = None

    async def run(self, tasks: list[PlannedTask]) -> list[Outcome]:
        sem = asyncio.Semaphore(self.settings.max_concurrency)

        async def one(task: PlannedTask) -> Outcome:
            async with sem:
                try:
                    return await self._run_task(task)
                except e.ProviderError as err:
                    self.on_event("failed", task, str(err))
                    return Outcome(task, "failed", self.ledger.latest(task.identity), error=err)
                except e.ConfigError as err:
                    # e.g. a result URL we refuse to fetch: this output fails, the others go on.
                    failure = e.RejectedByProvider(code="configuration", message=str(err))
                    self.on_event("failed", task, str(failure))
                    return Outcome(task, "failed", self.ledger.latest(task.identity), error=failure)

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    # -- one output ----------------------------------------------------------------------------
    async def _run_task(self, task: PlannedTask) -> Outcome:
        last = self.ledger.latest(task.identity)
        started = time.monotonic()
        if last is not None and last.state == STORED:
            outputs = self.ledger.outputs(task.identity, last.attempt)
            if outputs and all(
                self.storage.size(_relpath(task, o.output_index, o.mime_type)) == o.bytes for o in outputs
            ):
                return Outcome(task, "stored", last, outputs)
            last.state = SUCCEEDED  # a stored file went missing: fetch it again from the same task

        submitted_now = 0
        tries_this_run = 0
        attempt_no = self._next_attempt(last)
        if isinstance(attempt_no, Outcome):
            return attempt_no
        while True:
            current = self.ledger.latest(task.identity)
            if current is None or current.attempt != attempt_no or current.state in (SUBMITTING, FAILED):
                current, did_send = await self._submit(task, attempt_no)
                submitted_now += did_send
                tries_this_run += 1
            snap = await self._await_terminal(task, current)
            if snap is None:
                late = e.PollDeadline(
                    code="poll_deadline", message=f"task {current.task_id} still running; resumed next run"
                )
                return Outcome(
                    task, "pending", self.ledger.latest(task.identity), error=late, submitted_now=submitted_now
                )
            if snap.status == TaskStatus.SUCCEEDED:
                outputs = await self._store_outputs(task, current, snap)
                self.on_event("stored", task, f"{len(outputs)} file(s)")
                return Outcome(
                    task,
                    "stored",
                    self.ledger.latest(task.identity),
                    outputs,
                    submitted_now=submitted_now,
                    latency_s=time.monotonic() - started,
                )
            err = snap.error or e.GenerationFailed(code="generation_failed", message="task failed")
            self.on_event("task_failed", task, str(err))
            if isinstance(err, e.GenerationFailed) and tries_this_run < self.settings.generation_attempts:
                attempt_no += 1  # same seed, new attempt, new idempotency key; the old one stays in lineage
                continue
            return Outcome(task, "failed", self.ledger.latest(task.identity), error=err, submitted_now=submitted_now)

    def _next_attempt(self, last: Attempt | None) -> int | Outcome:
        if last is None:
            return 1
        if last.state in (SUBMITTED, SUCCEEDED, SUBMITTING):
            return last.attempt  # resume: poll the recorded task, or re-send with the same key
        if last.state == FAILED:
            if last.error_class in AMBIGUOUS or last.error_class is None:
                # The provider may hold it: same key again, or (client-named task) ask for it by its id.
                return last.attempt
            if last.error_class in PERMANENT:
                return (
                    last.attempt
                )  # _submit answers with the recorded error; asking again would be refused (or billed)
            return last.attempt + 1
        return last.attempt

    async def _submit(self, task: PlannedTask, attempt_no: int) -> tuple[Attempt, int]:
        """Create the provider task for this attempt, or adopt the one an earlier run already created."""
        if self._stop is not None:
            raise type(self._stop)(code=self._stop.code, message=f"not submitted: {self._stop.message}")
        previous = self.ledger.latest(task.identity)
        same = previous if previous is not None and previous.attempt == attempt_no else None
        if same is not None and same.state == FAILED and same.error_class in PERMANENT:
            raise _rebuild(same)
        if same is not None and same.state in (SUBMITTING, FAILED) and same.task_id is None:
            # The create may have reached the host: re-send the recorded bytes, never a rebuilt request.
            if (
                not self.provider.supports_idempotency_key
                and same.error_class not in DEFINITELY_NOT_SENT
                and not self.settings.resubmit_ambiguous
            ):
                err = e.AmbiguousSubmission(
                    code="ambiguous_submission",
                    message=f"{task.provider} may already hold a task for this output (no idempotency key support); "
                    "check the provider's dashboard, then re-run with --resubmit-ambiguous to submit again",
                )
                self._fail(task, attempt_no, err)
                raise err
            call = self._recorded_call(task, same)
            async with self._budget_lock:
                self._check_budget(task, attempt_no)
                self.ledger.update(
                    task.identity,
                    attempt_no,
                    state=SUBMITTING,
                    error_code=None,
                    error_class=None,
                    error_message=None,
                    run_id=self.run_id,
                )
        elif same is not None and same.task_id is not None and same.state in (SUBMITTING, FAILED):
            # The client named the task before sending (Runware): ask for it before sending again.
            adopted = await self._adopt_presubmitted(task, same)
            if adopted is not None:
                return adopted, 0
            call = HttpCall.from_record(same.call_json or "")
        else:
            call, presubmitted = await self._build_call(task, attempt_no)
            attempt = self._new_attempt(task, attempt_no, call, presubmitted)
            async with self._budget_lock:
                # durable before a byte leaves this process; the budget check is atomic with the write
                self.ledger.begin_attempt(attempt, check=lambda: self._check_budget(task, attempt_no))
        try:
            reply = await self._send(call, submission=(task.identity, attempt_no))
            snap = self.provider.accepted(reply)
        except e.ProviderError as err:
            if err.stops_submissions:
                self._stop = err
            named = self.ledger.latest(task.identity)
            if (
                named is not None
                and named.attempt == attempt_no
                and named.task_id is not None
                and isinstance(err, e.Transient | e.IdempotencyConflict)
            ):
                # A client-named task whose create answer was lost (or whose re-send the host refused as a
                # duplicate): the host may hold it, so ask for it by name before giving up on it.
                adopted = await self._adopt_presubmitted(task, named)
                if adopted is not None:
                    return adopted, 1
            self._fail(task, attempt_no, err)
            raise
        self.ledger.update(
            task.identity,
            attempt_no,
            state=SUBMITTED,
            task_id=snap.task_id,
            submitted_at=utcnow(),
            credits_reserved=snap.credits_reserved,
        )
        self.on_event("submitted", task, snap.task_id)
        latest = self.ledger.latest(task.identity)
        assert latest is not None
        if snap.status != TaskStatus.PENDING:  # a synchronous host answered with the result itself
            self._record_terminal(task, latest, snap)
            latest = self.ledger.latest(task.identity)
            assert latest is not None
        return latest, 1

    def _recorded_call(self, task: PlannedTask, attempt: Attempt) -> HttpCall:
        if attempt.call_json:
            return HttpCall.from_record(attempt.call_json)
        # A ledger written before whole calls were recorded: its body is still the exact wire payload.
        rebuilt = self.provider.submit(task.request(), attempt.idempotency_key)
        return replace(rebuilt, json_body=json.loads(attempt.request_json))

    async def _build_call(self, task: PlannedTask, attempt_no: int) -> tuple[HttpCall, str | None]:
        references = await self._prepare_references(task)
        # The trace id names the output, not the attempt: a retry differs from its failed attempt only by its key.
        request = replace(
            task.request(references), client_request_id=f"{task.dataset}/{task.prompt_id}/v{task.variant}"
        )
        key = task.idempotency_key(attempt_no)
        return self.provider.submit(request, key), self.provider.presubmit_task_id(request, key)

    def _new_attempt(self, task: PlannedTask, attempt_no: int, call: HttpCall, task_id: str | None) -> Attempt:
        return Attempt(
            identity=task.identity,
            attempt=attempt_no,
            dataset=task.dataset,
            prompt_id=task.prompt_id,
            variant=task.variant,
            fingerprint=task.fingerprint,
            provider=task.provider,
            model=task.model,
            mode=task.mode.value,
            prompt=task.prompt,
            params_json=canonical_json(task.params.effective()),
            seed=task.seed,
            seed_source=task.seed_source,
            extra_json=canonical_json(task.extra),
            idempotency_key=task.idempotency_key(attempt_no),
            request_json=call.body_json(),
            call_json=call.to_record(),
            state=SUBMITTING,
            task_id=task_id,
            credits_estimate=task.estimate.credits,
            cost_usd=task.estimate.usd,
            cost_source="catalog" if task.estimate.usd is not None else None,
            run_id=self.run_id,
        )

    async def _adopt_presubmitted(self, task: PlannedTask, attempt: Attempt) -> Attempt | None:
        assert attempt.task_id is not None
        try:
            snap = self.provider.state(await self._send(self.provider.poll(attempt.task_id)))
        except e.RejectedByProvider:
            return None  # the host never saw it: send the recorded call
        self.ledger.update(
            task.identity, attempt.attempt, state=SUBMITTED, submitted_at=attempt.submitted_at or utcnow()
        )
        latest = self.ledger.latest(task.identity)
        assert latest is not None
        if snap.status != TaskStatus.PENDING:
            self._record_terminal(task, latest, snap)
        return self.ledger.latest(task.identity)

    async def _prepare_references(self, task: PlannedTask) -> tuple[Reference, ...]:
        """Local reference files reach the host through its upload API, or as presigned S3 URLs."""
        out: list[Reference] = []
        for ref in task.references:
            if ref.url is not None or ref.path is None:
                out.append(ref)
                continue
            data = ref.path.read_bytes()
            call = self.provider.upload(task.model, ref, data)
            if call is not None:
                out.append(await self._upload(replace(ref, data=data), call))
                continue
            presign = getattr(self.storage, "presign", None)
            if presign is None:
                raise e.ConfigError(
                    f"{task.provider} takes reference media only as public HTTPS URLs and has no upload API; "
                    f"'{ref.source}' is a local file: set `storage: s3://bucket/prefix` so it can be served from "
                    "a presigned URL, or give an https:// URL in the table"
                )
            relpath = f"references/{ref.sha256}{EXTENSIONS.get(ref.mime_type or '', '')}"
            self.storage.put(relpath, data, ref.mime_type or "application/octet-stream")
            out.append(replace(ref, url=presign(relpath)))
        return tuple(out)

    async def _upload(self, ref: Reference, call: HttpCall, max_steps: int = 4) -> Reference:
        """Run an upload, one step or several (each step's answer may name the next call)."""
        for _ in range(max_steps):
            result = self.provider.uploaded(ref, await self._send(call))
            if isinstance(result, Reference):
                return replace(result, data=None)
            ref, call = result
        raise e.Transient(code="upload_failed", message=f"upload of '{ref.source}' did not finish in {max_steps} steps")

    def _fail(self, task: PlannedTask, attempt_no: int, err: e.ProviderError) -> None:
        self.ledger.update(
            task.identity,
            attempt_no,
            state=FAILED,
            error_code=err.code,
            error_class=type(err).__name__,
            error_message=err.message,
            completed_at=utcnow(),
        )

    def _check_budget(self, task: PlannedTask, attempt_no: int) -> None:
        held = self.ledger.committed_credits(task.dataset)
        # Re-sending an attempt already counted must not count it twice.
        same = next((a for a in self.ledger.attempts(task.identity) if a.attempt == attempt_no), None)
        already = held_credits(same) if same is not None else 0.0
        already_usd = held_usd(same) if same is not None else 0.0
        cost = task.estimate.credits or 0.0
        if self.budget.max_credits is not None and held - already + cost > self.budget.max_credits + 1e-9:
            raise e.BudgetExceeded(
                code="budget_exceeded",
                message=f"{held - already:g} credits committed + {cost:g} would pass "
                f"max_credits {self.budget.max_credits:g}",
            )
        if self.budget.max_usd is not None and task.estimate.usd is not None:
            spent = self.ledger.committed_usd(task.dataset) - already_usd
            if spent + task.estimate.usd > self.budget.max_usd + 1e-9:
                raise e.BudgetExceeded(
                    code="budget_exceeded",
                    message=f"${spent:.4f} committed + ${task.estimate.usd:.4f} would pass max_usd",
                )

    async def _send(self, call: HttpCall, submission: tuple[str, int] | None = None) -> HttpReply:
        """Send with retries by error class; re-sends are byte-identical (same idempotency key)."""
        retry = 0
        while True:
            if submission is not None:
                await self.gate.before_submit()
            else:
                await self.gate.before_call()
            try:
                if submission is not None:
                    self.ledger.count_submit_call(*submission)
                reply = await self.wire.send(call, timeout_s=self.settings.request_timeout_s)
                if reply.status < 400:
                    return reply
                err = self.provider.error(reply)
            except e.Transient as exc:
                err = exc
            if not err.retryable or retry >= self.settings.http_retries:
                raise err
            if (
                submission is not None
                and not self.provider.supports_idempotency_key
                and isinstance(err, e.Transient)
                and err.code != CONNECT_ERROR
            ):
                raise err  # the create may have been acted on; without a key, re-sending could buy it twice
            if isinstance(err, e.RateLimited) and err.retry_after_s is not None:
                delay = err.retry_after_s
                self.gate.pause(delay)
            else:
                delay = backoff_delay(retry, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)
                if err.retry_after_s is not None:
                    delay = max(delay, err.retry_after_s)
            retry += 1
            await asyncio.sleep(delay)

    async def _await_terminal(self, task: PlannedTask, attempt: Attempt) -> TaskSnapshot | None:
        assert attempt.task_id is not None
        interval = self.settings.poll_initial_s
        video = expectation(task).kind == "video"
        deadline = time.monotonic() + (self.settings.poll_deadline_video_s if video else self.settings.poll_deadline_s)
        first = attempt.state == SUBMITTED
        while True:
            if first:
                await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            first = True
            try:
                reply = await self._send(self.provider.poll(attempt.task_id))
                snap = self.provider.state(reply)
            except e.ProviderError as err:
                if isinstance(err, e.Transient) or err.retryable:
                    snap = None
                else:
                    # A refused poll (revoked key, 404, ...) says nothing about the paid task itself: it stays
                    # recorded as it was so the next run polls it again instead of buying it a second time.
                    if err.stops_submissions:
                        self._stop = err
                    raise
            if snap is not None and snap.status != TaskStatus.PENDING:
                self._record_terminal(task, attempt, snap)
                return snap
            if time.monotonic() >= deadline:
                return None
            interval = min(interval * self.settings.poll_growth, self.settings.poll_max_s)

    def _record_terminal(self, task: PlannedTask, attempt: Attempt, snap: TaskSnapshot) -> None:
        values: dict[str, object] = {"completed_at": utcnow()}
        if snap.credits_reserved is not None:
            values["credits_reserved"] = snap.credits_reserved
        if snap.credits_final is not None:
            values["credits_final"] = snap.credits_final
        if snap.cost_usd is not None:
            values["cost_usd"] = snap.cost_usd
            values["cost_source"] = "provider"
        elif snap.credits_final is not None:
            values["cost_source"] = "provider" if task.estimate.usd is None else "catalog"
        if snap.provider_seed is not None:
            values["provider_seed"] = snap.provider_seed
        if snap.status == TaskStatus.SUCCEEDED:
            values.update(state=SUCCEEDED, output_urls=json.dumps(list(snap.output_urls)))
        else:
            err = snap.error or e.GenerationFailed(code="generation_failed", message="task failed")
            values.update(state=FAILED, error_code=err.code, error_class=type(err).__name__, error_message=err.message)
        self.ledger.update(task.identity, attempt.attempt, **values)

    async def _store_outputs(self, task: PlannedTask, attempt: Attempt, snap: TaskSnapshot) -> list[StoredOutput]:
        expect = expectation(task)
        stored: list[StoredOutput] = []
        for index, url in enumerate(snap.output_urls):
            data, info = await self._download_verified(task, url, expect)
            relpath = _relpath(task, index, info.mime_type)
            uri = self.storage.put(relpath, data, info.mime_type)
            out = StoredOutput(
                identity=task.identity,
                attempt=attempt.attempt,
                output_index=index,
                source_url=url.split("?")[0],
                media_uri=uri,
                media_sha256=info.sha256,
                mime_type=info.mime_type,
                bytes=info.bytes,
                width=info.width,
                height=info.height,
                duration_s=info.duration_s,
                fps=info.fps,
                warnings="; ".join(info.warnings) or None,
                stored_at=utcnow(),
            )
            self.ledger.record_output(out)
            stored.append(out)
        self.ledger.update(task.identity, attempt.attempt, state=STORED)
        return stored

    async def _download_verified(self, task: PlannedTask, url: str, expect: Expectation) -> tuple[bytes, MediaInfo]:
        retry = 0
        while True:
            try:
                data = await self.wire.download(url)
                return data, inspect_media(data, expect)
            except (e.Transient, e.MediaInvalid) as err:
                if retry >= self.settings.download_retries:
                    raise
                self.on_event("download_retry", task, str(err))
                await asyncio.sleep(
                    backoff_delay(retry, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)
                )
                retry += 1


def _rebuild(attempt: Attempt) -> e.ProviderError:
    cls: type[e.ProviderError] = getattr(e, attempt.error_class or "ProviderError", e.ProviderError)
    return cls(code=attempt.error_code or "failed", message=attempt.error_message or "")


def _relpath(task: PlannedTask, index: int, mime: str) -> str:
    ext = EXTENSIONS.get(mime, ".bin")
    name = safe_name(task.prompt_id)
    return f"media/{name}/{name}__v{task.variant}__{index}__{task.fingerprint[:10]}{ext}"


def expectation(task: PlannedTask) -> Expectation:
    """What the output should look like; outputs that follow an input's geometry are not held to a size."""
    info = find_model(task.provider, task.model)
    p = task.params
    kind = info.kind if info else "image"
    duration = float(p.duration or (info.default_duration if info and info.default_duration else 0)) or None
    follows_input = task.mode.value.endswith("edit") or task.mode.value == "image_to_video"
    if p.width and p.height:
        return Expectation(kind, None, (p.width, p.height), duration)
    if follows_input:
        return Expectation(kind, None, None, duration if kind == "video" else None)
    aspect = p.aspect_ratio or (info.default_aspect_ratio if info else None)
    gear = p.resolution or (info.default_resolution if info else None)
    if kind == "video":
        size = video_size(aspect, gear) if aspect and gear in ("720p", "1080p") else None
        return Expectation(kind, aspect, size, duration)
    if aspect and gear in ("1K", "2K", "4K"):
        return Expectation(kind, aspect, image_size(aspect, gear))
    return Expectation(kind, aspect)
