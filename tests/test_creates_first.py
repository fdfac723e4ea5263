"""Work that can wait lets this process's creates go first (`create_turns.creates_quiet`): a finished task's
download waits while a create holds or waits for a create turn — at most `QUIET_CAP_S` — and not at all
otherwise. Counted on a stepped clock, not timed."""

from __future__ import annotations

import asyncio
import time

import pytest

from wan_pipeline.execution import create_turns
from wan_pipeline.execution.create_turns import QUIET_CAP_S, QUIET_STEP_S, creates_quiet


class SteppedClock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now, self.sleeps = 100.0, 0
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            self.sleeps += 1
            self.now += seconds
            self.on_sleep()
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", sleep)
        self.on_sleep = lambda: None


@pytest.fixture
def turn(monkeypatch: pytest.MonkeyPatch) -> create_turns._ProcessTurn:
    monkeypatch.setattr(create_turns, "_TURNS", {})
    return create_turns._process_turn("create:dashscope:quiet")


def test_no_wait_when_no_create_is_under_way(turn: create_turns._ProcessTurn, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SteppedClock(monkeypatch)
    asyncio.run(creates_quiet())
    assert clock.sleeps == 0


def test_waits_while_a_create_holds_the_turn_and_goes_when_it_passes(
    turn: create_turns._ProcessTurn, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SteppedClock(monkeypatch)
    turn.busy = True

    def creates_done_after_three_looks() -> None:
        if clock.sleeps == 3:
            turn.busy = False

    clock.on_sleep = creates_done_after_three_looks
    asyncio.run(creates_quiet())
    assert clock.sleeps == 3


def test_never_waits_longer_than_the_cap(turn: create_turns._ProcessTurn, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SteppedClock(monkeypatch)
    turn.busy = True  # a create that never passes the turn on
    start = clock.now
    asyncio.run(creates_quiet())
    assert QUIET_CAP_S <= clock.now - start <= QUIET_CAP_S + QUIET_STEP_S
