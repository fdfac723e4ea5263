"""The task engine against the in-process emulator: money, failures and resume (DESIGN §9, §10).

Every test drives `TaskEngine` directly with an `InProcessTransport` over an `EmulatorState` it owns, so
it can inject faults and read back what the "provider" received and billed (`state.report()`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FAST_ENGINE, write_dataset
from PIL import Image

from wan_pipeline import errors as e
from wan_pipeline.emulator.app import IN_PROCESS_BASE, InProcessTransport, in_process
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.state import EmulatorConfig
from wan_pipeline.execution.engine import Outcome, TaskEngine
from wan_pipeline.execution.session import open_ledger
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, SUBMITTING, Attempt, Ledger, surely_unbilled
from wan_pipeline.outputs.lineage import lineage_table, write_lineage
from wan_pipeline.outputs.storage import LocalStorage
from wan_pipeline.planning.plan import Plan, PlannedTask, build_plan, canonical_json
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.registry import get_provider

CREDITS_PER_TASK = 5  # rivya wan-2-7-image, FIXED (catalog and emulator agree)
API_KEY = "emulator-test-key"

FAST = FAST_ENGINE


def fast_emulator(**changes: Any) -> EmulatorConfig:
    return EmulatorConfig(queue_s=0, process_s=0.02, faults=FaultConfig(retry_after_s=0.05), **changes)


class Harness:
    """One emulated provider (its state outlives engine runs) and a way to run fresh engines against it."""

    def __init__(self, plan: Plan, config: EmulatorConfig | None = None) -> None:
        self.plan = plan
        self.spec = plan.spec
        self.state, self.transport = in_process(config or fast_emulator())
        self.provider = get_provider(self.spec.provider)
        self.storage = LocalStorage(self.spec.storage_root)
        self.runs = 0

    @property
    def tasks(self) -> list[PlannedTask]:
        return list(self.plan.tasks)

    def ledger(self) -> Ledger:
        return open_ledger(self.spec)

    def faults(self, retry_after_s: float = 0.05, **next_counts: int) -> None:
        """Force the next N matching requests of each named kind to fail (e.g. `drop=2`)."""
        rules = {kind: {"next": n} for kind, n in next_counts.items()}
        self.state.faults.configure(FaultConfig.model_validate({**rules, "retry_after_s": retry_after_s}))

    def report(self) -> dict[str, Any]:
        return self.state.report()

    async def run(
        self,
        tasks: Iterable[PlannedTask] | None = None,
        *,
        api_key: str = API_KEY,
        transport: httpx.AsyncBaseTransport | None = None,
        **settings: Any,
    ) -> list[Outcome]:
        """A fresh engine and a freshly opened ledger, as a new process would have."""
        self.runs += 1
        ledger = self.ledger()
        try:
            async with httpx.AsyncClient(transport=transport or self.transport) as client:
                wire = Wire(client, IN_PROCESS_BASE, self.provider.auth_headers(api_key))
                engine = TaskEngine(
                    self.provider, wire, ledger, self.storage, self.spec.budget, replace(FAST, **settings),
                    run_id=f"run-{self.runs}", rng=random.Random(self.runs),
                )
                return await engine.run(list(self.tasks if tasks is None else tasks))
        finally:
            ledger.close()


#: ledgers under tmp_path, no provider variables from the shell (conftest's e2e_env)
pytestmark = pytest.mark.usefixtures("e2e_env")


def engine_rows(prompts: int) -> list[dict[str, str]]:
    return [{"prompt_id": f"p{i:02d}", "prompt": f"A lighthouse number {i} at dusk", "note": f"row {i}"}
            for i in range(prompts)]


@pytest.fixture
def harness(tmp_path: Path) -> Callable[..., Harness]:
    """harness(prompts, config=EmulatorConfig, variants=, budget=) -> a planned dataset and its emulator."""

    def build(prompts: int = 3, config: EmulatorConfig | None = None, **spec: Any) -> Harness:
        # 1K keeps the emulator's rendering fast
        path = write_dataset(tmp_path, engine_rows(prompts), name="engine_test", endpoint="emulator",
                             params={"aspect_ratio": "1:1", "resolution": "1K"}, **spec)
        return Harness(build_plan(load_spec(path)), config)

    return build


def by_status(outcomes: list[Outcome], status: str) -> list[Outcome]:
    return [o for o in outcomes if o.status == status]


def assert_one_task_per_key(report: dict[str, Any]) -> None:
    assert report["tasks_by_idempotency_key"], "no task was created"
    assert set(report["tasks_by_idempotency_key"].values()) == {1}
    assert set(report["tasks_by_body"].values()) == {1}, "the same request body was bought twice"


def assert_stored_and_decodes(outcome: Outcome) -> None:
    assert outcome.status == "stored", outcome.error
    assert outcome.outputs
    for out in outcome.outputs:
        data = Path(out.media_uri).read_bytes()
        assert hashlib.sha256(data).hexdigest() == out.media_sha256
        assert len(data) == out.bytes
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.size == (out.width, out.height)


def lineage_rows(h: Harness) -> list[dict[str, Any]]:
    ledger = h.ledger()
    try:
        return lineage_table(ledger, h.spec.name).to_pylist()
    finally:
        ledger.close()


def attempts_of(h: Harness, task: PlannedTask) -> list[Attempt]:
    ledger = h.ledger()
    try:
        return ledger.attempts(task.identity)
    finally:
        ledger.close()


def submit_calls_recorded(h: Harness) -> int:
    ledger = h.ledger()
    try:
        return sum(a.submit_calls for a in ledger.all_attempts(h.spec.name))
    finally:
        ledger.close()


# -- the happy path and plain re-runs -------------------------------------------------------------


async def test_every_planned_output_is_stored_once_decodes_and_matches_lineage(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=3, variants=2)
    n = len(h.tasks)
    assert n == 6

    outcomes = await h.run()

    assert [o.status for o in outcomes] == ["stored"] * n
    for o in outcomes:
        assert_stored_and_decodes(o)
        assert o.submitted_now == 1
    files = [p for p in (Path(h.spec.storage_root) / "media").rglob("*") if p.is_file()]
    assert len(files) == n
    assert not [p for p in files if p.name.startswith(".tmp-")]

    report = h.report()
    assert report["tasks_created"] == n
    assert report["submit_requests"] == n
    assert_one_task_per_key(report)
    assert report["credits_charged"] == CREDITS_PER_TASK * n
    assert report["credits_refunded"] == 0
    assert submit_calls_recorded(h) == n

    rows = lineage_rows(h)
    assert len(rows) == n
    assert {r["status"] for r in rows} == {"succeeded"}
    assert sum(r["credits_final"] for r in rows) == report["credits_charged"]
    sha_on_disk = {r["media_uri"]: hashlib.sha256(Path(r["media_uri"]).read_bytes()).hexdigest() for r in rows}
    assert all(sha_on_disk[r["media_uri"]] == r["media_sha256"] for r in rows)
    assert {(r["prompt_id"], r["variant"]) for r in rows} == {(t.prompt_id, t.variant) for t in h.tasks}
    assert {r["task_id"] for r in rows} == {t["id"] for t in report["tasks"]}
    # request_json is the wire payload with the planned seed, and the key it went out with is the planned one
    for task in h.tasks:
        (row,) = [r for r in rows if r["identity"] == task.identity]
        assert json.loads(row["request_json"])["params"]["seed"] == task.seed
        assert row["idempotency_key"] == task.idempotency_key(1)
        assert report["requests_by_idempotency_key"][task.idempotency_key(1)] == 1


async def test_rerun_with_a_fresh_engine_submits_nothing_and_reports_everything_stored(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=4)
    first = await h.run()
    assert [o.status for o in first] == ["stored"] * 4
    before = h.report()

    second = await h.run()

    assert [o.status for o in second] == ["stored"] * 4
    assert [o.submitted_now for o in second] == [0] * 4
    assert {o.outputs[0].media_sha256 for o in second} == {o.outputs[0].media_sha256 for o in first}
    after = h.report()
    assert after["tasks_created"] == before["tasks_created"] == 4
    assert after["submit_requests"] == before["submit_requests"] == 4
    assert after["credits_charged"] == before["credits_charged"] == 4 * CREDITS_PER_TASK


async def test_a_stored_file_that_went_missing_is_fetched_again_from_the_same_task(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=2)
    first = await h.run()
    lost = Path(first[0].outputs[0].media_uri)
    lost.unlink()

    second = await h.run()

    assert [o.status for o in second] == ["stored", "stored"]
    assert lost.is_file()
    assert_stored_and_decodes(second[0])
    assert second[0].attempt is not None and second[0].attempt.task_id == first[0].attempt.task_id  # type: ignore[union-attr]
    report = h.report()
    assert report["tasks_created"] == 2
    assert report["submit_requests"] == 2


# -- transient trouble on the wire ----------------------------------------------------------------


async def test_rate_limited_submissions_wait_retry_after_and_create_one_task_per_identity(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=3)
    h.faults(rate_limit=2, retry_after_s=0.3)

    started = time.monotonic()
    outcomes = await h.run()
    elapsed = time.monotonic() - started

    assert [o.status for o in outcomes] == ["stored"] * 3
    report = h.report()
    assert report["faults_injected"] == {"rate_limit": 2}
    # no task can be polled before a submission succeeds, so both 429s hit submissions
    assert report["submit_requests"] == 3 + 2
    assert max(report["requests_by_idempotency_key"].values()) > 1
    assert report["tasks_created"] == 3
    assert_one_task_per_key(report)
    assert report["credits_charged"] == 3 * CREDITS_PER_TASK
    assert elapsed >= 0.3  # Retry-After was honoured (RateGate pause), not retried at backoff speed
    assert submit_calls_recorded(h) == report["submit_requests"]


async def test_server_errors_on_submit_are_retried_with_the_same_key_and_bill_once(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=3)
    h.faults(server_error=3)

    outcomes = await h.run()

    assert [o.status for o in outcomes] == ["stored"] * 3
    report = h.report()
    assert report["faults_injected"] == {"server_error": 3}
    assert report["submit_requests"] == 3 + 3
    assert report["tasks_created"] == 3
    assert_one_task_per_key(report)
    assert report["credits_charged"] == 3 * CREDITS_PER_TASK
    assert set(report["requests_by_idempotency_key"]) == {t.idempotency_key(1) for t in h.tasks}


async def test_connection_dropped_after_the_task_was_created_adopts_that_task(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=3)
    h.faults(drop=2)

    outcomes = await h.run()

    assert [o.status for o in outcomes] == ["stored"] * 3
    report = h.report()
    assert report["faults_injected"] == {"drop": 2}
    assert report["tasks_created"] == 3
    assert report["submit_requests"] == 3 + 2
    assert sorted(report["requests_by_idempotency_key"].values()) == [1, 2, 2]
    assert_one_task_per_key(report)
    assert report["credits_charged"] == 3 * CREDITS_PER_TASK
    for o in outcomes:
        assert o.attempt is not None and o.attempt.attempt == 1
        assert o.attempt.task_id in {t["id"] for t in report["tasks"]}
    assert sum(r["credits_final"] for r in lineage_rows(h)) == report["credits_charged"]


async def test_truncated_downloads_are_retried_without_buying_the_task_again(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=2)
    h.faults(truncate=2)

    outcomes = await h.run()

    assert [o.status for o in outcomes] == ["stored", "stored"]
    for o in outcomes:
        assert_stored_and_decodes(o)
    report = h.report()
    assert report["faults_injected"] == {"truncate": 2}
    assert report["tasks_created"] == 2
    assert report["submit_requests"] == 2
    assert report["credits_charged"] == 2 * CREDITS_PER_TASK


# -- provider-side failures -----------------------------------------------------------------------


async def test_failed_generation_is_resubmitted_with_the_same_seed_and_a_new_key(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=3)
    h.faults(fail_task=1)

    outcomes = await h.run(generation_attempts=2, max_concurrency=1)

    assert [o.status for o in outcomes] == ["stored"] * 3
    (retried,) = [o for o in outcomes if o.submitted_now == 2]
    attempts = attempts_of(h, retried.task)
    assert [a.attempt for a in attempts] == [1, 2]
    assert [a.state for a in attempts] == [FAILED, STORED]
    assert attempts[0].error_class == "GenerationFailed"
    assert attempts[0].credits_final == 0  # refunded by the provider
    assert attempts[0].task_id != attempts[1].task_id
    assert attempts[0].idempotency_key != attempts[1].idempotency_key
    bodies = [json.loads(a.request_json) for a in attempts]
    assert bodies[0]["params"] == bodies[1]["params"] and bodies[0]["prompt"] == bodies[1]["prompt"]
    assert bodies[0]["params"]["seed"] == retried.task.seed

    report = h.report()
    assert report["tasks_created"] == 4
    assert set(report["tasks_by_idempotency_key"].values()) == {1}
    assert report["credits_charged"] == 4 * CREDITS_PER_TASK
    assert report["credits_refunded"] == CREDITS_PER_TASK

    rows = [r for r in lineage_rows(h) if r["identity"] == retried.task.identity]
    assert sorted((r["attempt"], r["status"]) for r in rows) == [(1, "failed"), (2, "succeeded")]
    failed_row = next(r for r in rows if r["status"] == "failed")
    assert failed_row["error_code"] == "generation_failed"
    assert failed_row["error_class"] == "GenerationFailed"
    assert {r["seed"] for r in rows} == {retried.task.seed}
    assert sum(r["credits_final"] for r in lineage_rows(h)) == report["credits_net"]


async def test_one_permanent_failure_keeps_the_others_and_a_rerun_resubmits_only_it(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=3)
    h.faults(fail_task=1)

    first = await h.run(generation_attempts=1)

    assert sorted(o.status for o in first) == ["failed", "stored", "stored"]
    (failed,) = by_status(first, "failed")
    assert isinstance(failed.error, e.GenerationFailed)
    for o in by_status(first, "stored"):
        assert_stored_and_decodes(o)
    assert h.report()["tasks_created"] == 3

    second = await h.run(generation_attempts=1)

    assert [o.status for o in second] == ["stored"] * 3
    assert sum(o.submitted_now for o in second) == 1
    report = h.report()
    assert report["tasks_created"] == 4
    assert report["submit_requests"] == 4
    assert set(report["tasks_by_idempotency_key"].values()) == {1}
    assert [a.attempt for a in attempts_of(h, failed.task)] == [1, 2]


async def test_content_rejection_is_permanent_and_never_resubmitted(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=2)
    h.faults(reject_content=1)

    first = await h.run(generation_attempts=3)

    (rejected,) = by_status(first, "failed")
    assert isinstance(rejected.error, e.ContentRejected)
    assert rejected.submitted_now == 1
    assert len(by_status(first, "stored")) == 1
    assert h.report()["tasks_created"] == 2

    second = await h.run(generation_attempts=3)

    (again,) = by_status(second, "failed")
    assert again.task.identity == rejected.task.identity
    assert isinstance(again.error, e.ContentRejected)
    assert again.submitted_now == 0
    report = h.report()
    assert report["tasks_created"] == 2
    assert report["submit_requests"] == 2
    assert [a.attempt for a in attempts_of(h, rejected.task)] == [1]


# -- money: credits and budget --------------------------------------------------------------------


async def test_insufficient_credits_stops_all_further_submissions(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=4)
    h.state.balance = 12  # pays for two tasks of 5

    outcomes = await h.run(max_concurrency=1)

    assert sorted(o.status for o in outcomes) == ["failed", "failed", "stored", "stored"]
    for o in by_status(outcomes, "failed"):
        assert isinstance(o.error, e.InsufficientCredits)
    report = h.report()
    assert report["tasks_created"] == 2
    assert report["credits_charged"] == 2 * CREDITS_PER_TASK
    # the third submission got the 402; the fourth never left the process
    assert report["submit_requests"] == 3
    assert len(report["requests_by_idempotency_key"]) == 3
    ledger = h.ledger()
    try:
        recorded = ledger.all_attempts(h.spec.name)
    finally:
        ledger.close()
    # the fourth was never sent: recorded (failed, unbilled) if it was waiting for its slot when the 402 came
    assert sorted(a.state for a in recorded)[-2:] == [STORED, STORED] and len(recorded) in (3, 4)
    assert all(surely_unbilled(a) for a in recorded if a.state == FAILED)


async def test_budget_stops_submissions_before_they_reach_the_provider(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=4, budget={"max_credits": 10})

    outcomes = await h.run()

    assert sorted(o.status for o in outcomes) == ["failed", "failed", "stored", "stored"]
    for o in by_status(outcomes, "failed"):
        assert isinstance(o.error, e.BudgetExceeded)
        assert o.submitted_now == 0
        assert attempts_of(h, o.task) == []
    report = h.report()
    assert report["tasks_created"] == 2
    assert report["submit_requests"] == 2
    assert report["credits_charged"] == 10

    again = await h.run()

    assert sorted(o.status for o in again) == ["failed", "failed", "stored", "stored"]
    assert h.report()["submit_requests"] == 2


async def test_refunded_failures_do_not_count_against_the_budget(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=2, budget={"max_credits": 10})
    h.faults(fail_task=1)

    outcomes = await h.run(generation_attempts=2, max_concurrency=1)

    assert [o.status for o in outcomes] == ["stored", "stored"]
    report = h.report()
    assert report["tasks_created"] == 3
    assert report["credits_net"] == 10


async def test_a_submission_lost_on_the_wire_still_counts_against_the_budget(
    harness: Callable[..., Harness],
) -> None:
    """The provider created (and billed) the first task, but every answer was lost: the budget must
    count it, or the run buys past max_credits; the next run adopts that task with its original key."""
    h = harness(prompts=3, budget={"max_credits": 10})
    h.faults(drop=1, server_error=2)  # create + drop, then two 5xx: retries exhausted, task unknown to us

    first = await h.run(max_concurrency=1, http_retries=2)

    lost = first[0]
    assert lost.status == "failed" and isinstance(lost.error, e.Transient)
    report = h.report()
    assert report["credits_charged"] <= 10, "the run spent past its budget"
    assert report["tasks_created"] == 2
    assert [o.status for o in first[1:]] == ["stored", "failed"]
    assert isinstance(first[2].error, e.BudgetExceeded)

    second = await h.run(max_concurrency=1)

    assert [o.status for o in second] == ["stored", "stored", "failed"]
    assert second[0].attempt is not None and second[0].attempt.idempotency_key == lost.task.idempotency_key(1)
    report = h.report()
    assert report["tasks_created"] == 2
    assert_one_task_per_key(report)
    assert report["credits_charged"] == 10


def test_concurrent_runs_sharing_a_ledger_cannot_together_spend_past_the_budget(
    harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs in other processes (Dagster run workers) share the dataset's ledger file, not an asyncio lock."""
    h = harness(prompts=16, budget={"max_credits": 10})
    committed = Ledger.committed_credits

    def slow_committed(self: Ledger, dataset: str) -> float:
        held = committed(self, dataset)
        time.sleep(0.005)  # widen the read-then-write window so a race shows on every run
        return held

    monkeypatch.setattr(Ledger, "committed_credits", slow_committed)
    start = threading.Barrier(len(h.tasks))
    results: list[Outcome] = []

    def one_run(task: PlannedTask) -> None:
        start.wait()
        results.extend(asyncio.run(h.run([task])))

    threads = [threading.Thread(target=one_run, args=(t,)) for t in h.tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    report = h.report()
    assert report["credits_charged"] == 10
    assert report["tasks_created"] == 2
    assert sorted(o.status for o in results) == ["failed"] * 14 + ["stored"] * 2
    assert all(isinstance(o.error, e.BudgetExceeded) for o in by_status(results, "failed"))


# -- crashes and resume ---------------------------------------------------------------------------


def submitting_attempt(task: PlannedTask, attempt_no: int, request_json: str) -> Attempt:
    """What the engine writes before a submission leaves the process."""
    return Attempt(
        identity=task.identity, attempt=attempt_no, dataset=task.dataset, prompt_id=task.prompt_id,
        variant=task.variant, fingerprint=task.fingerprint, provider=task.provider, model=task.model,
        mode=task.mode.value, prompt=task.prompt, params_json=canonical_json(task.params.effective()),
        seed=task.seed, seed_source=task.seed_source, extra_json=canonical_json(task.extra),
        idempotency_key=task.idempotency_key(attempt_no), request_json=request_json, state=SUBMITTING,
        credits_estimate=task.estimate.credits,
    )


async def test_crash_after_recording_submitting_resends_the_same_key_and_adopts_the_task(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=1)
    (task,) = h.tasks
    call = h.provider.submit(task.request(), task.idempotency_key(1))
    ledger = h.ledger()
    try:
        ledger.begin_attempt(submitting_attempt(task, 1, call.body_json()))
    finally:
        ledger.close()
    async with httpx.AsyncClient(transport=h.transport) as client:
        reply = await Wire(client, IN_PROCESS_BASE, h.provider.auth_headers(API_KEY)).send(call)
    assert reply.status == 200  # the provider holds the task; the "crashed" process never saw this answer
    created = reply.json()["id"]

    (outcome,) = await h.run()

    assert_stored_and_decodes(outcome)
    assert outcome.attempt is not None and outcome.attempt.task_id == created
    report = h.report()
    assert report["tasks_created"] == 1
    assert report["requests_by_idempotency_key"] == {task.idempotency_key(1): 2}
    assert report["credits_charged"] == CREDITS_PER_TASK


class SimulatedCrash(Exception):
    """The process dies after the request reached the provider and before the answer was read."""


class CrashAfterSubmit(httpx.AsyncBaseTransport):
    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            raise SimulatedCrash("killed before the submission's answer was read")
        return response


async def test_process_killed_mid_submission_resumes_without_buying_twice(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=1)
    (task,) = h.tasks

    with pytest.raises(SimulatedCrash):
        await h.run(transport=CrashAfterSubmit(h.transport))
    (left,) = attempts_of(h, task)
    assert left.state == SUBMITTING and left.task_id is None
    assert h.report()["tasks_created"] == 1

    (outcome,) = await h.run()

    assert_stored_and_decodes(outcome)
    report = h.report()
    assert report["tasks_created"] == 1
    assert report["tasks_by_idempotency_key"] == {task.idempotency_key(1): 1}
    assert report["credits_charged"] == CREDITS_PER_TASK


async def test_a_task_past_its_poll_deadline_is_resumed_by_polling_not_resubmitted(
    harness: Callable[..., Harness],
) -> None:
    h = harness(prompts=2, config=fast_emulator().model_copy(update={"process_s": 60.0}))

    first = await h.run(poll_deadline_s=0.05)

    assert [o.status for o in first] == ["pending", "pending"]
    assert all(isinstance(o.error, e.PollDeadline) for o in first)
    assert all(o.attempt is not None and o.attempt.state == SUBMITTED and o.attempt.task_id for o in first)
    assert h.report()["tasks_created"] == 2
    h.state.config.process_s = 0.02
    for t in h.state.tasks.values():  # the provider finishes meanwhile
        t.process_s = 0.0

    second = await h.run()

    assert [o.status for o in second] == ["stored", "stored"]
    assert [o.submitted_now for o in second] == [0, 0]
    assert [o.attempt.task_id for o in second] == [o.attempt.task_id for o in first]  # type: ignore[union-attr]
    report = h.report()
    assert report["tasks_created"] == 2
    assert report["submit_requests"] == 2


async def test_a_poll_refused_for_auth_keeps_the_task_recorded_for_the_next_run(
    harness: Callable[..., Harness],
) -> None:
    """A key revoked while polling is not a failed generation: the paid task must be polled again later."""
    config = fast_emulator(api_keys=["sk-good"]).model_copy(update={"process_s": 60.0})
    h = harness(prompts=1, config=config)
    (pending,) = await h.run(api_key="sk-good", poll_deadline_s=0.05)
    assert pending.status == "pending"

    (refused,) = await h.run(api_key="sk-revoked")
    assert refused.status == "failed" and isinstance(refused.error, e.AuthenticationFailed)

    h.state.config.process_s = 0.02
    for t in h.state.tasks.values():
        t.process_s = 0.0
    (outcome,) = await h.run(api_key="sk-good")

    assert_stored_and_decodes(outcome)
    assert outcome.attempt is not None and outcome.attempt.task_id == pending.attempt.task_id  # type: ignore[union-attr]
    report = h.report()
    assert report["tasks_created"] == 1
    assert report["submit_requests"] == 1


async def test_concurrent_engines_on_one_ledger_still_buy_each_output_once(harness: Callable[..., Harness]) -> None:
    """Two runs racing over the same dataset (same keys) cannot make the provider create a task twice."""
    h = harness(prompts=3)

    results = await asyncio.gather(h.run(), h.run())

    assert all(o.status == "stored" for outcomes in results for o in outcomes)
    report = h.report()
    assert report["tasks_created"] == 3
    assert_one_task_per_key(report)
    assert report["credits_charged"] == 3 * CREDITS_PER_TASK


# -- secrets --------------------------------------------------------------------------------------

SECRET = "sk-SECRET-123"


async def test_the_api_key_is_never_written_to_ledger_lineage_media_or_errors(
    harness: Callable[..., Harness], tmp_path: Path,
) -> None:
    h = harness(prompts=3, config=fast_emulator(api_keys=[SECRET]))
    h.faults(fail_task=1, server_error=1, drop=1)

    outcomes = await h.run(api_key=SECRET, generation_attempts=1)

    assert sorted(o.status for o in outcomes) == ["failed", "stored", "stored"]
    ledger = h.ledger()
    try:
        lineage_uri, table = write_lineage(ledger, h.spec.name, h.storage)
    finally:
        ledger.close()
    assert table.num_rows == 3
    assert list(tmp_path.rglob("ledger.sqlite*")), "the ledger should be under tmp_path"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert Path(lineage_uri) in written
    assert len([p for p in written if "/media/" in str(p)]) == 2
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), f"API key leaked into {path}"
    for o in outcomes:
        assert SECRET not in repr(o)
        assert SECRET not in str(o.error) and SECRET not in repr(o.error)


async def test_a_wrong_api_key_stops_every_submission(harness: Callable[..., Harness]) -> None:
    h = harness(prompts=3, config=fast_emulator(api_keys=[SECRET]))

    outcomes = await h.run(api_key="sk-WRONG-456", max_concurrency=1)

    assert [o.status for o in outcomes] == ["failed"] * 3
    assert all(isinstance(o.error, e.AuthenticationFailed) for o in outcomes)
    for o in outcomes:
        assert "sk-WRONG-456" not in repr(o)
    report = h.report()
    assert report["tasks_created"] == 0
    # the emulator refuses a bad key before it counts a submission; the ledger counts what was sent
    assert submit_calls_recorded(h) == 1  # the first 401 stops the rest before they are sent
    assert report["credits_charged"] == 0


async def test_a_slot_is_given_back_at_the_hosts_answer_not_after_the_download_and_store(
    harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At one output in flight, the second create leaves while the first output is still being stored: the
    slot counts a task at the host, not our bookkeeping around it. Never two tasks at the host at once."""
    h = harness(prompts=2)
    events: list[str] = []
    at_host = {"now": 0, "peak": 0}
    put = LocalStorage.put

    def slow_put(self: LocalStorage, relpath: str, data: bytes, content_type: str) -> str:
        time.sleep(0.3)  # a slow disk or bucket: the window in which the next create may go
        uri = put(self, relpath, data, content_type)
        events.append("stored")
        return uri

    class Probe(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            reply = await h.transport.handle_async_request(request)
            await reply.aread()
            if request.method == "POST":
                events.append("create")
                at_host["now"] += 1
                at_host["peak"] = max(at_host["peak"], at_host["now"])
            elif b'"succeeded"' in reply.content.lower() or b'"completed"' in reply.content.lower():
                at_host["now"] -= 1
            return reply

    monkeypatch.setattr(LocalStorage, "put", slow_put)
    outcomes = await h.run(max_concurrency=1, transport=Probe())
    assert [o.status for o in outcomes] == ["stored", "stored"]
    assert events[:3] == ["create", "create", "stored"]  # the second create went during the first store
    assert at_host["peak"] == 1
