"""The learned poll schedule: first polls near the expected completion, few polls per task, bounded overshoot."""

from __future__ import annotations

import random

import pytest

from wan_pipeline.execution.poll_schedule import PollSchedule
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.providers.registry import get_provider
from wan_pipeline.resources.provider import ProviderResource

KEY = "wan2.7-image/text_to_image"


def simulate(schedule: PollSchedule, latencies: list[float]) -> tuple[list[int], list[float]]:
    """Each task polled by the schedule until done; returns polls per task and overshoot per task (seconds)."""
    polls, overshoot = [], []
    for latency in latencies:
        t, n, delay = 0.0, 0, schedule.first_delay(KEY)
        while True:
            t += delay
            n += 1
            if t >= latency:
                schedule.observe(KEY, t, first_poll_hit=n == 1)
                break
            delay = schedule.next_delay(KEY, n - 1)
        polls.append(n)
        overshoot.append(t - latency)
    return polls, overshoot


def test_constant_latency_converges_to_about_one_poll_and_small_overshoot() -> None:
    schedule = PollSchedule(EngineSettings(poll_initial_s=2.5, poll_max_s=10), host_min_interval_s=1.0)
    polls, overshoot = simulate(schedule, [2.0] * 2000)
    steady_polls, steady_over = polls[200:], overshoot[200:]
    assert sum(steady_polls) / len(steady_polls) <= 1.5
    assert sum(steady_over) / len(steady_over) <= 0.10 * 2.0


def test_jittered_latency_keeps_polls_bounded() -> None:
    rng = random.Random(7)
    schedule = PollSchedule(EngineSettings(poll_initial_s=2.5, poll_max_s=10), host_min_interval_s=1.0)
    polls, _ = simulate(schedule, [rng.uniform(1.8, 2.2) for _ in range(2000)])
    assert sum(polls[200:]) / len(polls[200:]) <= 2.0


def test_cold_start_follows_the_configured_schedule() -> None:
    settings = EngineSettings(poll_initial_s=0.5, poll_growth=2.0, poll_max_s=3.0)
    schedule = PollSchedule(settings)
    assert schedule.first_delay(KEY) == 0.5
    assert [schedule.next_delay(KEY, i) for i in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_a_resumed_task_is_not_waited_for_twice() -> None:
    schedule = PollSchedule(EngineSettings())
    schedule.observe(KEY, 2.0, first_poll_hit=True)
    assert schedule.first_delay(KEY, age_s=1.5) == pytest.approx(0.5)
    assert schedule.first_delay(KEY, age_s=60) == 0.0


def test_retries_never_poll_closer_than_the_hosts_cadence_nor_wider_than_poll_max() -> None:
    schedule = PollSchedule(EngineSettings(poll_max_s=10), host_min_interval_s=1.0)
    schedule.observe(KEY, 2.0, first_poll_hit=True)
    assert all(1.0 <= schedule.next_delay(KEY, i) <= 10 for i in range(20))


@pytest.mark.parametrize("name", ["rivya", "evolink", "reapi", "runware", "dashscope"])
def test_each_host_has_declared_limits_the_resource_uses_unless_configured(name: str) -> None:
    limits = get_provider(name).default_limits
    assert limits.max_concurrency >= 1 and limits.submits_per_second > 0
    derived = ProviderResource().settings(name)
    assert (derived.max_concurrency, derived.submits_per_second) == (limits.max_concurrency, limits.submits_per_second)
    configured = ProviderResource(max_concurrency=64, submits_per_second=9.0).settings(name)
    assert (configured.max_concurrency, configured.submits_per_second) == (64, 9.0)


def test_a_cold_start_batch_finishing_together_does_not_walk_the_estimate_below_the_latency() -> None:
    """64 tasks polled at the cold-start delay all hit at once: they say L <= 2.5 s, nothing about L itself."""
    schedule = PollSchedule(EngineSettings(poll_initial_s=2.5, poll_max_s=10), host_min_interval_s=1.0)
    first = schedule.first_delay(KEY)
    for _ in range(64):
        schedule.observe(KEY, first, first_poll_hit=True, first_poll_s=first)
    assert schedule.expected(KEY) == pytest.approx(2.5 * 0.97, rel=0.01)  # one step, not 64


def test_host_reported_latencies_put_the_first_poll_just_after_the_task_ends() -> None:
    rng = random.Random(3)
    schedule = PollSchedule(EngineSettings(poll_initial_s=2.5, poll_max_s=10), host_min_interval_s=1.0)
    latencies = [rng.uniform(1.95, 2.05) for _ in range(2000)]
    polls, overshoot = [], []
    for latency in latencies:
        t, n, delay = 0.0, 0, schedule.first_delay(KEY)
        first_at = delay
        while True:
            t += delay
            n += 1
            if t >= latency:
                schedule.observe(KEY, t, first_poll_hit=n == 1, first_poll_s=first_at, host_latency_s=latency)
                break
            delay = schedule.next_delay(KEY, n - 1)
        polls.append(n)
        overshoot.append(t - latency)
    steady_polls, steady_over = polls[100:], overshoot[100:]
    assert sum(steady_polls) / len(steady_polls) <= 1.1
    assert sum(steady_over) / len(steady_over) <= 0.05 * 2.0


def test_one_scout_per_cold_key_at_the_hosts_cadence_widening_with_age() -> None:
    schedule = PollSchedule(EngineSettings(poll_initial_s=0.2, poll_max_s=10), host_min_interval_s=1.0)
    assert schedule.scout(KEY) and not schedule.scout(KEY)  # one at a time
    assert schedule.scout_delay_s(0.0) == 1.0  # the host's cadence, even below a shorter poll_initial_s
    assert schedule.scout_delay_s(30.0) == pytest.approx(3.0) and schedule.scout_delay_s(500.0) == 10
    schedule.scouted(KEY)
    assert schedule.scout(KEY)  # given back: the next cold task may scout
    schedule.scouted(KEY)
    schedule.observe(KEY, 2.0, first_poll_hit=True)
    assert schedule.learned(KEY) and not schedule.scout(KEY)  # learned: nobody scouts
    no_cadence = PollSchedule(EngineSettings(poll_initial_s=2.5))
    assert no_cadence.scout_delay_s(0.0) == 0.5
