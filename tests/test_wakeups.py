"""Wake-ups between engines (`money.wakeups`): one waiter per key asks the database on a timer, the others are
woken by whoever frees what they wait for, the engine that opened first before later ones (slots and the
create turn). Counted, not timed: what matters is how many times waiters would go
to the database, which grew with the number of waiting tasks (issue 7)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

from wan_pipeline.execution.create_turns import _ProcessTurn
from wan_pipeline.money.wakeups import FOLLOWER_FACTOR, Wakeups, loop_rank

TIMEOUT_S = 0.05


def test_only_one_waiter_per_key_wakes_on_the_timer() -> None:
    async def scenario() -> tuple[int, int]:
        wakeups = Wakeups()
        timeouts = 0
        rounds = FOLLOWER_FACTOR // 2
        stop = asyncio.Event()

        async def waiter() -> None:
            nonlocal timeouts
            while not stop.is_set():
                if not await wakeups.wait("slots", TIMEOUT_S):
                    timeouts += 1  # where a lease waiter asks the database again

        tasks = [asyncio.create_task(waiter()) for _ in range(40)]
        await asyncio.sleep(rounds * TIMEOUT_S)  # half a follower's timeout
        stop.set()
        for _ in range(len(tasks)):
            wakeups.notify("slots")
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return timeouts, rounds

    timeouts, rounds = asyncio.run(scenario())
    assert 1 <= timeouts <= rounds + 1  # the poller's; 40 waiters each on the timer: about 160


def test_a_release_while_the_waiter_looks_wakes_it_at_once() -> None:
    """A task registers (`expecting`) before it looks at the resource (a database transaction in a thread): a
    release made while it looks wakes it as soon as it waits, where registering after the look lost that
    release and slept the whole timeout (60 s here). Another key's release does not wake it."""

    async def scenario() -> tuple[bool, bool, float]:
        wakeups = Wakeups()
        with wakeups.expecting("out-3", shared=False) as released:
            await asyncio.to_thread(wakeups.notify, "out-2")  # the look, during which other outputs go...
            other = released.picked
            await asyncio.to_thread(wakeups.notify, "out-3")  # ... and this one
            start = time.monotonic()
            woken = await released.wait(60)
            return other, woken, time.monotonic() - start

    other, woken, waited = asyncio.run(scenario())
    assert (other, woken) == (False, True)
    assert waited < 30  # at once, not after its 60 s timer (a wide bound: this is no timing test)


def test_a_wake_up_goes_to_the_oldest_follower_then_the_poller() -> None:
    async def scenario() -> list[str]:
        wakeups = Wakeups()
        woken: list[str] = []

        async def waiter(name: str) -> None:
            await wakeups.wait("slots", 60)
            woken.append(name)

        tasks = []
        for name in ("poller", "first", "second"):
            tasks.append(asyncio.create_task(waiter(name)))
            await asyncio.sleep(0)
        for _ in tasks:
            wakeups.notify("slots")
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return woken

    assert asyncio.run(scenario()) == ["first", "second", "poller"]


def test_the_poller_role_passes_to_the_next_waiter() -> None:
    async def scenario() -> bool:
        wakeups = Wakeups()
        first = asyncio.create_task(wakeups.wait("k", 0.01))  # the poller, times out
        await asyncio.sleep(0)
        follower = asyncio.create_task(wakeups.wait("k", 60))
        assert await first is False
        again = await wakeups.wait("k", 0.01)  # no poller now: this one is, and times out soon
        wakeups.notify("k")
        return again is False and await asyncio.wait_for(follower, 60)

    assert asyncio.run(scenario())


def test_waiters_for_things_of_their_own_each_wake_on_the_timer() -> None:
    async def scenario() -> tuple[int, bool]:
        wakeups = Wakeups()
        waits = [asyncio.create_task(wakeups.wait("outputs", TIMEOUT_S, shared=False)) for _ in range(5)]
        await asyncio.sleep(0)
        nobody_polls_for_the_others = not wakeups._pollers
        results = await asyncio.wait_for(asyncio.gather(*waits), 60)
        return sum(1 for woken in results if not woken), nobody_polls_for_the_others and not wakeups._waiters

    # each on its own timer: none is a follower; and no key is kept once nobody waits (one per output)
    assert asyncio.run(scenario()) == (5, True)


@contextlib.contextmanager
def two_engines() -> Iterator[tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]]:
    """Two event loops in their own threads, as two range runs of `generate`; the first ranks first."""
    loops = [asyncio.new_event_loop() for _ in range(2)]
    for loop in loops:
        loop_rank(loop)  # as `open_session` does when a run's engine opens
    threads = [threading.Thread(target=loop.run_forever, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        yield loops[0], loops[1]
    finally:
        for loop, thread in zip(loops, threads, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


def test_a_wake_up_goes_to_the_engine_that_opened_first() -> None:
    """A slot freed goes to a waiter of the earliest run before older waiters of a later one: runs side by
    side then end one after the other, and the next starts while the others keep the slots busy."""
    wakeups = Wakeups()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await wakeups.wait("slots", 60)
        woken.append(name)

    with two_engines() as (first, later):
        futures = []
        for name, loop in (("poller", later), ("later-old", later), ("first-new", first), ("later-new", later)):
            futures.append(asyncio.run_coroutine_threadsafe(waiter(name), loop))
            time.sleep(0.05)  # each waits before the next does
        for _ in futures:
            wakeups.notify("slots")
            time.sleep(0.05)
        for future in futures:
            future.result(10)
    assert woken == ["first-new", "later-old", "later-new", "poller"]


def test_the_create_turn_goes_to_the_engine_that_opened_first() -> None:
    turn = _ProcessTurn()
    order: list[str] = []

    async def create(name: str) -> None:
        await turn.acquire()
        order.append(name)
        turn.release()

    async def hold_then_release(wait: threading.Event) -> None:
        await turn.acquire()
        await asyncio.to_thread(wait.wait, 10)
        turn.release()

    with two_engines() as (first, later):
        go = threading.Event()
        holder = asyncio.run_coroutine_threadsafe(hold_then_release(go), later)
        time.sleep(0.05)
        creates = []
        for name, loop in (("later-1", later), ("later-2", later), ("first-1", first)):
            creates.append(asyncio.run_coroutine_threadsafe(create(name), loop))
            time.sleep(0.05)  # queued in this order
        go.set()
        for future in [holder, *creates]:
            future.result(10)
    assert order == ["first-1", "later-1", "later-2"]
