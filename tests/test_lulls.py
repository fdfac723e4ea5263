"""The gaps between waves (`money.lulls`): read from the slots taken and given back, with a clock the test sets,
and `generate`'s full collections moved there (`execution.memory`)."""

from __future__ import annotations

import gc
import threading

import pytest

from wan_pipeline.execution.memory import pause_collector, resume_collector, settle_collector
from wan_pipeline.money import lulls
from wan_pipeline.money.lulls import SETTLE_S, Lulls


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(lulls.time, "monotonic", c)
    return c


def test_the_next_answer_is_expected_a_median_latency_after_the_oldest_task_at_the_host(clock: Clock) -> None:
    lull = Lulls()
    assert lull.quiet_for() == float("inf")  # nothing at the host: nothing to disturb
    lull.started("a")
    clock.now += 1
    assert lull.quiet_for() == 0.0  # at the host, latency not known yet: no gap assumed
    for latency, key in [(2.0, "x"), (2.1, "y"), (0.1, "failed fast")]:
        lull.started(key)
        clock.now += latency
        lull.ended(key)
    assert lull.quiet_for() == 0.0  # a slot just changed hands: its create follows
    clock.now += 2 * SETTLE_S
    # "a" went out 5.22 s ago; the median latency is 2.0 s (the failure's 0.1 s is not the rule): overdue
    assert lull.quiet_for() == 0.0
    lull.ended("a", answered=False)
    lull.started("b")
    clock.now += 0.5
    assert lull.quiet_for() == pytest.approx(2.0 - 0.5)
    lull.ended("b", answered=False)  # given back without an answer (an error): no latency learned from it
    clock.now += 2 * SETTLE_S
    assert lull.quiet_for() == float("inf")


def test_a_wait_ends_at_the_gap_or_at_its_cap() -> None:
    lull = Lulls()
    for key in ("x", "y"):
        lull.started(key)
        lull.ended(key)
    lull.started("at the host")  # expected back within milliseconds: no gap of a second ahead
    assert lull.wait(need_s=1.0, cap_s=0.1) is False
    threading.Timer(0.05, lull.ended, args=("at the host",)).start()
    assert lull.wait(need_s=1.0, cap_s=5.0) is True  # answered: nothing expected back any more


def test_generate_makes_its_full_collections_itself_and_gives_the_collector_back() -> None:
    before = gc.get_threshold()
    pause_collector()
    try:
        settle_collector()
        assert gc.isenabled()
        young, middle, oldest = gc.get_threshold()
        assert (young, middle) == before[:2] and oldest > 1_000_000  # no full collection where counters fall
        lulls.collect_in_lull(cap_s=0.1)  # and one when asked (nothing at the host: at once)
    finally:
        resume_collector()
    assert gc.get_threshold() == before and gc.isenabled()
