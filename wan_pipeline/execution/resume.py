"""The resume rules of one output, as a table a reader can check (DESIGN §9; STYLE "h11").

An output's attempts move  submitting → submitted → succeeded → stored,  or end `failed` with an error
class. Whatever a crash, a retry or a re-run left in the ledger, the next step follows from the record of
the attempt about to run alone:

| recorded state              | task id? | recorded failure | next step                                  |
|-----------------------------|----------|------------------|--------------------------------------------|
| nothing                     |    –     |        –         | SEND_NEW: build, record, then send         |
| submitted/succeeded/stored  |    –     |        –         | POLL the recorded task, never send again   |
| submitting                  |    no    |        –         | RESEND the recorded bytes with the same key|
| submitting                  |   yes    |        –         | ASK_BY_NAME (client-named task), then send |
| failed                      |    –     |    permanent     | REPORT it; asking again would be refused   |
| failed                      |    no    |   other kinds    | RESEND (the host may hold it)              |
| failed                      |   yes    |   other kinds    | ASK_BY_NAME                                |

A run starts with the latest attempt, or with a new attempt number when the host reported the task failed
(generation failed: same seed, new key) — never after an ambiguous error, whose task the host may hold.
"""

from __future__ import annotations

from enum import StrEnum

from wan_pipeline.errors import AMBIGUOUS, PERMANENT, error_type
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, SUBMITTING, SUCCEEDED, Attempt


class Step(StrEnum):
    SEND_NEW = "send_new"
    POLL = "poll"
    RESEND = "resend"
    ASK_BY_NAME = "ask_by_name"
    REPORT = "report"


class Failure(StrEnum):
    NONE = "none"
    AMBIGUOUS = "ambiguous"  # the host may hold a task we never heard about
    PERMANENT = "permanent"  # the same request would be answered the same way
    SETTLED = "settled"  # the host answered (e.g. generation failed): a new attempt may follow


def failure_of(a: Attempt) -> Failure:
    if a.state != FAILED:
        return Failure.NONE
    cls = error_type(a.error_class)
    if cls is None or cls in AMBIGUOUS:
        return Failure.AMBIGUOUS
    return Failure.PERMANENT if cls in PERMANENT else Failure.SETTLED


_POLLABLE = (SUBMITTED, SUCCEEDED, STORED)

#: (state, task id recorded, failure) -> step, for a recorded attempt that is not pollable
_TABLE: dict[tuple[str, bool, Failure], Step] = {
    (SUBMITTING, False, Failure.NONE): Step.RESEND,
    (SUBMITTING, True, Failure.NONE): Step.ASK_BY_NAME,
    **{(FAILED, named, Failure.PERMANENT): Step.REPORT for named in (False, True)},
    **{(FAILED, False, f): Step.RESEND for f in (Failure.AMBIGUOUS, Failure.SETTLED)},
    **{(FAILED, True, f): Step.ASK_BY_NAME for f in (Failure.AMBIGUOUS, Failure.SETTLED)},
}


def step_for(same: Attempt | None) -> Step:
    """The next step for the attempt about to run, given its record (None: not recorded yet)."""
    if same is None:
        return Step.SEND_NEW
    if same.state in _POLLABLE:
        return Step.POLL
    return _TABLE[(same.state, same.task_id is not None, failure_of(same))]


def first_attempt(last: Attempt | None) -> int:
    """The attempt number a run starts with, from the output's latest recorded attempt."""
    if last is None:
        return 1
    return last.attempt + 1 if failure_of(last) is Failure.SETTLED else last.attempt


def record_for(latest: Attempt | None, attempt_no: int) -> Attempt | None:
    """The record of attempt `attempt_no`, if the latest record is that attempt."""
    return latest if latest is not None and latest.attempt == attempt_no else None
