"""The gaps between waves: when this process's tasks at the host are not expected back for a while, so a burst of
work that holds the interpreter (a range run's start or end, a full garbage collection) can run
without delaying a create.

Why it matters: a task holds its slot at the host for the host's latency, so a slot's next create is as late as
its last one was, plus what delayed it: a create delayed once stays late for the rest of the run. At 2,000
outputs and 32 in flight, the waves' creates spread from 0.1 s to 1.1-1.8 s over a run, and the last
half-wave's creates with them (benchmarks/RESULTS.md, issue 7): a range run's start (0.3-0.5 s of the
interpreter), the lineage modules' import, or a full collection (40-90 ms) landing among a wave's terminal
answers pushed every create after it. The gaps are known in advance: a task sent at `t` comes back at `t + latency`.

`Lease.busy` (a slot taken, just before the create) and `Lease.idle` (the terminal answer) report here; the
latency is the median of the last answers. Process-wide: every engine of the process (range runs side by side)
shares the interpreter.
"""

from __future__ import annotations

import collections
import gc
import statistics
import threading
import time

#: latencies remembered (their median is the estimate: a task answered early, a failure say, is not the rule)
_SAMPLES = 64
#: how long after the last slot taken or given back the process counts as busy with it (the create that follows)
SETTLE_S = 0.02
#: how often a waiting thread looks again
STEP_S = 0.01


class Lulls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[object, float] = {}
        self._latencies: collections.deque[float] = collections.deque(maxlen=_SAMPLES)
        self._last_change = 0.0

    def started(self, key: object) -> None:
        """`key`'s task takes a slot at the host now (its create follows)."""
        now = time.monotonic()
        with self._lock:
            self._sent[key] = now
            self._last_change = now

    def ended(self, key: object, answered: bool = True) -> None:
        """`key`'s task has its terminal answer (`answered`), or its slot is given back without one (an error):
        no longer expected back."""
        now = time.monotonic()
        with self._lock:
            sent = self._sent.pop(key, None)
            if sent is not None and answered:
                self._latencies.append(now - sent)
            self._last_change = now

    def quiet_for(self) -> float:
        """Seconds until a task of this process is expected back (inf when none is at the host; 0 while a slot
        just changed hands, or while the latency is not known yet)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_change < SETTLE_S:
                return 0.0
            if not self._sent:
                return float("inf")
            if not self._latencies:
                return 0.0
            return max(0.0, min(self._sent.values()) + statistics.median(self._latencies) - now)

    def wait(self, need_s: float, cap_s: float) -> bool:
        """Blocks (a thread, not an event loop) until `need_s` of quiet lie ahead, at most `cap_s`: True if found."""
        deadline = time.monotonic() + cap_s
        while self.quiet_for() < need_s:
            if time.monotonic() >= deadline:
                return False
            time.sleep(STEP_S)
        return True


#: this process's lulls (every engine in it reports here)
LULLS = Lulls()

#: what a range run's start needs, measured (0.3-0.5 s of the interpreter), and the longest
#: they wait for it (a wave of 2 s tasks leaves about 1.5 s between its creates and its answers)
BURST_S, BURST_CAP_S = 0.5, 2.5


def wait_for_lull(need_s: float = BURST_S, cap_s: float = BURST_CAP_S) -> bool:
    return LULLS.wait(need_s, cap_s)


def collect_in_lull(cap_s: float = BURST_CAP_S) -> None:
    """A full collection of the cyclic garbage, in a gap between waves if one comes within `cap_s` (`generate`
    makes its full collections here, after each range run, not where the collector's counters fall:
    `execution.memory.settle_collector`)."""
    wait_for_lull(0.15, cap_s)
    gc.collect()
