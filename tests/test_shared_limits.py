"""Limits of one provider account shared through the ledger database, on SQLite and on real PostgreSQL.

Concurrency leases (a slot per output in flight, an output to one holder), their expiry when a holder is
killed, and submission pacing reserved atomically by several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import PostgresCluster

from wan_pipeline.money import wakeups
from wan_pipeline.money.database import Database
from wan_pipeline.money.leases import LeaseSettings, SlotLeases
from wan_pipeline.money.ledger import Ledger
from wan_pipeline.money.rate import SharedRateGate

SCOPE = "dashscope http://127.0.0.1:1/dashscope"
OTHER_MACHINE = "other-host/4026531836:4242:deadbeef"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database("limits")


@pytest.fixture
def two_dbs(where: str) -> Iterator[tuple[Database, Database]]:
    """Two connections to one ledger database, as two processes (or machines) would have."""
    a, b = Ledger.open(where), Ledger.open(where)
    try:
        yield a.db, b.db
    finally:
        a.close()
        b.close()


def test_slots_are_shared_and_an_output_is_leased_once(two_dbs: tuple[Database, Database]) -> None:
    one = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=2))
    two = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=2))
    first = one.try_acquire("out-1")
    assert first == 0
    assert two.try_acquire("out-1") is None  # the other holder works on it: wait, never buy it too
    second = two.try_acquire("out-2")
    assert second == 1
    assert one.try_acquire("out-3") is None and two.try_acquire("out-3") is None  # account limit 2 reached
    assert [(s, subj) for s, _, subj in one.holders()] == [(0, "out-1"), (1, "out-2")]
    other_scope = SlotLeases(two_dbs[1], "rivya https://rivya.ai", LeaseSettings(limit=1))
    assert other_scope.try_acquire("out-3") == 0  # another account has its own slots
    one.release(first)
    assert two.try_acquire("out-3") == 0
    two.release(0)  # a holder releases only its own leases
    one.release(1)
    assert [subj for _, _, subj in one.holders()] == ["out-2"]


async def test_a_slot_is_held_from_create_to_terminal_answer_and_the_output_until_released(
    two_dbs: tuple[Database, Database],
) -> None:
    """`hold` keeps the output to one holder throughout; `busy` takes one of the account's slots (waiting while
    all are taken), `idle` gives it to the next create while the output stays held (downloading, storing)."""
    one = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=1, wait_s=0.05))
    two = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=1, wait_s=0.05))
    async with one.hold("out-1") as first:
        assert not first.counted and two.try_claim("out-1") is None  # the output is ours before any slot
        await first.busy()
        assert first.slot == 0 and two.try_acquire("out-2") is None  # the account's one slot is taken
        async with two.hold("out-2") as second:
            waiting = asyncio.ensure_future(second.busy())
            await asyncio.sleep(0.2)
            assert not waiting.done()  # waits for the slot
            await first.idle()  # the host answered: the slot goes on, the output stays ours
            await asyncio.wait_for(waiting, 5)
            assert second.slot == 0 and not first.counted
            assert two.try_claim("out-1") is None
            assert sorted(subject for _, _, subject in one.holders()) == ["out-1", "out-2"]
    assert one.holders() == []  # both released on exit
    assert two.try_acquire("out-1") == 0


async def test_slots_freed_elsewhere_reach_the_tasks_waiting_here_with_few_asks(
    two_dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many tasks of this process wait for slots another holder has: one of them asks the database on the
    timer, the rest wait to be woken. When the other holder frees its slots, the one that finds a slot wakes
    the next, so all are taken without each waiter polling."""
    limit, waiting = 4, 24
    elsewhere = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=limit))
    held = [elsewhere.try_acquire(f"theirs-{i}") for i in range(limit)]
    here = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=limit, wait_s=0.05))
    asks = 0
    promote = here.try_promote

    def counted_promote(slot: int) -> tuple[int, int] | None:
        nonlocal asks
        asks += 1
        return promote(slot)

    monkeypatch.setattr(here, "try_promote", counted_promote)
    monkeypatch.setattr(wakeups, "FOLLOWER_FACTOR", 10_000)  # followers only ever woken: the chain is what works
    async with contextlib.AsyncExitStack() as stack:
        leases = [await stack.enter_async_context(here.hold(f"ours-{i}")) for i in range(waiting)]
        busy = [asyncio.ensure_future(lease.busy()) for lease in leases]
        await asyncio.sleep(0.3)  # six of the poller's rounds
        assert asks <= waiting + 8  # each tried once, then the poller; every waiter polling: about 150
        for slot in held:
            elsewhere.release(slot)  # the other holder stops
        deadline = asyncio.get_running_loop().time() + 10
        while sum(f.done() for f in busy) < limit and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # the poller's next round, then the chain
        assert sum(f.done() for f in busy) == limit == sum(lease.counted for lease in leases)
        for future in busy:
            future.cancel()


def test_a_lease_of_a_vanished_machine_lapses_after_its_ttl(two_dbs: tuple[Database, Database]) -> None:
    gone = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=1, ttl_s=0.6), holder=OTHER_MACHINE)
    here = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=1, ttl_s=60))
    assert gone.try_acquire("out-1") == 0
    assert here.try_acquire("out-1") is None  # not yet expired: it may still be working
    asyncio.run(asyncio.sleep(0.8))
    assert here.try_acquire("out-1") == 0


HOLD = textwrap.dedent('''
    import sys, time
    from wan_pipeline.money.leases import LeaseSettings, SlotLeases
    from wan_pipeline.money.ledger import Ledger
    ledger = Ledger.open(sys.argv[1])
    leases = SlotLeases(ledger.db, sys.argv[2], LeaseSettings(limit=1, ttl_s=3600))
    print(leases.try_acquire("out-1"), flush=True)
    time.sleep(3600)
''')


def test_a_killed_holder_on_this_host_is_reaped_at_once(where: str, tmp_path: Path) -> None:
    Ledger.open(where).close()
    script = tmp_path / "hold.py"
    script.write_text(HOLD, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), where, SCOPE], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "0"
        with Ledger.open(where) as ledger:
            leases = SlotLeases(ledger.db, SCOPE, LeaseSettings(limit=1, ttl_s=3600))
            assert leases.try_acquire("out-1") is None  # alive: its lease holds, however long the TTL
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert leases.try_acquire("out-1") == 0  # its process is gone: no need to wait out the TTL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def test_a_held_lease_is_renewed_past_its_ttl(two_dbs: tuple[Database, Database]) -> None:
    holder = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=4, ttl_s=0.4), holder=OTHER_MACHINE)
    rival = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=4))
    async with holder.hold("out-1") as lease:
        await lease.busy()
        assert lease.slot == 0
        for _ in range(4):  # 1.2 s in all: three TTLs, kept alive by the heartbeat
            await asyncio.sleep(0.3)
            assert rival.try_acquire("out-1") is None
    assert holder.holders() == []  # released on exit
    assert rival.try_acquire("out-1") == 0


async def test_hold_waits_for_an_output_leased_elsewhere(two_dbs: tuple[Database, Database]) -> None:
    first = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=4, wait_s=0.05))
    second = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=4, wait_s=0.05))
    order: list[str] = []

    async def worker(leases: SlotLeases, name: str, pause: float) -> None:
        async with leases.hold("out-1"):
            order.append(f"{name} in")
            await asyncio.sleep(pause)
            order.append(f"{name} out")

    await asyncio.gather(worker(first, "a", 0.3), worker(second, "b", 0.0))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_an_output_released_here_goes_to_the_task_waiting_for_it_without_asking_the_others(
    two_dbs: tuple[Database, Database],
) -> None:
    """Tasks of this process wait for outputs another engine here holds (the first range run for the head
    start's): releasing one wakes the task waiting for that one at once — with the timer at 60 s, only the
    release can — and none of the tasks waiting for the others asks the database for theirs."""
    holder = SlotLeases(two_dbs[0], SCOPE, LeaseSettings(limit=4))
    waiter = SlotLeases(two_dbs[1], SCOPE, LeaseSettings(limit=4, wait_s=60))
    asks: list[str] = []
    claim = waiter.try_claim

    def counted_claim(subject: str) -> int | None:
        found = claim(subject)
        asks.append(subject)
        if found is None and asks.count(subject) == 1:
            time.sleep(0.3)  # a slow answer: the release below comes before the task waits (`expecting`)
        return found

    waiter.try_claim = counted_claim  # type: ignore[method-assign]
    release = {f"out-{i}": asyncio.Event() for i in range(6)}

    async def held(subject: str) -> None:
        async with holder.hold(subject):
            await release[subject].wait()

    async def wanted(subject: str) -> str:
        async with waiter.hold(subject):
            return subject

    holding = [asyncio.ensure_future(held(subject)) for subject in release]
    await asyncio.sleep(0.2)
    waiting = {subject: asyncio.ensure_future(wanted(subject)) for subject in release}
    while len(asks) < len(release):  # each asked once and found its output taken
        await asyncio.sleep(0.01)
    release["out-3"].set()
    assert await asyncio.wait_for(waiting["out-3"], 5) == "out-3"
    assert sorted(asks) == sorted([*release, "out-3"])  # one more ask: the one released, by its own task
    assert not any(task.done() for subject, task in waiting.items() if subject != "out-3")
    for event in release.values():
        event.set()
    assert sorted(await asyncio.wait_for(asyncio.gather(*waiting.values()), 5)) == sorted(release)
    await asyncio.gather(*holding)


RESERVE = textwrap.dedent('''
    import sys
    from wan_pipeline.money.ledger import Ledger
    from wan_pipeline.money.rate import SharedRateGate
    with Ledger.open(sys.argv[1]) as ledger:
        gate = SharedRateGate(ledger.db, sys.argv[2], float(sys.argv[3]))
        print(" ".join(repr(gate.reserve()) for _ in range(int(sys.argv[4]))))
''')


def test_submission_instants_are_reserved_atomically_across_processes(where: str, tmp_path: Path) -> None:
    """Three processes reserve 20 creates each at 50/s: the 60 instants are all 20 ms apart."""
    Ledger.open(where).close()
    script = tmp_path / "reserve.py"
    script.write_text(RESERVE, encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, str(script), where, SCOPE, "50", "20"], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    instants = sorted(float(t) for p in procs for t in p.communicate(timeout=300)[0].split())
    assert all(p.returncode == 0 for p in procs)
    assert len(instants) == 60
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    assert min(gaps) >= 0.02 - 1e-6


def test_a_pause_holds_every_run_on_the_account(two_dbs: tuple[Database, Database]) -> None:
    a = SharedRateGate(two_dbs[0], SCOPE, 1000)
    b = SharedRateGate(two_dbs[1], SCOPE, 1000)
    before = two_dbs[1].now()
    a.pause(30)  # a 429 with Retry-After: 30 seen by one run
    assert b.reserve() >= before + 30  # the other run's next create waits too
    a.pause(1)  # a shorter pause never shortens a longer one
    assert b.reserve() >= before + 30


async def test_a_session_wires_the_shared_limits_into_its_engine(
    write_spec: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from wan_pipeline.execution.session import account_scope, open_session
    from wan_pipeline.planning.spec import load_spec

    monkeypatch.delenv("WAN_PIPELINE_LEDGER_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no_instance"))
    monkeypatch.setenv("WAN_PIPELINE_LEASE_TTL_S", "7")
    spec = load_spec(write_spec([{"prompt_id": "a", "prompt": "a fox"}], endpoint="emulator"))  # type: ignore[operator]
    async with open_session(spec) as session:
        gate, slots = session.engine.gate, session.engine.slots
        assert isinstance(gate, SharedRateGate) and isinstance(slots, SlotLeases)
        assert gate.scope == slots.scope == account_scope(session.endpoint) == f"rivya {session.endpoint.base_url}"
        assert slots.settings.limit == session.engine.settings.max_concurrency and slots.settings.ttl_s == 7
        assert gate.db is slots.db is session.ledger.db  # in the ledger's own database
        assert session.engine.calls.gate is gate  # every create and poll is paced by it


async def test_another_runs_pause_is_honoured_without_a_read_per_call(
    two_dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls read the account's pause at most every PAUSE_REFRESH_S; a pause set elsewhere holds the next
    call after that."""
    from wan_pipeline.money import rate

    a = SharedRateGate(two_dbs[0], SCOPE, 1000)
    b = SharedRateGate(two_dbs[1], SCOPE, 1000)
    reads = 0
    original = SharedRateGate._read_pause

    def counting(self: SharedRateGate) -> tuple[float, float]:
        nonlocal reads
        reads += 1
        return original(self)

    monkeypatch.setattr(SharedRateGate, "_read_pause", counting)
    for _ in range(50):
        await b.before_call()
    assert reads == 1
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    a.pause(30)
    monkeypatch.setattr(rate, "PAUSE_REFRESH_S", 0.0)
    monkeypatch.setattr(rate.asyncio, "sleep", fake_sleep)
    await b.before_call()
    assert slept and slept[-1] > 25


async def test_submission_instants_reserved_ahead_are_never_sent_in_a_burst(
    two_dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a high rate a run reserves a block of instants at once; each send lies within the interval of an
    instant of its own, and one the run was too late for is dropped, not used: however the run falls behind
    its block, no window of time holds more sends than the rate allows."""
    from wan_pipeline.money import rate

    clock = [1_000_000.0]
    monkeypatch.setattr(rate.time, "time", lambda: clock[0])
    monkeypatch.setattr(two_dbs[0], "now", lambda: clock[0])
    gate = SharedRateGate(two_dbs[0], SCOPE, 100)  # 10 ms apart: blocks of 10 instants
    sent: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        clock[0] += max(0.0, seconds)

    monkeypatch.setattr(rate.asyncio, "sleep", fake_sleep)
    for i in range(60):
        await gate.before_submit()
        sent.append(clock[0])
        clock[0] += (0.05, 0.0, 0.004, 0.013)[i % 4]  # the run falls behind now and then
    for start in sent:
        assert sum(start <= t < start + 0.1 for t in sent) <= 10 + 1
