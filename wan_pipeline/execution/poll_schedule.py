"""When to poll a task: learned from the tasks of the same model and mode that finished before it.

The provider is the physical limit (N tasks of latency L at concurrency C need ceil(N/C)·L), so every
second between a task finishing and our noticing it is a slot of concurrency wasted. A fixed schedule
either overshoots (first poll at 2.5 s for a 2 s task: 25 %) or polls many times. Here:

- cold start (nothing finished yet for this model/mode): `poll_initial_s`, then ×`poll_growth`;
- once a task has finished, the first poll of the next one goes at the expected completion E;
- a hit (done at the first poll) moves E a little earlier, a miss (still pending at E) moves it later.
  While E has never missed it falls fast (×0.97: it started from an overshooting cold-start figure);
  afterwards slowly (×0.998), so misses stay rare (about 4 %) and the overshoot a few percent of L.
- after a miss the task is asked again in steps of 5 % of E, never closer than the host's documented
  cadence (`Provider.min_poll_interval_s`, capped by `poll_max_s`) and never further apart than `poll_max_s`.

Polls per task stay near 1 (the minimum); the overshoot stays under ~10 % of the latency once learned.
"""

from __future__ import annotations

from dataclasses import dataclass

from wan_pipeline.execution.settings import EngineSettings

_FAST_DECAY = 0.97
_SLOW_DECAY = 0.998
_MISS_GROWTH = 1.05
_RETRY_FRACTION = 0.05


@dataclass
class _Estimate:
    expected_s: float
    missed: bool = False


class PollSchedule:
    """Shared by every task of one engine; keyed by (model, mode)."""

    def __init__(self, settings: EngineSettings, host_min_interval_s: float = 0.0) -> None:
        self.settings = settings
        self.floor_s = min(host_min_interval_s, settings.poll_max_s)
        self._learned: dict[str, _Estimate] = {}

    def first_delay(self, key: str, age_s: float = 0.0) -> float:
        """Seconds to wait before the first poll of a task submitted `age_s` seconds ago."""
        est = self._learned.get(key)
        target = est.expected_s if est is not None else self.settings.poll_initial_s
        return max(0.0, target - age_s)

    def next_delay(self, key: str, retry_no: int) -> float:
        """Seconds to wait after the `retry_no`-th poll (0-based) that found the task still pending."""
        est = self._learned.get(key)
        base = self.settings.poll_initial_s if est is None else _RETRY_FRACTION * est.expected_s
        growth = self.settings.poll_growth ** (retry_no + (1 if est is None else 0))
        return min(max(base * growth, self.floor_s), self.settings.poll_max_s)

    def observe(self, key: str, done_after_s: float, first_poll_hit: bool) -> None:
        """A task of `key` was seen finished `done_after_s` after its submission."""
        est = self._learned.get(key)
        if est is None:
            self._learned[key] = _Estimate(done_after_s)
        elif first_poll_hit:
            est.expected_s *= _SLOW_DECAY if est.missed else _FAST_DECAY
        else:
            est.missed = True
            # L > E, and L <= done_after_s: step up, never past what was seen
            est.expected_s = min(est.expected_s * _MISS_GROWTH, done_after_s)

    def expected(self, key: str) -> float | None:
        est = self._learned.get(key)
        return est.expected_s if est is not None else None
