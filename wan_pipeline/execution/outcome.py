"""What the engine answers for one planned output, and the event sink it reports progress to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from wan_pipeline.errors import ProviderError
from wan_pipeline.money.ledger import Attempt, StoredOutput
from wan_pipeline.planning.plan import PlannedTask


@dataclass
class Outcome:
    task: PlannedTask
    status: str  # "stored" | "failed" | "pending"
    attempt: Attempt | None = None
    outputs: list[StoredOutput] = field(default_factory=list)
    error: ProviderError | None = None
    submitted_now: int = 0
    latency_s: float | None = None


#: (kind, task, detail): "submitted", "stored", "failed", "task_failed", "download_retry"
EventSink = Callable[[str, PlannedTask, str], None]
#: hears each output's final outcome as soon as it is known
OutcomeSink = Callable[[Outcome], None]


class Halt:
    """The first error that stops every further submission of a run (no credits, bad key).

    Shared by the submitter (which refuses to send after it) and the poller (which may discover it)."""

    def __init__(self) -> None:
        self.reason: ProviderError | None = None

    def trip(self, err: ProviderError) -> None:
        if err.stops_submissions and self.reason is None:
            self.reason = err

    def check(self) -> None:
        if self.reason is not None:
            raise type(self.reason)(code=self.reason.code, message=f"not submitted: {self.reason.message}")
