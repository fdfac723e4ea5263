"""Work that can wait lets this process's creates go first (`create_turns.creates_quiet`): a finished task's
download waits while a create holds or waits for a create turn — at most `QUIET_CAP_S` — and not at all
otherwise. Counted on a stepped clock, not timed; and the engine asks it before each download."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_ENGINE, write_dataset

from wan_pipeline.emulator.app import in_process
from wan_pipeline.emulator.state import EmulatorConfig
from wan_pipeline.execution import create_turns, engine
from wan_pipeline.execution.create_turns import QUIET_CAP_S, QUIET_STEP_S, creates_quiet
from wan_pipeline.execution.delivery import Deliverer
from wan_pipeline.execution.session import open_session
from wan_pipeline.planning.plan import PlannedTask, build_plan
from wan_pipeline.planning.spec import load_spec


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


def test_the_engine_lets_creates_pass_before_each_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wired in the engine: on DashScope (one create at a time), every finished task asks `creates_quiet` before
    its output is downloaded and stored, and every output is still stored once, from one task each."""
    monkeypatch.setenv("WAN_PIPELINE_STATE_DIR", str(tmp_path / "state"))
    for var in ("DASHSCOPE_API_KEY", "DASHSCOPE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    rows = [{"prompt_id": f"p{i}", "prompt": f"A pier number {i} at dusk"} for i in range(8)]
    spec_path = write_dataset(tmp_path, rows, name="quiet", provider="dashscope", model="wan2.7-image",
                              endpoint="emulator", params={"resolution": "1K"})  # fmt: skip
    plan = build_plan(load_spec(spec_path))
    last: dict[object, str] = {}  # per asyncio task (one per output): what it did last
    stores: list[str] = []
    real_quiet, real_store = engine.creates_quiet, Deliverer.store

    async def quiet(cap_s: float = QUIET_CAP_S) -> None:
        await real_quiet(cap_s)
        last[asyncio.current_task()] = "quiet"

    async def store(self: Deliverer, task: PlannedTask, *args: Any) -> Any:
        stores.append(last.pop(asyncio.current_task(), "no look"))
        return await real_store(self, task, *args)

    monkeypatch.setattr(engine, "creates_quiet", quiet)
    monkeypatch.setattr(Deliverer, "store", store)
    state, transport = in_process(EmulatorConfig(queue_s=0, process_s=0.02), "dashscope")

    async def run() -> list[str]:
        async with open_session(plan.spec, FAST_ENGINE, transport=transport) as session:
            return [o.status for o in await session.engine.run(list(plan.tasks))]

    assert asyncio.run(run()) == ["stored"] * len(rows)
    assert stores == ["quiet"] * len(rows)  # each download right after its own task's look
    assert set(state.report()["tasks_by_body"].values()) == {1}
