"""When to poll a task: learned from the tasks of the same model and mode that finished before it.

The provider is the physical limit (N tasks of latency L at concurrency C need ceil(N/C)·L), so every
second between a task finishing and our noticing it is a slot of concurrency wasted. A fixed schedule
either overshoots (first poll at 2.5 s for a 2 s task: 25 %) or polls many times. Here:

- cold start (nothing finished yet for this model/mode, in this run or recorded in the ledger by an earlier
  one: `seed`): one task, the scout, is polled at the host's documented cadence; the others wait
  `poll_initial_s` (then ×`poll_growth`) unless the schedule learns sooner — then they are asked at what it
  learned. A first wave at 2.5 s for a 2 s task lost half a second in every slot;
- where the host reports how long a task took on its side (DashScope's `submit_time`..`end_time`), the
  first poll goes at a high quantile of the recent host latencies plus a small margin. Our clock starts
  when the create's answer arrives, after the host's own start, so polling at the host's latency lands
  just after the task's end: overshoot is the latency's spread, not a guess;
- otherwise the latency is only bracketed by our polls. A first poll that found the task done says L ≤ the
  age it was polled at: E drops to that age and, if the poll was at E, a little below it (×0.97 until E has
  ever missed, then ×0.998, so misses stay rare, about 4 %). A miss moves E up (×1.05), never past the age
  the task was then seen done at. Hits of tasks polled later than E (the cold-start batch) carry no news
  about E and do not lower it further: 64 of them at once must not walk E far below L;
- after a miss the task is asked again in steps of 5 % of E, never closer than the host's documented
  cadence (`Provider.min_poll_interval_s`, capped by `poll_max_s`) and never further apart than `poll_max_s`.

Polls per task stay near 1 (the minimum); the overshoot stays under ~10 % of the latency once learned.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from wan_pipeline.execution.settings import EngineSettings

_FAST_DECAY = 0.97
_SLOW_DECAY = 0.998
_MISS_GROWTH = 1.05
_RETRY_FRACTION = 0.05
#: host-reported latencies kept per key, the quantile of them polled at, and the margin added: hosts report
#: their times to the millisecond (DashScope's submit_time/end_time), so a difference of two is at most 1 ms
#: short of the true latency, and our clock starts at the create's answer, after the host's start; the
#: quantile, not the margin, covers the latencies' spread (20 ms here cost 1 % of every 2 s cycle; 5 ms,
#: 0.16 s of a 63-wave run)
_HOST_WINDOW = 64
_HOST_QUANTILE = 0.95
_HOST_MARGIN_S = 0.0025
#: a first poll within this factor of E counts as "polled at E"
_AT_E = 1.02


@dataclass
class _Estimate:
    expected_s: float
    missed: bool = False
    host: deque[float] = field(default_factory=lambda: deque(maxlen=_HOST_WINDOW))


#: what this process has learned, per host: the range runs `generate` runs side by side (and one after the
#: other) each have their own engine, and a run of fewer outputs than the concurrency is all first wave
_PROCESS: dict[str, dict[str, _Estimate]] = {}
#: per host, the keys one of whose cold-start tasks is polled at the host's cadence (the scout)
_SCOUTS: dict[str, set[str]] = {}
#: a scout's cadence where the host documents none, and the fraction of its task's age it widens to
_SCOUT_FLOOR_S = 0.5
_SCOUT_GROWTH = 0.1


def forget_learned() -> None:
    """Drop what this process learned (a fresh start, as in a new process)."""
    _PROCESS.clear()
    _SCOUTS.clear()


class PollSchedule:
    """Shared by every task of one engine, keyed by (model, mode); `host` shares it with this process's other
    engines on that host."""

    def __init__(self, settings: EngineSettings, host_min_interval_s: float = 0.0, host: str | None = None) -> None:
        self.settings = settings
        self.floor_s = min(host_min_interval_s, settings.poll_max_s)
        self._learned: dict[str, _Estimate] = {} if host is None else _PROCESS.setdefault(host, {})
        self._scouts: set[str] = set() if host is None else _SCOUTS.setdefault(host, set())

    def scout(self, key: str) -> bool:
        """True for one task at a time of a `key` nothing is learned of yet: it is polled at the host's cadence
        (`scout_delay_s`) so that the first wave learns the latency from it instead of all waiting
        `poll_initial_s` (the others wait for the schedule to learn, `learned`). Give it back with `scouted`."""
        if key in self._learned or key in self._scouts:
            return False
        self._scouts.add(key)
        return True

    def scouted(self, key: str) -> None:
        self._scouts.discard(key)

    def scout_delay_s(self, age_s: float) -> float:
        """The scout's next look: the host's cadence, widening to a tenth of the task's age (a video's scout
        looks about 25 times in a minute, not 60), never past `poll_max_s`."""
        cadence = self.floor_s if self.floor_s > 0 else min(_SCOUT_FLOOR_S, self.settings.poll_initial_s)
        return min(max(cadence, _SCOUT_GROWTH * age_s), self.settings.poll_max_s)

    def learned(self, key: str) -> bool:
        return key in self._learned

    def seed(self, key: str, recent_s: list[float]) -> None:
        """Start `key` from the latencies earlier runs recorded (the ledger's), not from `poll_initial_s`: each run
        has its own engine, and a cold start costs every task of its first wave the difference. Their median: a
        recorded latency runs to the poll that saw the task finished, so it is an upper bound of the true one."""
        if key not in self._learned and recent_s:
            ordered = sorted(recent_s)
            self._learned[key] = _Estimate(ordered[len(ordered) // 2])

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

    def observe(
        self,
        key: str,
        done_after_s: float,
        first_poll_hit: bool,
        first_poll_s: float | None = None,
        host_latency_s: float | None = None,
    ) -> None:
        """A task of `key` was seen finished `done_after_s` after its submission; its first poll went at
        `first_poll_s` (default: `done_after_s`); the host says it took `host_latency_s`, if it says."""
        est = self._learned.get(key)
        if host_latency_s is not None and host_latency_s >= 0:
            est = self._learned.setdefault(key, _Estimate(done_after_s))
            est.host.append(host_latency_s)
            ordered = sorted(est.host)
            est.expected_s = ordered[min(len(ordered) - 1, int(_HOST_QUANTILE * len(ordered)))] + _HOST_MARGIN_S
            return
        polled_at = done_after_s if first_poll_s is None else first_poll_s
        if est is None:
            self._learned[key] = _Estimate(done_after_s)
        elif est.host:
            return  # host-reported latencies decide for this key
        elif first_poll_hit:
            at_e = polled_at <= est.expected_s * _AT_E
            est.expected_s = min(est.expected_s, polled_at)
            if at_e:
                est.expected_s *= _SLOW_DECAY if est.missed else _FAST_DECAY
        else:
            est.missed = True
            # L > E, and L <= done_after_s: step up, never past what was seen
            est.expected_s = min(est.expected_s * _MISS_GROWTH, done_after_s)

    def expected(self, key: str) -> float | None:
        est = self._learned.get(key)
        return est.expected_s if est is not None else None
