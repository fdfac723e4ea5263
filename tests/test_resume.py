"""execution/resume.py: every row of the resume table, the attempt a run starts with, and that the table in the
module's docstring (the one a reader checks) says what the code does."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from wan_pipeline import errors as e
from wan_pipeline.execution import resume
from wan_pipeline.execution.resume import Failure, Step, failure_of, first_attempt, record_for, step_for
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, SUBMITTING, SUCCEEDED, Attempt

BASE = Attempt(
    identity="ds/p0/v1/abc", attempt=1, dataset="ds", prompt_id="p0", variant=1, fingerprint="abc",
    provider="rivya", model="wan-2-7-image", mode="text_to_image", prompt="A lighthouse", params_json="{}",
    seed=7, seed_source="derived", extra_json="{}", idempotency_key="key-1", request_json="{}", state=SUBMITTING,
)  # fmt: skip


def attempt(state: str, task_id: str | None = None, error: type[e.ProviderError] | None = None, n: int = 1) -> Attempt:
    return replace(BASE, state=state, task_id=task_id, error_class=error.__name__ if error else None, attempt=n)


#: each settled (host-answered, may-try-again) failure class: neither ambiguous nor permanent
SETTLED = sorted(set(e.ERROR_TYPES.values()) - e.AMBIGUOUS - e.PERMANENT, key=lambda t: t.__name__)


def test_nothing_recorded_means_send_new() -> None:
    assert step_for(None) is Step.SEND_NEW


@pytest.mark.parametrize("state", [SUBMITTED, SUCCEEDED, STORED])
@pytest.mark.parametrize("task_id", [None, "task_1"])
def test_a_task_the_host_holds_is_polled_never_sent_again(state: str, task_id: str | None) -> None:
    assert step_for(attempt(state, task_id)) is Step.POLL


def test_submitting_without_a_task_id_resends_the_recorded_bytes() -> None:
    assert step_for(attempt(SUBMITTING)) is Step.RESEND


def test_submitting_with_a_client_named_task_asks_for_it_first() -> None:
    assert step_for(attempt(SUBMITTING, "uuid-1")) is Step.ASK_BY_NAME


@pytest.mark.parametrize("error", sorted(e.PERMANENT, key=lambda t: t.__name__))
@pytest.mark.parametrize("task_id", [None, "task_1"])
def test_a_permanent_failure_is_reported(error: type[e.ProviderError], task_id: str | None) -> None:
    recorded = attempt(FAILED, task_id, error)
    assert failure_of(recorded) is Failure.PERMANENT
    assert step_for(recorded) is Step.REPORT


@pytest.mark.parametrize("error", [*sorted(e.AMBIGUOUS, key=lambda t: t.__name__), *SETTLED])
def test_any_other_failure_without_a_task_id_is_resent(error: type[e.ProviderError]) -> None:
    assert step_for(attempt(FAILED, None, error)) is Step.RESEND


@pytest.mark.parametrize("error", [*sorted(e.AMBIGUOUS, key=lambda t: t.__name__), *SETTLED])
def test_any_other_failure_with_a_task_id_asks_by_name(error: type[e.ProviderError]) -> None:
    assert step_for(attempt(FAILED, "uuid-1", error)) is Step.ASK_BY_NAME


def test_a_failure_with_no_recorded_class_counts_as_ambiguous() -> None:
    # e.g. a crash between the failure and its classification: assume the host may hold the task
    recorded = attempt(FAILED)
    assert failure_of(recorded) is Failure.AMBIGUOUS
    assert step_for(recorded) is Step.RESEND


def test_an_unknown_class_name_in_the_ledger_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown error class 'Gremlin'"):
        step_for(replace(attempt(FAILED), error_class="Gremlin"))


def test_failure_kinds_partition_the_error_types() -> None:
    kinds = {cls: failure_of(attempt(FAILED, None, cls)) for cls in e.ERROR_TYPES.values()}
    assert {cls for cls, kind in kinds.items() if kind is Failure.AMBIGUOUS} == e.AMBIGUOUS
    assert {cls for cls, kind in kinds.items() if kind is Failure.PERMANENT} == e.PERMANENT
    assert failure_of(attempt(SUBMITTED, "t")) is Failure.NONE


# -- which attempt a run starts with -----------------------------------------------------------------


def test_first_attempt_of_a_new_output_is_one() -> None:
    assert first_attempt(None) == 1


@pytest.mark.parametrize("error", SETTLED)
def test_a_host_reported_failure_starts_a_new_attempt(error: type[e.ProviderError]) -> None:
    assert first_attempt(attempt(FAILED, "t", error, n=2)) == 3


@pytest.mark.parametrize("error", [*sorted(e.AMBIGUOUS | e.PERMANENT, key=lambda t: t.__name__), None])
def test_an_ambiguous_or_permanent_failure_keeps_its_attempt(error: type[e.ProviderError] | None) -> None:
    # a new attempt means a new idempotency key: never after a create the host may hold
    assert first_attempt(attempt(FAILED, None, error, n=2)) == 2


@pytest.mark.parametrize("state", [SUBMITTING, SUBMITTED, SUCCEEDED, STORED])
def test_an_unfinished_or_finished_attempt_is_resumed_as_itself(state: str) -> None:
    assert first_attempt(attempt(state, "t", n=4)) == 4


def test_record_for_is_the_latest_record_only_when_it_is_that_attempt() -> None:
    latest = attempt(SUBMITTED, "t", n=2)
    assert record_for(latest, 2) is latest
    assert record_for(latest, 3) is None
    assert record_for(None, 1) is None


# -- the docstring's table is the code's table ---------------------------------------------------------

ROW = re.compile(
    r"^\| (?P<state>[a-z/ ]+?)\s+\|\s+(?P<id>yes|no|–)\s+\|\s+(?P<failure>[a-z– ]+?)\s+\|\s+(?P<step>[A-Z_]+)"
)


def documented_rows() -> list[tuple[str, str, str, Step]]:
    rows = [ROW.match(line) for line in (resume.__doc__ or "").splitlines()]
    return [(m["state"], m["id"], m["failure"], Step[m["step"]]) for m in rows if m is not None]


def examples(state: str, named: str, failure: str) -> list[Attempt | None]:
    """Records that fit one documented row."""
    if state == "nothing":
        return [None]
    ids = {"yes": ["uuid-1"], "no": [None], "–": [None, "uuid-1"]}[named]
    errors: list[type[e.ProviderError] | None] = {
        "–": [None],
        "permanent": sorted(e.PERMANENT, key=lambda t: t.__name__),
        "other kinds": [*sorted(e.AMBIGUOUS, key=lambda t: t.__name__), *SETTLED],
    }[failure]
    return [attempt(s, task_id, err) for s in state.split("/") for task_id in ids for err in errors]


def test_the_docstring_table_matches_step_for() -> None:
    rows = documented_rows()
    assert len(rows) == 7  # every row of the table was read
    for state, named, failure, step in rows:
        for recorded in examples(state, named, failure):
            assert step_for(recorded) is step, (state, named, failure, recorded)


# -- a failure of our own storage is not the host's answer ---------------------------------------------


@pytest.mark.parametrize("task_id", [None, "task_1"])
def test_a_storage_failure_resumes_the_same_attempt_and_never_buys_again(task_id: str | None) -> None:
    # The storage (not the provider) could not answer, so the host's task may have succeeded: the attempt is
    # ambiguous — looked up again with its own key and task id — never settled, which would start attempt 3
    # with a new key and buy the output again.
    recorded = attempt(FAILED, task_id, e.StorageUnavailable, n=2)
    assert failure_of(recorded) is Failure.AMBIGUOUS
    assert first_attempt(recorded) == 2
    assert record_for(recorded, first_attempt(recorded)) is recorded
    assert step_for(recorded) is (Step.ASK_BY_NAME if task_id else Step.RESEND)
