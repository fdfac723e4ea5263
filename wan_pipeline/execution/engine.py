"""The async task engine: runs planned outputs concurrently, each from its ledger record to a stored file.

It owns all I/O; provider modules only build and read payloads. The pieces, one job each:
`resume` (what a record means next) · `submission` (create exactly once) · `references` (uploads, presigning) ·
`calls` + `pacing` (retries, rate limits) · `polling` (poll schedule, terminal records) ·
`delivery` (download, verify, store) · `money.budget` (admission) · `money.records` (ledger rows).
Rules (DESIGN §9): an attempt is recorded before its submission and its task id right after; a recorded task
is polled, never resubmitted; the budget is checked before every submission, atomically with the record.
"""

from __future__ import annotations

import asyncio
import random
import time

from wan_pipeline import errors as e
from wan_pipeline.execution.calls import Caller
from wan_pipeline.execution.create_turns import creates_quiet
from wan_pipeline.execution.delivery import Deliverer
from wan_pipeline.execution.journal import AsyncLedger, Journal
from wan_pipeline.execution.outcome import EventSink, Halt, Outcome, OutcomeSink
from wan_pipeline.execution.pacing import LocalSlots, Pacer, RateGate, SlotLease, Slots
from wan_pipeline.execution.polling import Poller
from wan_pipeline.execution.references import ReferencePreparer
from wan_pipeline.execution.resume import Step, first_attempt, record_for, step_for
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.execution.submission import Submitter
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.budget import BudgetGate
from wan_pipeline.money.ledger import STORED, Attempt, Ledger
from wan_pipeline.outputs.storage import Storage
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.planning.spec import Budget
from wan_pipeline.providers.base import Provider, TaskStatus

__all__ = ["EngineSettings", "EventSink", "Outcome", "OutcomeSink", "TaskEngine"]


class TaskEngine:
    def __init__(
        self,
        provider: Provider,
        wire: Wire,
        ledger: Ledger,
        storage: Storage,
        budget: Budget,
        settings: EngineSettings | None = None,
        run_id: str | None = None,
        on_event: EventSink | None = None,
        rng: random.Random | None = None,
        gate: Pacer | None = None,
        slots: Slots | None = None,
        journal: Journal | None = None,
    ) -> None:
        settings = settings or EngineSettings()
        self.provider, self.settings = provider, settings
        self.journal = journal or Journal(ledger)
        self.ledger = AsyncLedger(ledger, self.journal)
        self.on_event: EventSink = on_event or (lambda kind, task, detail: None)
        rng = rng or random.Random()
        # shared ones (money.rate, money.leases) when runs on several machines share one provider account
        self.gate = gate or RateGate(settings.submits_per_second)
        self.slots: Slots = slots or LocalSlots(settings.max_concurrency)
        self.calls = Caller(provider, wire, self.ledger, self.gate, settings, rng)
        halt = Halt()
        self.poller = Poller(provider, self.ledger, self.calls, settings, halt)
        self.references = ReferencePreparer(provider, storage, self.calls)
        self.submitter = Submitter(
            provider, self.ledger, self.calls, self.references, self.poller, BudgetGate(ledger, budget),
            settings, halt, run_id, self.on_event,
        )  # fmt: skip
        self.delivery = Deliverer(wire, storage, self.ledger, settings, rng, self.on_event)

    async def run(self, tasks: list[PlannedTask], on_outcome: OutcomeSink | None = None) -> list[Outcome]:
        """Every task to a terminal outcome, at most `max_concurrency` at the host at once (`slots`); one failure
        never stops the others.

        `on_outcome` hears each outcome as soon as it is final (on the event loop), so a caller can publish
        results while the run goes on."""
        sem = asyncio.Semaphore(_in_hand(self.settings.max_concurrency))

        async def one(task: PlannedTask) -> Outcome:
            async with sem, self.slots.hold(task.identity) as lease:
                try:
                    outcome = await self._run_task(task, lease)
                except e.ProviderError as err:
                    outcome = await self._failed(task, err)
                except e.ConfigError as err:
                    # e.g. a result URL we refuse to fetch: this output fails, the others go on.
                    outcome = await self._failed(task, e.RejectedByProvider(code="configuration", message=str(err)))
            if on_outcome is not None:
                on_outcome(outcome)
            return outcome

        self.journal.start()
        try:
            await self.poller.warm(tasks)
            outcomes = list(await asyncio.gather(*(one(t) for t in tasks)))
            await self._sweep_orphans(tasks)
            return outcomes
        finally:
            await self.submitter.turns.give_back()
            # every queued write (counters included) is committed before the run answers
            await asyncio.to_thread(self.journal.close)

    async def _sweep_orphans(self, tasks: list[PlannedTask]) -> None:
        """Hosts without idempotency keys that list their tasks: record any task the host holds that no output
        claims (lineage shows it `orphaned`, with its id and cost). A failed look-up changes nothing.

        Only after a run where a create failed or lost its answer, or that settled an earlier run's: our
        creates leave a task nobody claims only then, and the sweep reads the host's list over the dataset's
        whole history — after every run of a backfill that was most of each run's tail."""
        finder = self.submitter.finder
        if finder is None or self.provider.supports_idempotency_key or not tasks or not self.submitter.uncertain:
            return
        for model_task in {t.model: t for t in tasks}.values():
            try:
                found = await finder.sweep(model_task)
            except e.ProviderError as err:
                self.on_event("orphan_sweep_failed", model_task, str(err))
                continue
            for task_id in found:
                self.on_event("orphaned", model_task, task_id)

    async def _failed(self, task: PlannedTask, err: e.ProviderError) -> Outcome:
        self.on_event("failed", task, str(err))
        return Outcome(task, "failed", await self.ledger.latest(task.identity), error=err)

    async def _run_task(self, task: PlannedTask, lease: SlotLease) -> Outcome:
        """One output: resume from its record, submit or poll, retry provider-side failures, deliver.

        Its slot is taken just before the create (the attempt is recorded and admitted while another task
        still has it) and given back at the terminal answer (the next create goes while this one downloads)."""
        started = time.monotonic()
        last = await self.ledger.latest(task.identity)
        if last is not None and last.state == STORED:
            outputs = await self.ledger.outputs(task.identity, last.attempt)
            if await self.delivery.still_stored(task, outputs):
                return Outcome(task, "stored", last, outputs)
            # a stored file went missing: fetched again from the same task (a stored record is pollable)
        submitted_now, tries = 0, 0
        attempt_no = first_attempt(last)
        while True:
            current = record_for(await self.ledger.latest(task.identity), attempt_no)
            sent = 0
            if current is None or step_for(current) is not Step.POLL:
                current, sent = await self.submitter.submit(task, attempt_no, lease.busy)
                submitted_now, tries = submitted_now + sent, tries + 1
            await lease.busy()  # a task already at the host (resumed, adopted) counts as well
            snap = await self.poller.until_terminal(task, current, fresh=sent > 0, on_terminal=lease.idle)
            await lease.idle()  # (given back already when the answer was terminal)
            if snap is None:
                return await self._pending(task, current, submitted_now)
            if snap.status == TaskStatus.SUCCEEDED:
                await creates_quiet()  # the next creates first (`create_turns`)
                outputs = await self.delivery.store(task, current, snap)
                self.on_event("stored", task, f"{len(outputs)} file(s)")
                latest = await self.ledger.latest(task.identity)
                return Outcome(task, "stored", latest, outputs, submitted_now=submitted_now,
                               latency_s=time.monotonic() - started)  # fmt: skip
            err = snap.error or e.GenerationFailed(code="generation_failed", message="task failed")
            self.on_event("task_failed", task, str(err))
            if isinstance(err, e.GenerationFailed) and tries < self.settings.generation_attempts:
                attempt_no += 1  # same seed, new attempt, new idempotency key; the old one stays in lineage
                continue
            latest = await self.ledger.latest(task.identity)
            return Outcome(task, "failed", latest, error=err, submitted_now=submitted_now)

    async def _pending(self, task: PlannedTask, current: Attempt, submitted_now: int) -> Outcome:
        late = e.PollDeadline(code="poll_deadline", message=f"task {current.task_id} still running; resumed next run")
        latest = await self.ledger.latest(task.identity)
        return Outcome(task, "pending", latest, error=late, submitted_now=submitted_now)


def _in_hand(limit: int) -> int:
    """How many outputs an engine works on at once: its `limit` at the host, plus as many again recorded before
    their create or stored after their task (`_run_task`), so no slot waits on that bookkeeping. A wave of
    tasks created together ends together: with only a quarter more in hand, the rest of the wave's slots
    waited for stores to finish and new attempts to be recorded, 0.1-0.3 s with 10-24 of 32 slots idle at
    each of the first waves, and a later run's engine took them (issue 7; benchmarks/RESULTS.md). Each
    extra one has its attempt recorded and admitted by the budget (not sent) before its turn: a crash leaves
    it recorded and never sent, which the next run sends (`execution.resume`)."""
    return limit + max(2, limit)
