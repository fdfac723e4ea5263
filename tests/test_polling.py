"""execution/polling.py: Poller follows a recorded task to a terminal state and records what the host said; it gives
up at the deadline (the task stays recorded), stops the run on a refused poll, and adopts client-named tasks."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Rig, RigFactory

from wan_pipeline import errors as e
from wan_pipeline.emulator.state import EmulatorConfig
from wan_pipeline.execution.outcome import Halt
from wan_pipeline.execution.polling import Poller
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.ledger import FAILED, SUBMITTED, SUBMITTING, SUCCEEDED, Attempt
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import TaskSnapshot, TaskStatus

RUNWARE = {"provider": "runware", "model": "alibaba:wan@2.7-image"}


def poller(r: Rig, halt: Halt | None = None, wire: Wire | None = None, **settings: float) -> Poller:
    caller = r.caller(**settings)
    if wire is not None:
        caller.wire = wire
    return Poller(r.provider, r.journal_ledger, caller, caller.settings, halt or Halt())


async def created(r: Rig, task: PlannedTask) -> Attempt:
    """The task created on the host and recorded `submitted`, as the submitter leaves it."""
    call = r.record(task)
    snap = r.provider.accepted(await r.caller().send(call, submission=(task.identity, 1)))
    r.ledger.update(task.identity, 1, state=SUBMITTED, task_id=snap.task_id)
    latest = r.ledger.latest(task.identity)
    assert latest is not None
    return latest


def counting_polls(p: Poller) -> list[str]:
    """The task ids `p` polls from now on, one entry per poll sent."""
    sent: list[str] = []
    poll_once = p._poll_once

    async def counted(task_id: str) -> TaskSnapshot | None:
        sent.append(task_id)
        return await poll_once(task_id)

    p._poll_once = counted  # type: ignore[method-assign]
    return sent


def record(r: Rig, task: PlannedTask) -> Attempt:
    latest = r.ledger.latest(task.identity)
    assert latest is not None
    return latest


async def test_a_finished_task_is_recorded_with_its_results_and_charges(rig: RigFactory) -> None:
    r = rig()
    task = r.tasks[0]
    snap = await poller(r).until_terminal(task, await created(r, task))
    assert snap is not None and snap.status == TaskStatus.SUCCEEDED
    done = record(r, task)
    assert done.state == SUCCEEDED
    assert done.urls == list(snap.output_urls) and len(done.urls) == 1
    assert done.credits_final == 5 and done.completed_at is not None


async def test_the_slot_goes_back_at_the_terminal_answer_and_the_record_is_made_before_the_poll_returns(
    rig: RigFactory,
) -> None:
    """`on_terminal` (the engine gives the task's slot back there) runs once, when the host's answer is
    terminal, without waiting for that answer's record; the record is made by the time the poll returns. A
    task still running at the deadline does not call it."""
    r = rig()
    task = r.tasks[0]
    heard: list[str] = []

    async def given_back() -> None:
        heard.append(record(r, task).state)  # what the ledger says at that moment

    snap = await poller(r).until_terminal(task, await created(r, task), on_terminal=given_back)
    assert snap is not None and snap.status == TaskStatus.SUCCEEDED
    assert heard == [SUBMITTED] and record(r, task).state == SUCCEEDED
    late = rig(config=EmulatorConfig(queue_s=60, process_s=60))
    waiting = late.tasks[0]
    attempt = await created(late, waiting)
    assert await poller(late, poll_deadline_s=0.05).until_terminal(waiting, attempt, on_terminal=given_back) is None
    assert heard == [SUBMITTED]


@pytest.mark.parametrize(
    ("fault", "error"), [("fail_task", e.GenerationFailed), ("reject_content", e.ContentRejected)]
)
async def test_a_failed_task_is_recorded_with_its_error_class(
    rig: RigFactory, fault: str, error: type[e.ProviderError]
) -> None:
    r = rig()
    task = r.tasks[0]
    r.faults(**{fault: 1})
    attempt = await created(r, task)
    snap = await poller(r).until_terminal(task, attempt)
    assert snap is not None and snap.status == TaskStatus.FAILED and isinstance(snap.error, error)
    failed = record(r, task)
    assert (failed.state, failed.error_class, failed.task_id) == (FAILED, error.__name__, attempt.task_id)


async def test_polls_refused_for_a_while_are_asked_again(rig: RigFactory) -> None:
    r = rig()
    task = r.tasks[0]
    attempt = await created(r, task)
    r.faults(server_error=3)
    snap = await poller(r, http_retries=0).until_terminal(task, attempt)  # each 5xx waits for the next interval
    assert snap is not None and snap.status == TaskStatus.SUCCEEDED
    assert r.state.report()["faults_injected"] == {"server_error": 3}


async def test_at_the_deadline_the_task_stays_recorded_for_the_next_run(rig: RigFactory) -> None:
    r = rig(config=EmulatorConfig(queue_s=60, process_s=60))
    task = r.tasks[0]
    attempt = await created(r, task)
    assert await poller(r, poll_deadline_s=0.05).until_terminal(task, attempt) is None
    still = record(r, task)
    assert (still.state, still.task_id) == (SUBMITTED, attempt.task_id)


async def test_a_refused_poll_stops_the_run_and_leaves_the_paid_task_recorded(rig: RigFactory) -> None:
    r = rig(config=EmulatorConfig(queue_s=0, process_s=0.05, api_keys=["test-key"]))
    task = r.tasks[0]
    attempt = await created(r, task)
    revoked = Wire(r.wire.client, r.wire.base_url, r.provider.auth_headers("revoked-key"))
    halt = Halt()
    with pytest.raises(e.AuthenticationFailed):
        await poller(r, halt, revoked).until_terminal(task, attempt)
    assert isinstance(halt.reason, e.AuthenticationFailed)
    with pytest.raises(e.AuthenticationFailed, match="not submitted"):
        halt.check()
    assert record(r, task).state == SUBMITTED  # polled again next run, never bought again


async def test_a_client_named_task_the_host_never_saw_is_not_adopted(rig: RigFactory) -> None:
    r = rig(**RUNWARE)
    task = r.tasks[0]
    r.record(task)  # recorded with its taskUUID, never sent
    recorded = record(r, task)
    assert recorded.state == SUBMITTING and recorded.task_id is not None
    assert await poller(r).adopt(task, recorded) is None
    assert record(r, task).state == SUBMITTING


async def test_a_client_named_task_the_host_holds_is_adopted_and_recorded(rig: RigFactory) -> None:
    r = rig(**RUNWARE)
    task = r.tasks[0]
    call = r.record(task)
    await r.caller().send(call, submission=(task.identity, 1))  # sent; the answer "lost" (never recorded)
    recorded = record(r, task)
    assert recorded.state == SUBMITTING
    adopted = await poller(r).adopt(task, recorded)
    assert adopted is not None and adopted.task_id == recorded.task_id
    assert adopted.state in (SUBMITTED, SUCCEEDED) and adopted.submitted_at is not None
    assert r.state.report()["tasks_created"] == 1


async def test_a_cold_first_wave_is_asked_when_a_scout_learns_the_latency(rig: RigFactory) -> None:
    """Nothing learned yet (no earlier task of the model): one task is polled at the host's cadence and the
    others at what it teaches, not at `poll_initial_s` — each of them asked once."""
    rows = [{"prompt_id": f"w{i}", "prompt": f"a lighthouse at dusk, study {i}"} for i in range(6)]
    r = rig(rows=rows, config=EmulatorConfig(queue_s=0, process_s=0.3), **RUNWARE)
    attempts = [await created(r, task) for task in r.tasks]
    p = poller(r, poll_initial_s=30.0, poll_max_s=1.0)  # cold: a first poll far beyond the latency (0.3 s)
    polls = counting_polls(p)
    loop = asyncio.get_running_loop()
    start = loop.time()
    snaps = await asyncio.gather(*(p.until_terminal(t, a, fresh=True) for t, a in zip(r.tasks, attempts, strict=True)))
    assert all(s is not None and s.status == TaskStatus.SUCCEEDED for s in snaps)
    assert loop.time() - start < 30.0 / 2  # not one waited for poll_initial_s
    assert len(polls) == len(rows)  # the scout's first look, at the host's cadence, found its task done too
    assert p.schedule.expected("alibaba:wan@2.7-image/" + r.tasks[0].mode.value) is not None


@pytest.mark.parametrize(
    "host",
    [{}, RUNWARE, {"provider": "dashscope", "model": "wan2.7-image"}, {"provider": "evolink", "model": "wan-2.7-image"},
     {"provider": "reapi", "model": "wan2.7-image-pro"}],
    ids=["rivya", "runware", "dashscope", "evolink", "reapi"],
)  # fmt: skip
async def test_each_emulated_host_counts_the_polls_it_answers(rig: RigFactory, host: dict[str, str]) -> None:
    """The emulator's report counts status requests (the benchmarks' polls per task): exactly the polls sent."""
    r = rig(config=EmulatorConfig(queue_s=0, process_s=0.2), **host)
    task = r.tasks[0]
    attempt = await created(r, task)
    p = poller(r, poll_initial_s=0.05, poll_max_s=0.05)
    sent = counting_polls(p)
    assert await p.until_terminal(task, attempt) is not None
    assert len(sent) >= 2 and r.state.report()["polls"] == len(sent)  # at least one "still running" answer counted too
