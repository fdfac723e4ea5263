"""Finding a create whose answer was lost, on a host without idempotency keys that lists its tasks (DESIGN §9).

Such a host gets at most one create in flight at a time (`submission`), so every unconfirmed create has its own
window in the host's order: after the create this dataset sent just before it and before the one sent just
after it, both with known task ids. The host's list (oldest first) is read around that window and bracketed
by those two ids — never by clocks, so skew between our clock and the host's cannot move a task in or out:

- no unclaimed task in the window: the list proves none was created; the recorded call may be sent again;
- exactly one: it is ours; adopt it and poll it;
- anything else (a neighbour missing from the list, several candidates, an unreadable list): stay
  `ambiguous_submission`, with what the user needs to decide.

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
from wan_pipeline.money.ledger import Attempt, Orphan, utcnow
from wan_pipeline.providers.base import ListedTask, ListsTasks

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


class TaskFinder:
    def __init__(self, lister: ListsTasks, ledger: AsyncLedger, calls: Caller) -> None:
        self.lister = lister
        self.ledger = ledger
        self.calls = calls

    async def resolve(self, same: Attempt) -> Verdict:
        """Where the unconfirmed create `same` went, from the host's list."""
        sent = _when(same.sent_at)
        if sent is None or same.submit_calls == 0:
            return ABSENT  # never handed to the wire
        known = await self._known_creates(same.dataset, same.provider, same.model)
        left = next((a for a in reversed(known) if (a.sent_at or "") < (same.sent_at or "")), None)
        right = next((a for a in known if (a.sent_at or "") > (same.sent_at or "")), None)
        start = (_when(left.sent_at) if left else sent) or sent
        end = _when(right.submitted_at or right.sent_at) if right else datetime.fromisoformat(
            utcnow().replace("Z", "+00:00"))
        try:
            listed = await self._listing(same.model, start - MARGIN, (end or sent) + MARGIN)
        except e.ProviderError as err:
            return Verdict("unknown", reason=f"the host's task list could not be read ({err.code})")
        ids = [t.task_id for t in listed]
        for name, neighbour in (("previous", left), ("next", right)):
            if neighbour is not None and neighbour.task_id not in ids:
                return Verdict("unknown", reason=f"the {name} create's task {neighbour.task_id} is not in the "
                                                 "host's list, so the window cannot be bracketed")
        lo = ids.index(left.task_id) + 1 if left and left.task_id else 0
        hi = ids.index(right.task_id) if right and right.task_id else len(ids)
        claimed = await self._claimed(same.dataset)
        window = [t for t in listed[lo:hi] if t.task_id not in claimed]
        if not window:
            return ABSENT
        if len(window) == 1:
            await self._run(lambda: self.ledger.sync.claim_orphan(window[0].task_id))
            return Verdict("adopt", window[0].task_id)
        for t in window:
            await self._orphan(same, t)
        return Verdict("unknown", reason=f"{len(window)} unclaimed tasks in its window "
                                         f"({', '.join(t.task_id for t in window)}), so none is surely ours")

    async def _listing(self, model: str, start: datetime, end: datetime) -> list[ListedTask]:
        out: list[ListedTask] = []
        for page_no in range(1, MAX_PAGES + 1):
            page = self.lister.listed(await self.calls.send(self.lister.list_tasks(model, start, end, page_no)))
            out.extend(page.tasks)
            if page_no >= page.total_pages:
                return out
        raise e.Transient(code="cannot_reconcile", message=f"the task list has more than {MAX_PAGES} pages")

    async def sweep(self, dataset: str, provider: str, model: str) -> list[str]:
        """Record as orphans the host's tasks between this dataset's first and last known creates that no
        attempt claims; returns their ids."""
        known = await self._known_creates(dataset, provider, model)
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
            await self._orphan(known[0], t)
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
        return {a.task_id for a in attempts if a.task_id}

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self.ledger.journal.run(fn)

    async def _orphan(self, like: Attempt, t: ListedTask) -> None:
        orphan = Orphan(task_id=t.task_id, dataset=like.dataset, provider=like.provider, model=t.model,
                        status=t.status, created=t.created, cost_usd=None, cost_source=None, found_at=utcnow())
        await self._run(lambda: self.ledger.sync.record_orphan(orphan))
