"""Polling a recorded task to a terminal state, and recording what the host said about it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from wan_pipeline import errors as e
from wan_pipeline.execution.calls import Caller
from wan_pipeline.execution.journal import AsyncLedger
from wan_pipeline.execution.outcome import Halt
from wan_pipeline.execution.poll_schedule import PollSchedule
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.money.ledger import SUBMITTED, Attempt, utcnow
from wan_pipeline.money.records import terminal_values
from wan_pipeline.outputs.expectation import expectation
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import Provider, TaskSnapshot, TaskStatus

#: how often a task of a cold start looks whether the schedule has learned its latency (a timer, no request)
_LEARN_STEP_S = 0.1


class Poller:
    def __init__(
        self, provider: Provider, ledger: AsyncLedger, calls: Caller, settings: EngineSettings, halt: Halt
    ) -> None:
        self.provider = provider
        self.ledger = ledger
        self.calls = calls
        self.settings = settings
        self.halt = halt
        self.schedule = PollSchedule(settings, provider.min_poll_interval_s, host=provider.name)

    async def warm(self, tasks: list[PlannedTask]) -> None:
        """Seed the schedule of each model and mode among `tasks` from the latencies the ledger recorded."""
        for dataset, model, mode in {(t.dataset, t.model, t.mode.value) for t in tasks}:
            self.schedule.seed(f"{model}/{mode}", await self.ledger.recent_latencies(dataset, model, mode))

    async def until_terminal(
        self,
        task: PlannedTask,
        attempt: Attempt,
        fresh: bool = False,
        on_terminal: Callable[[], Awaitable[None]] | None = None,
    ) -> TaskSnapshot | None:
        """The task's terminal snapshot (recorded), or None when the poll deadline passes first.

        `fresh`: submitted by this run just now, so its finishing time teaches the schedule. `on_terminal` runs
        as soon as the host's answer is terminal, while the answer is being recorded (the engine gives the
        task's slot back there: the next create need not wait for that commit too)."""
        assert attempt.task_id is not None
        key = f"{task.model}/{task.mode.value}"
        started = time.monotonic()
        deadline = started + self._deadline_s(task)
        age = _age_s(attempt.submitted_at)
        scout = fresh and attempt.state == SUBMITTED and self.schedule.scout(key)
        try:
            if attempt.state != SUBMITTED:
                delay = 0.0  # a task found finished (or stored) earlier is asked at once
            else:
                delay = self.schedule.scout_delay_s(age) if scout else self.schedule.first_delay(key, age)
            polls, first_poll_s = 0, 0.0
            while True:
                delay = await self._unless_learned(key, delay, age, started, deadline)
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                if polls == 0:
                    first_poll_s = age + time.monotonic() - started
                snap = await self._poll_once(attempt.task_id)
                polls += 1
                if snap is not None and snap.status != TaskStatus.PENDING:
                    # a scout's looks say nothing about an estimate another task taught meanwhile
                    taught = scout and polls > 1 and snap.host_latency_s is None and self.schedule.learned(key)
                    if fresh and not taught:
                        done_after = age + time.monotonic() - started
                        self.schedule.observe(key, done_after, first_poll_hit=polls == 1, first_poll_s=first_poll_s,
                                              host_latency_s=snap.host_latency_s)  # fmt: skip
                    recorded = asyncio.ensure_future(self.record(task, attempt, snap))
                    try:
                        if on_terminal is not None:
                            await on_terminal()
                    finally:
                        await recorded
                    return snap
                if time.monotonic() >= deadline:
                    return None
                if scout and not self.schedule.learned(key):
                    delay = self.schedule.scout_delay_s(age + time.monotonic() - started)
                else:
                    delay = self.schedule.next_delay(key, polls - 1)
        finally:
            if scout:
                self.schedule.scouted(key)

    async def _unless_learned(self, key: str, delay: float, age: float, started: float, deadline: float) -> float:
        """`delay`, unless nothing is learned of `key` yet (a cold start): then wait in steps of `_LEARN_STEP_S`
        and, once the schedule learns (from the scout, or another task), what is left until the learned latency.
        So a first wave is asked when its tasks are due, not at `poll_initial_s` and its growth."""
        if self.schedule.learned(key):
            return delay
        end = min(time.monotonic() + delay, deadline)
        while time.monotonic() + _LEARN_STEP_S < end:
            await asyncio.sleep(_LEARN_STEP_S)
            if self.schedule.learned(key):
                return self.schedule.first_delay(key, age + time.monotonic() - started)
        return max(0.0, end - time.monotonic())

    async def _poll_once(self, task_id: str) -> TaskSnapshot | None:
        try:
            return self.provider.state(await self.calls.send(self.provider.poll(task_id)))
        except e.ProviderError as err:
            if err.retryable:
                return None  # asked again at the next interval
            # A refused poll (revoked key, 404, ...) says nothing about the paid task itself: it stays recorded
            # as it was so the next run polls it again instead of buying it a second time.
            self.halt.trip(err)
            raise

    def _deadline_s(self, task: PlannedTask) -> float:
        video = expectation(task).kind == "video"
        return self.settings.poll_deadline_video_s if video else self.settings.poll_deadline_s

    async def record(self, task: PlannedTask, attempt: Attempt, snap: TaskSnapshot) -> Attempt | None:
        values = terminal_values(task, snap, attempt.credits_reserved)
        return await self.ledger.update(task.identity, attempt.attempt, **values)

    async def adopt(self, task: PlannedTask, attempt: Attempt) -> Attempt | None:
        """Ask for a task the client named before sending (Runware's taskUUID); None when the host never saw it."""
        assert attempt.task_id is not None
        try:
            snap = self.provider.state(await self.calls.send(self.provider.poll(attempt.task_id)))
        except e.RejectedByProvider:
            return None  # the host never saw it: the recorded call is sent
        latest = await self.ledger.update(
            task.identity, attempt.attempt, state=SUBMITTED, submitted_at=attempt.submitted_at or utcnow()
        )
        assert latest is not None
        if snap.status != TaskStatus.PENDING:
            latest = await self.record(task, latest, snap)
        return latest


def _age_s(submitted_at: str | None) -> float:
    """Seconds since the recorded submission (0 when unknown): a resumed task is not waited for twice."""
    if not submitted_at:
        return 0.0
    try:
        then = datetime.fromisoformat(submitted_at)
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - then).total_seconds())
