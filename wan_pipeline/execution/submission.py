"""Creating a task for one attempt, exactly once: record first, send, record the task id (DESIGN §9).

Which path a create takes follows from `resume.step_for` (the table there); this module carries it out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from wan_pipeline import errors as e
from wan_pipeline.execution.calls import Caller
from wan_pipeline.execution.create_turns import CreateTurns
from wan_pipeline.execution.journal import AsyncLedger
from wan_pipeline.execution.outcome import EventSink, Halt
from wan_pipeline.execution.polling import Poller
from wan_pipeline.execution.reconcile import TaskFinder, Verdict
from wan_pipeline.execution.references import ReferencePreparer
from wan_pipeline.execution.resume import Step, record_for, step_for
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.money.budget import AwaitingFirstCharge, BudgetGate
from wan_pipeline.money.ledger import SUBMITTED, SUBMITTING, Attempt, utcnow
from wan_pipeline.money.records import failure_values, new_attempt
from wan_pipeline.money.slots import CreateSlots
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import HttpCall, ListsTasks, Provider, TaskSnapshot, TaskStatus


class Submitter:
    def __init__(
        self,
        provider: Provider,
        ledger: AsyncLedger,
        calls: Caller,
        references: ReferencePreparer,
        poller: Poller,
        budget: BudgetGate,
        settings: EngineSettings,
        halt: Halt,
        run_id: str | None,
        on_event: EventSink,
    ) -> None:
        self.provider, self.ledger, self.calls = provider, ledger, calls
        self.references, self.poller, self.budget = references, poller, budget
        self.settings, self.halt, self.run_id, self.on_event = settings, halt, run_id, on_event
        lease_s = settings.request_timeout_s * (settings.http_retries + 2)
        self.turns = CreateTurns(CreateSlots(ledger.sync), ledger.journal, lease_s)
        self.finder = TaskFinder(provider, ledger, calls) if isinstance(provider, ListsTasks) else None
        self._verdicts: dict[tuple[str, str], dict[tuple[str, int], Verdict]] = {}
        #: a create of this run failed or lost its answer, or an earlier run's was settled: the host may hold
        #: a task no output claims (`TaskEngine._sweep_orphans` looks only then)
        self.uncertain = False

    async def submit(
        self, task: PlannedTask, attempt_no: int, ready: Callable[[], Awaitable[None]] | None = None
    ) -> tuple[Attempt, int]:
        """Create the provider task for this attempt, or adopt the one an earlier run created. `ready` is
        awaited once the attempt is recorded, just before the create (the engine takes its slot there).

        Returns the attempt's record and how many creates were sent (0 when adopted)."""
        self.halt.check()
        await self._settled(task)
        same = record_for(await self.ledger.latest(task.identity), attempt_no)
        step = step_for(same)
        if same is not None and step is Step.POLL:
            return same, 0  # the host's list showed the task this create made: it is polled, not bought again
        if same is not None and step is Step.REPORT:
            raise e.rebuild(same.error_class, same.error_code, same.error_message)
        fresh = False
        if same is not None and step is Step.RESEND:
            call = await self._rearm(task, same)
        elif same is not None and step is Step.ASK_BY_NAME:
            adopted = await self.poller.adopt(task, same)
            if adopted is not None:
                return adopted, 0
            call = HttpCall.from_record(same.call_json or "")
        else:
            call, fresh = await self._record_new(task, attempt_no), True

        async def go_ahead() -> None:
            if ready is not None:
                await ready()
            await self._unless_halted(task, attempt_no, fresh)

        return await self._send(task, attempt_no, call, go_ahead)

    async def _unless_halted(self, task: PlannedTask, attempt_no: int, fresh: bool) -> None:
        """The host refused the account while this attempt waited for its slot. A new attempt is then recorded
        failed with that reason, never sent (so surely unbilled; the next run makes a new one); a re-armed one
        stays as recorded, since an earlier create of it may have reached the host."""
        try:
            self.halt.check()
        except e.ProviderError as err:
            if fresh:
                await self.ledger.update(task.identity, attempt_no, **failure_values(err))
            raise

    async def _record_new(self, task: PlannedTask, attempt_no: int) -> HttpCall:
        references = await self.references.prepare(task)
        # The trace id names the output, not the attempt: a retry differs from its failed attempt only by its key.
        request = replace(
            task.request(references), client_request_id=f"{task.dataset}/{task.prompt_id}/v{task.variant}"
        )
        key = task.idempotency_key(attempt_no)
        call = self.provider.submit(request, key)
        attempt = new_attempt(task, attempt_no, call, self.provider.presubmit_task_id(request, key), self.run_id)
        while True:
            try:
                # durable before a byte leaves this process; the budget check is atomic with the write
                await self.ledger.begin_attempt(attempt, check=lambda: self.budget.admit(task, attempt_no, attempt))
                return call
            except AwaitingFirstCharge:
                await asyncio.sleep(self.settings.poll_initial_s / 4)  # the price is learned from another create

    async def _rearm(self, task: PlannedTask, same: Attempt) -> HttpCall:
        """The create may have reached the host: re-send the recorded bytes (never a rebuilt request) where
        that is safe, else it stays ambiguous with what the user needs to decide."""
        if not self._may_resend(same):
            verdict = (await self._settled(task)).get((same.identity, same.attempt))
            if verdict is None or verdict.kind != "absent":
                reason = verdict.reason if verdict else "the host offers no task list to look it up"
                err = e.AmbiguousSubmission(
                    code="ambiguous_submission",
                    message=f"{task.provider} may already hold a task for this output (no idempotency key "
                    f"support); {reason}: check the provider's dashboard "
                    f"for a {task.model} task created around {same.sent_at or same.updated_at}, then re-run "
                    "with --resubmit-ambiguous to submit again",
                )
                await self.ledger.update(task.identity, same.attempt, **failure_values(err))
                raise err
        call = HttpCall.from_record(same.call_json) if same.call_json else self._legacy_call(task, same)
        while True:
            try:
                await self.ledger.admit_and_update(
                    lambda: self.budget.admit(task, same.attempt), task.dataset, task.identity, same.attempt,
                    state=SUBMITTING, error_code=None, error_class=None, error_message=None, run_id=self.run_id,
                )  # fmt: skip
                return call
            except AwaitingFirstCharge:
                await asyncio.sleep(self.settings.poll_initial_s / 4)

    async def _settled(self, task: PlannedTask) -> dict[tuple[str, int], Verdict]:
        """Once per run (dataset, model), before this run's first create: where every create an earlier run
        left unconfirmed went, from the host's list (recorded in the ledger by `TaskFinder.settle`). Done
        holding the create slot, so none of this process's creates is in flight while the list is read."""
        if self.finder is None or self.provider.supports_idempotency_key:
            return {}
        key = (task.dataset, task.model)
        if key not in self._verdicts:
            async with self._create_slot(task):
                if key not in self._verdicts:
                    self._verdicts[key] = await self.finder.settle(task)
                    self.uncertain |= bool(self._verdicts[key])
                    for verdict in self._verdicts[key].values():
                        self.on_event("reconciled", task, f"{verdict.kind} {verdict.task_id or verdict.reason}")
        return self._verdicts[key]

    def _may_resend(self, same: Attempt) -> bool:
        if self.provider.supports_idempotency_key or self.settings.resubmit_ambiguous:
            return True
        if same.submit_calls == 0:
            return True  # recorded, but never handed to the wire: nothing can have reached the host
        return e.error_type(same.error_class) in e.DEFINITELY_NOT_SENT

    def _legacy_call(self, task: PlannedTask, same: Attempt) -> HttpCall:
        """A ledger written before whole calls were recorded: its body is still the exact wire payload."""
        rebuilt = self.provider.submit(task.request(), same.idempotency_key)
        return replace(rebuilt, json_body=json.loads(same.request_json))

    async def _send(
        self, task: PlannedTask, attempt_no: int, call: HttpCall, go_ahead: Callable[[], Awaitable[None]]
    ) -> tuple[Attempt, int]:
        """`go_ahead` takes the output's slot just before the create: on a host without idempotency keys inside
        the create turn, so that a slot is held only by a create about to leave (the queue for the turn holds
        none; slots are what the host counts)."""
        if self.provider.supports_idempotency_key:
            await go_ahead()
            created = await self._create(task, attempt_no, call)
            if isinstance(created, Attempt):
                return created, 1
            return await self._submitted(task, await self._record_task_id(task, attempt_no, created), created), 1
        # No idempotency keys: one create in flight at a time, so a lost answer has its own window. The task id
        # is queued before the slot passes on but awaited after: the journal commits in order, and the next
        # create awaits its own send mark before sending, so this id is durable before the next create leaves.
        async with self._create_slot(task):
            await self.turns.meanwhile(self._slot_name(task), go_ahead)
            created = await self._create(task, attempt_no, call)
            if isinstance(created, Attempt):
                return created, 1
            recorded = self._record_task_id(task, attempt_no, created)
            self.turns.pending = recorded
        return await self._submitted(task, await recorded, created), 1

    @asynccontextmanager
    async def _create_slot(self, task: PlannedTask) -> AsyncIterator[None]:
        """The dataset's one create slot (`create_turns`): a holder that died frees it, on the same machine at
        once, on another machine when its lease runs out."""
        async with self.turns.turn(self._slot_name(task)):
            yield

    @staticmethod
    def _slot_name(task: PlannedTask) -> str:
        return f"create:{task.provider}:{task.dataset}"

    async def _create(self, task: PlannedTask, attempt_no: int, call: HttpCall) -> TaskSnapshot | Attempt:
        """The create call: the host's answer, or the record of a task adopted after a lost answer. The send
        mark is durable before the call leaves (`Caller.send`)."""
        try:
            wire_call = self.references.signed(call)  # recorded with s3:// URIs, sent freshly signed
            return self.provider.accepted(await self.calls.send(wire_call, submission=(task.identity, attempt_no)))
        except e.ProviderError as err:
            self.halt.trip(err)
            self.uncertain = True
            adopted = await self._adopt_after_lost_answer(task, attempt_no, err)
            if adopted is not None:
                return adopted
            await self.ledger.update(task.identity, attempt_no, **failure_values(err))
            raise

    def _record_task_id(
        self, task: PlannedTask, attempt_no: int, snap: TaskSnapshot
    ) -> asyncio.Future[Attempt | None]:
        return self.ledger.update_queued(
            task.identity, attempt_no, state=SUBMITTED, task_id=snap.task_id, submitted_at=utcnow(),
            credits_reserved=snap.credits_reserved,
        )  # fmt: skip

    async def _submitted(self, task: PlannedTask, latest: Attempt | None, snap: TaskSnapshot) -> Attempt:
        self.on_event("submitted", task, snap.task_id)
        assert latest is not None
        if snap.status != TaskStatus.PENDING:  # a synchronous host answered with the result itself
            latest = await self.poller.record(task, latest, snap)
            assert latest is not None
        return latest

    async def _adopt_after_lost_answer(
        self, task: PlannedTask, attempt_no: int, err: e.ProviderError
    ) -> Attempt | None:
        """A client-named task whose create answer was lost (or whose re-send the host refused as a duplicate):
        the host may hold it, so ask for it by name before giving up on it."""
        if not isinstance(err, e.Transient | e.IdempotencyConflict):
            return None
        named = record_for(await self.ledger.latest(task.identity), attempt_no)
        if named is None or named.task_id is None:
            return None
        return await self.poller.adopt(task, named)
