"""The bridge between the async engine and the Dagster op (assets/live.py), and the progress counters."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
from typing import Any

from rich.console import Console

from wan_pipeline.assets.live import Note, OutcomeStream
from wan_pipeline.cli.progress import LiveProgress, Snapshot
from wan_pipeline.errors import ConfigError
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, SUBMITTING, Attempt, Ledger


def test_items_reach_the_consumer_while_the_work_is_still_running() -> None:
    released = threading.Event()

    async def work(on_outcome: Any, note: Any) -> None:
        on_outcome("first")
        note("half-way")
        await asyncio.to_thread(released.wait)  # the work cannot end before the consumer has seen "first"
        on_outcome("second")

    seen: list[Any] = []
    with OutcomeStream(work) as stream:
        for item in stream:
            seen.append(item)
            if item == Note("half-way"):
                released.set()
    assert seen == ["first", Note("half-way"), "second"]
    assert stream.error is None


def test_closing_early_cancels_the_work_and_waits_for_it() -> None:
    cancelled = threading.Event()

    async def work(on_outcome: Any, note: Any) -> None:
        on_outcome("only")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with OutcomeStream(work) as stream:
        assert next(iter(stream)) == "only"
    # __exit__ returned: the worker thread is gone, and it was cancelled rather than left running
    assert cancelled.is_set()
    assert isinstance(stream.error, asyncio.CancelledError)


def test_an_error_of_the_work_ends_the_stream_and_is_handed_over() -> None:
    async def work(on_outcome: Any, note: Any) -> None:
        on_outcome("stored before the error")
        raise ConfigError("no key")

    with OutcomeStream(work) as stream:
        items = list(stream)
    assert items == ["stored before the error"]
    assert isinstance(stream.error, ConfigError)


def _attempt(identity: str, number: int, state: str) -> Attempt:
    return Attempt(
        identity=identity, attempt=number, dataset="d", prompt_id=identity, variant=0, fingerprint="f",
        provider="rivya", model="m", mode="text_to_image", prompt="p", params_json="{}", seed=1,
        seed_source="derived", extra_json="{}", idempotency_key=f"k-{identity}-{number}", request_json="{}",
        state=state,
    )  # fmt: skip


def test_latest_state_counts_count_each_output_once_by_its_latest_attempt(tmp_path: Any) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for identity, states in {"a": [FAILED, STORED], "b": [SUBMITTED], "c": [FAILED], "d": [SUBMITTING]}.items():
            for number, state in enumerate(states, start=1):
                ledger.begin_attempt(_attempt(identity, number, state))
        other = dataclasses.replace(_attempt("z", 1, STORED), dataset="other")
        ledger.begin_attempt(other)
        assert ledger.latest_state_counts("d") == {STORED: 1, SUBMITTED: 1, FAILED: 1, SUBMITTING: 1}
        assert ledger.latest_state_counts("other") == {STORED: 1}
        # recorded, never handed to the wire (waiting for a slot): apart from the creates at the host
        assert ledger.latest_state_counts("d", unsent="waiting") == {STORED: 1, SUBMITTED: 1, FAILED: 1, "waiting": 1}
        ledger.begin_attempt(_attempt("e", 1, SUBMITTING))
        ledger.count_submit_call("e", 1)
        assert ledger.latest_state_counts("d", unsent="waiting")[SUBMITTING] == 1


def test_progress_off_a_terminal_prints_plain_lines() -> None:
    out = io.StringIO()
    reads: list[int] = []

    def read() -> Snapshot:
        reads.append(1)
        return Snapshot(3, 0, 1, 15.0, 0.0)

    with LiveProgress(read, total=4, console=Console(file=out, width=60), interval_s=3600):
        pass
    # the final state is read once more on the way out and printed as one plain line (no bar, no escapes)
    assert reads and out.getvalue().splitlines()[-1] == "3/4 stored · 0 in flight · 1 failed · 15 credits"
