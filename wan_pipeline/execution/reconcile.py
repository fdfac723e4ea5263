"""Finding creates whose answer was lost, on a host without idempotency keys that lists its tasks (DESIGN §9).

Such a host gets at most one create in flight at a time (`submission`), so the host's order of our creates is
the order we sent them. An unconfirmed create (sent, no task id known) lies in a window of the host's list:
after the create this dataset sent just before it and before the one sent just after it, both with known task
ids. The list (oldest first) is read around that window and bracketed by those two ids — never by clocks, so
skew between our clock and the host's cannot move a task in or out. Unconfirmed creates that share a window
(no confirmed create between them) are matched together:

- no unclaimed task in the window: the list proves none of them was created; they may be sent again;
- as many unclaimed tasks as unconfirmed creates: they pair up in order; each create adopts its task;
- anything else (a neighbour missing from the list, a count that does not match, an unreadable list): they
  stay `ambiguous_submission`, with what the user needs to decide.

Every resolution runs while no create of this process is in flight (the caller holds the create slot).
Tasks the host holds in a bracketed stretch of this dataset's creates that no attempt claims are recorded as
orphans (`Ledger.orphans`), so lineage can show what was paid for and will never be fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from wan_pipeline import errors as e
from wan_pipeline.execution.calls import Caller
from wan_pipeline.execution.journal import AsyncLedger
from wan_pipeline.execution.resume import Failure, failure_of
from wan_pipeline.money.ledger import FAILED, SUBMITTED, SUBMITTING, Attempt, Orphan, utcnow
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.planning.pricing import REPORTED, usage_cost
from wan_pipeline.providers.base import ListedTask, ListsTasks, Provider

#: how far around a window the list is read: generous against clock skew, since the ids decide
MARGIN = timedelta(minutes=30)
MAX_PAGES = 50
T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    kind: str  # "adopt" | "absent" | "unknown"
    task_id: str | None = None
    reason: str = ""


ABSENT = Verdict("absent")


def _when(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def unconfirmed(a: Attempt) -> bool:
    """Handed to the wire, no task id known, and nothing proves the host refused it."""
    if a.task_id is not None or not a.sent_at or a.submit_calls == 0:
        return False
    if a.state == SUBMITTING:
        return True
    return a.state == FAILED and failure_of(a) is Failure.AMBIGUOUS and (
        e.error_type(a.error_class) not in e.DEFINITELY_NOT_SENT)


class TaskFinder:
    def __init__(self, provider: Provider, ledger: AsyncLedger, calls: Caller) -> None:
        assert isinstance(provider, ListsTasks)
        self.provider = provider
        self.lister: ListsTasks = provider
        self.ledger = ledger
        self.calls = calls

    async def settle(self, task: PlannedTask) -> dict[tuple[str, int], Verdict]:
        """Resolve every unconfirmed create of `task`'s dataset and model and record the outcome: adopted
        tasks become `submitted`, proven-absent creates are marked never sent (so they are sent again)."""
        if not await self._run(lambda: self.ledger.sync.may_have_unconfirmed_creates(task.dataset)):
            return {}
        attempts = await self._run(lambda: self.ledger.sync.all_attempts(task.dataset))
        mine = [a for a in attempts if a.provider == task.provider and a.model == task.model]
        known = sorted((a for a in mine if a.task_id and a.sent_at), key=lambda a: a.sent_at or "")
        lost = sorted((a for a in mine if unconfirmed(a)), key=lambda a: a.sent_at or "")
        claimed = {a.task_id for a in attempts if a.task_id is not None}
        verdicts: dict[tuple[str, int], Verdict] = {}
        groups: dict[tuple[str | None, str | None], list[Attempt]] = {}
        for a in lost:
            left = next((k for k in reversed(known) if (k.sent_at or "") < (a.sent_at or "")), None)
            right = next((k for k in known if (k.sent_at or "") > (a.sent_at or "")), None)
            groups.setdefault((left.task_id if left else None, right.task_id if right else None), []).append(a)
        by_id = {k.task_id: k for k in known}
        for (left_id, right_id), group in groups.items():
            found = await self._window(task, group, by_id.get(left_id or ""), by_id.get(right_id or ""), claimed)
            for a, verdict in zip(group, found, strict=True):
                verdicts[(a.identity, a.attempt)] = verdict
                await self._apply(a, verdict)
        return verdicts

    async def _window(
        self, task: PlannedTask, group: list[Attempt], left: Attempt | None, right: Attempt | None,
        claimed: set[str],
    ) -> list[Verdict]:
        """One verdict per unconfirmed create of `group` (all in the window between `left` and `right`)."""
        start = _when(left.sent_at) if left else _when(group[0].sent_at)
        end = _when(right.submitted_at or right.sent_at) if right else _when(utcnow())
        assert start is not None and end is not None
        try:
            listed = await self._listing(task.model, start - MARGIN, end + MARGIN)
        except e.ProviderError as err:
            return [Verdict("unknown", reason=f"the host's task list could not be read ({err.code})")] * len(group)
        ids = [t.task_id for t in listed]
        for name, neighbour in (("previous", left), ("next", right)):
            if neighbour is not None and neighbour.task_id not in ids:
                why = f"the {name} create's task {neighbour.task_id} is not in the host's list: no bracket"
                return [Verdict("unknown", reason=why)] * len(group)
        lo = ids.index(left.task_id) + 1 if left and left.task_id else 0
        hi = ids.index(right.task_id) if right and right.task_id else len(ids)
        window = [t for t in listed[lo:hi] if t.task_id not in claimed]
        if not window:
            return [ABSENT] * len(group)
        if len(window) == len(group):  # one create in flight at a time: the host's order is ours
            return [Verdict("adopt", t.task_id) for t in window]
        for t in window:
            await self._orphan(task, t)
        why = (f"{len(window)} unclaimed task(s) in its window ({', '.join(t.task_id for t in window)}) for "
               f"{len(group)} unconfirmed create(s), so none is surely ours")
        return [Verdict("unknown", reason=why)] * len(group)

    async def _apply(self, a: Attempt, verdict: Verdict) -> None:
        if verdict.kind == "adopt":
            values: dict[str, object] = {"state": SUBMITTED, "task_id": verdict.task_id, "submitted_at": utcnow(),
                                         "error_code": None, "error_class": None, "error_message": None}
            await self._run(lambda: self.ledger.sync.claim_orphan(verdict.task_id or ""))
            await self.ledger.update(a.identity, a.attempt, **values)
        elif verdict.kind == "absent":
            # The list proves no create of this attempt reached the host: it is as if never sent.
            await self.ledger.update(a.identity, a.attempt, submit_calls=0, sent_at=None)

    async def _listing(self, model: str, start: datetime, end: datetime) -> list[ListedTask]:
        out: list[ListedTask] = []
        for page_no in range(1, MAX_PAGES + 1):
            page = self.lister.listed(await self.calls.send(self.lister.list_tasks(model, start, end, page_no)))
            out.extend(page.tasks)
            if page_no >= page.total_pages:
                return out
        raise e.Transient(code="cannot_reconcile", message=f"the task list has more than {MAX_PAGES} pages")

    async def sweep(self, task: PlannedTask) -> list[str]:
        """Record as orphans the host's tasks between the first and last known creates of `task`'s dataset and
        model that no attempt claims; returns their ids."""
        dataset, model = task.dataset, task.model
        known = await self._known_creates(dataset, task.provider, model)
        if len(known) < 2:
            return []
        first, last = _when(known[0].sent_at), _when(known[-1].submitted_at or known[-1].sent_at)
        assert first is not None and last is not None
        listed = await self._listing(model, first - MARGIN, last + MARGIN)
        ids = [t.task_id for t in listed]
        if known[0].task_id not in ids or known[-1].task_id not in ids:
            return []
        claimed = await self._claimed(dataset)
        stretch = listed[ids.index(known[0].task_id or ""): ids.index(known[-1].task_id or "") + 1]
        found = [t for t in stretch if t.task_id not in claimed]
        for t in found:
            await self._orphan(task, t)
        return [t.task_id for t in found]

    async def _known_creates(self, dataset: str, provider: str, model: str) -> list[Attempt]:
        """This dataset's creates of `model` with a known task id, in the order they were sent."""
        attempts = await self._run(lambda: self.ledger.sync.all_attempts(dataset))
        return sorted(
            (a for a in attempts if a.provider == provider and a.model == model and a.task_id and a.sent_at),
            key=lambda a: a.sent_at or "",
        )

    async def _claimed(self, dataset: str) -> set[str]:
        attempts = await self._run(lambda: self.ledger.sync.all_attempts(dataset))
        return {a.task_id for a in attempts if a.task_id is not None}

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self.ledger.journal.run(fn)

    async def _orphan(self, task: PlannedTask, t: ListedTask) -> None:
        """Record an unclaimed task with what it cost: the host's usage priced at the model's price."""
        usd: float | None = None
        try:
            snap = self.provider.state(await self.calls.send(self.provider.poll(t.task_id)))
            usd = snap.cost_usd
            if usd is None and snap.usage is not None:
                usd = usage_cost(task.pricing, task.provider, t.model, snap.usage).usd
        except e.ProviderError:
            pass  # recorded without a cost: the id is what the user needs to look it up
        orphan = Orphan(task_id=t.task_id, dataset=task.dataset, provider=task.provider, model=t.model,
                        status=t.status, created=t.created, cost_usd=usd,
                        cost_source=REPORTED if usd is not None else None, found_at=utcnow())
        await self._run(lambda: self.ledger.sync.record_orphan(orphan))
