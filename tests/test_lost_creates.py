"""Creates whose answer was lost on a host without idempotency keys (DESIGN §9): one in flight at a time, and
the next run resolves each one's window through DashScope's task list — adopt, resubmit, or stay ambiguous."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import write_csv

from wan_pipeline import errors as e
from wan_pipeline.cli.main import main as cli_main
from wan_pipeline.emulator.app import in_process
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.state import EmulatorConfig, body_hash
from wan_pipeline.execution.engine import EngineSettings, Outcome
from wan_pipeline.execution.journal import AsyncLedger, Journal
from wan_pipeline.execution.session import open_ledger, open_session
from wan_pipeline.money.ledger import Ledger
from wan_pipeline.money.slots import CreateSlots
from wan_pipeline.outputs.lineage import lineage_table
from wan_pipeline.planning.plan import Plan, build_plan
from wan_pipeline.planning.spec import load_spec

FAST = EngineSettings(max_concurrency=4, submits_per_second=1000.0, poll_initial_s=0.01, poll_max_s=0.05,
                      backoff_base_s=0.01, backoff_max_s=0.05, request_timeout_s=10.0)


@pytest.fixture
def plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plan:
    monkeypatch.setenv("WAN_PIPELINE_STATE_DIR", str(tmp_path / "state"))
    for var in ("DASHSCOPE_API_KEY", "DASHSCOPE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    write_csv(tmp_path / "prompts.csv", [{"prompt_id": p, "prompt": f"A {p} at dusk"}
                                         for p in ("lighthouse", "harbour", "ferry", "pier")])
    spec = {"name": "lost", "prompts": "prompts.csv", "provider": "dashscope", "model": "wan2.7-image",
            "endpoint": "emulator", "seed": 7, "params": {"resolution": "1K"}, "storage": "./out"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return build_plan(load_spec(tmp_path / "spec.yaml"))


class Host:
    """One emulated DashScope account that outlives engine runs."""

    def __init__(self) -> None:
        self.state, self.transport = in_process(EmulatorConfig(queue_s=0, process_s=0.02), "dashscope")

    def faults(self, **next_counts: int) -> None:
        self.state.faults.configure(FaultConfig.model_validate({k: {"next": n} for k, n in next_counts.items()}))

    async def run(self, plan: Plan) -> list[Outcome]:
        async with open_session(plan.spec, FAST, transport=self.transport) as session:
            return await session.engine.run(list(plan.tasks))

    def foreign_task(self, like_model: str, at: float) -> str:
        """A task someone else on the same account created (the list shows it; no ledger claims it)."""
        template = next(iter(self.state.tasks.values()))
        other = replace(template, id=f"foreign-{at}", created_at=at)
        self.state.create_task(other)
        return other.id


def statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status for o in outcomes]


def test_a_lost_answer_is_found_in_the_task_list_and_adopted(plan: Plan) -> None:
    host = Host()
    host.faults(drop=1)  # the first create lands on the host, its answer is lost
    first = asyncio.run(host.run(plan))
    assert statuses(first).count("failed") == 1 and statuses(first).count("stored") == 3
    again = asyncio.run(host.run(plan))
    assert statuses(again) == ["stored"] * 4
    report = host.state.report()
    assert (report["tasks_created"], report["submit_requests"]) == (4, 4)  # nothing bought twice
    with open_ledger(plan.spec) as ledger:
        claimed = {a.task_id for a in ledger.all_attempts(plan.spec.name)}
        assert claimed == {t["id"] for t in report["tasks"]} and ledger.orphans(plan.spec.name) == []


def test_lost_creates_sharing_a_window_pair_up_with_its_tasks_in_order(plan: Plan) -> None:
    host = Host()
    host.faults(drop=2)  # two creates in a row land without answers: no confirmed create between them
    first = asyncio.run(host.run(plan))
    assert statuses(first).count("failed") == 2
    lost = {o.task.identity for o in first if o.status == "failed"}
    again = asyncio.run(host.run(plan))
    assert statuses(again) == ["stored"] * 4
    report = host.state.report()
    assert (report["tasks_created"], report["submit_requests"]) == (4, 4)
    with open_ledger(plan.spec) as ledger:
        attempts = {a.identity: a for a in ledger.all_attempts(plan.spec.name)}
    # Each lost create adopted the very task it made: the host's record of that task's body is its body.
    for identity in lost:
        a = attempts[identity]
        assert a.task_id is not None
        assert host.state.tasks[a.task_id].body_sha256 == body_hash(json.loads(a.request_json))
    assert len({a.task_id for a in attempts.values()}) == 4


def test_a_create_the_list_proves_absent_is_sent_again(plan: Plan) -> None:
    host = Host()
    host.faults(server_error=1)  # refused before any task was made, but a 500 proves nothing by itself
    first = asyncio.run(host.run(plan))
    assert statuses(first).count("failed") == 1
    again = asyncio.run(host.run(plan))
    assert statuses(again) == ["stored"] * 4
    report = host.state.report()
    assert (report["tasks_created"], report["submit_requests"]) == (4, 5)  # one re-send, still one task each


def test_two_unclaimed_tasks_in_the_window_stay_ambiguous_and_are_recorded_as_orphans(plan: Plan) -> None:
    host = Host()
    host.faults(drop=1)
    first = asyncio.run(host.run(plan))
    lost = next(o for o in first if o.status == "failed")
    held = {t["id"] for t in host.state.report()["tasks"]}
    with open_ledger(plan.spec) as ledger:
        claimed = {a.task_id for a in ledger.all_attempts(plan.spec.name) if a.task_id}
    (ours,) = held - claimed
    foreign = host.foreign_task("wan2.7-image", host.state.tasks[ours].created_at + 0.0005)
    again = asyncio.run(host.run(plan))
    outcome = next(o for o in again if o.task.identity == lost.task.identity)
    assert outcome.status == "failed" and isinstance(outcome.error, e.AmbiguousSubmission)
    assert "2 unclaimed task(s) in its window" in outcome.error.message and foreign in outcome.error.message
    assert host.state.report()["submit_requests"] == 4  # nothing re-sent
    with open_ledger(plan.spec) as ledger:
        assert {o.task_id for o in ledger.orphans(plan.spec.name)} == {ours, foreign}
        table = lineage_table(ledger, plan.spec.name).to_pylist()
    orphaned = [r for r in table if r["status"] == "orphaned"]
    assert {r["task_id"] for r in orphaned} == {ours, foreign}
    assert all(r["prompt_id"] is None and r["model"] == "wan2.7-image" for r in orphaned)


class CreateCounter(httpx.AsyncBaseTransport):
    """Wraps the emulator's transport and records how many creates were in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peaks: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        is_create = request.method == "POST" and "generation" in request.url.path
        if not is_create:
            return await self.inner.handle_async_request(request)
        self.in_flight += 1
        self.peaks.append(self.in_flight)
        try:
            await asyncio.sleep(0.01)  # long enough for concurrent tasks to pile up if they could
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


def test_creates_on_a_host_without_idempotency_keys_are_one_at_a_time(plan: Plan) -> None:
    host = Host()
    counter = CreateCounter(host.transport)
    host.transport = counter  # type: ignore[assignment]
    assert statuses(asyncio.run(host.run(plan))) == ["stored"] * 4
    assert counter.peaks == [1, 1, 1, 1]


def test_a_paid_task_no_output_claims_is_shown_orphaned_with_its_cost(
    plan: Plan, capsys: pytest.CaptureFixture[str]
) -> None:
    host = Host()
    tasks = list(plan.tasks)
    assert statuses(asyncio.run(host.run(replace(plan, tasks=tuple(tasks[:2]))))) == ["stored", "stored"]
    host.faults(drop=1)
    asyncio.run(host.run(replace(plan, tasks=tuple(tasks[2:3]))))  # its create lands; the answer is lost
    (ours,) = {t["id"] for t in host.state.report()["tasks"]} - claimed_ids(plan)
    foreign = host.foreign_task("wan2.7-image", host.state.tasks[ours].created_at + 0.0005)

    async def resubmitting() -> list[Outcome]:  # the list cannot tell: the user chose --resubmit-ambiguous
        settings = replace(FAST, resubmit_ambiguous=True)
        async with open_session(plan.spec, settings, transport=host.transport) as session:
            return await session.engine.run(tasks)

    assert statuses(asyncio.run(resubmitting())) == ["stored"] * 4
    assert host.state.report()["tasks_created"] == 6  # one output bought twice (by the user's choice), one foreign
    with open_ledger(plan.spec) as ledger:
        orphans = {o.task_id: o for o in ledger.orphans(plan.spec.name)}
        table = lineage_table(ledger, plan.spec.name).to_pylist()
    assert set(orphans) == {ours, foreign} and not set(orphans) & claimed_ids(plan)
    assert orphans[ours].cost_usd == pytest.approx(0.03)  # usage.image_count × wan2.7-image's price
    rows = {r["task_id"]: r for r in table if r["status"] == "orphaned"}
    assert set(rows) == {ours, foreign}
    assert (rows[ours]["cost_usd"], rows[ours]["cost_source"]) == (pytest.approx(0.03), "reported")
    # `wan-pipeline lineage` lists them, with id and cost, for the user to look up.
    capsys.readouterr()
    assert cli_main(["lineage", plan.spec.spec_file]) == 0
    printed = capsys.readouterr().out
    assert f"orphaned: task {ours} (wan2.7-image, USD 0.0300)" in printed
    assert cli_main(["lineage", plan.spec.spec_file, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {o["task_id"] for o in report["orphaned"]} == {ours, foreign}
    assert report["rows_by_status"] == {"orphaned": 2, "succeeded": 4}


def claimed_ids(plan: Plan) -> set[str]:
    with open_ledger(plan.spec) as ledger:
        return {a.task_id for a in ledger.all_attempts(plan.spec.name) if a.task_id}


def test_two_engines_sharing_the_ledger_still_send_one_create_at_a_time(plan: Plan) -> None:
    """The create slot lives in the ledger: separate engines (as separate processes would) take turns."""
    host = Host()
    counter = CreateCounter(host.transport)
    tasks = list(plan.tasks)

    async def both() -> list[Outcome]:
        async def one(part: list[Any]) -> list[Outcome]:
            async with open_session(plan.spec, FAST, transport=counter) as session:
                return await session.engine.run(part)

        halves = await asyncio.gather(one(tasks[::2]), one(tasks[1::2]))
        return [o for half in halves for o in half]

    assert statuses(asyncio.run(both())) == ["stored"] * 4
    assert counter.peaks == [1, 1, 1, 1]


def test_the_create_slot_is_freed_by_a_dead_holder_or_an_expired_lease(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as first, Ledger(path) as second:
        a, b = CreateSlots(first), CreateSlots(second)
        assert a.take("s", 60) and not b.take("s", 60)
        a.give_back("s")
        assert b.take("s", 60) and not a.take("s", 60)
        b.give_back("s")
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        dead = CreateSlots(first, holder=f"{socket.gethostname()}|{gone.pid}|x")
        assert dead.take("s", 600) and b.take("s", 60)  # its process is gone: the slot is free at once
        b.give_back("s")
        elsewhere = CreateSlots(first, holder="another-machine|1|x")
        assert elsewhere.take("s", 600) and not b.take("s", 60)  # alive as far as we can tell: its lease holds
        assert elsewhere.take("s", -1) and b.take("s", 60)  # a lease that ran out frees it


def test_a_streak_of_creates_takes_the_ledger_slot_once_and_gives_it_back(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot stays ours while creates of this engine wait their turn (one create still in flight at a time),
    and is free for another process once the run ends."""
    takes: list[str] = []
    original = CreateSlots.take

    def counting(self: CreateSlots, slot: str, lease_s: float) -> bool:
        takes.append(slot)
        return original(self, slot, lease_s)

    monkeypatch.setattr(CreateSlots, "take", counting)
    host = Host()
    counter = CreateCounter(host.transport)

    async def run() -> list[Outcome]:
        async with open_session(plan.spec, FAST, transport=counter) as session:
            return await session.engine.run(list(plan.tasks))

    assert statuses(asyncio.run(run())) == ["stored"] * 4
    assert counter.peaks == [1, 1, 1, 1]
    assert len(takes) < 4  # 4 creates (the first also settles the list, in the same streak)
    with open_ledger(plan.spec) as ledger:
        assert original(CreateSlots(ledger, holder="another-machine|1|x"), takes[0], 60)


def test_each_create_is_sent_only_after_the_previous_task_id_is_committed(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task id is written after the slot passes on, but the journal commits in order: by the time the next
    create's send mark is durable (it is awaited before sending), the previous create's task id is too."""
    host = Host()
    seen: list[tuple[int, int]] = []  # (creates the host received, task ids durable in the ledger) at each create

    class Probe(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and "generation" in request.url.path:
                with open_ledger(plan.spec) as ledger:  # a separate connection: sees only what is committed
                    durable = sum(1 for a in ledger.all_attempts("lost") if a.task_id)
                seen.append((host.state.report()["submit_requests"], durable))
            return await host.transport.handle_async_request(request)

    async def run() -> list[Outcome]:
        async with open_session(plan.spec, FAST, transport=Probe()) as session:
            return await session.engine.run(list(plan.tasks))

    assert statuses(asyncio.run(run())) == ["stored"] * 4
    assert seen == [(n, n) for n in range(4)]


def test_a_clean_run_neither_reads_the_hosts_list_nor_scans_for_lost_creates(plan: Plan) -> None:
    """Settling and the orphan sweep read the host's list over the dataset's history: only worth it when a
    create may have been lost. A backfill's clean runs skip both (they were most of each run's tail)."""
    host = Host()
    listed: list[str] = []

    class Probe(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and "page_no" in request.url.params:
                listed.append(str(request.url))
            return await host.transport.handle_async_request(request)

    async def run(tasks: list[Any]) -> list[Outcome]:
        async with open_session(plan.spec, FAST, transport=Probe()) as session:
            return await session.engine.run(tasks)

    tasks = list(plan.tasks)
    assert statuses(asyncio.run(run(tasks[:1]))) == ["stored"]
    assert statuses(asyncio.run(run(tasks[1:2]))) == ["stored"]
    assert listed == []
    host.faults(drop=1)  # a lost answer: this run sweeps for orphans, the next settles it from the list
    asyncio.run(run(tasks[2:]))
    swept = len(listed)
    assert swept > 0
    assert statuses(asyncio.run(run(tasks))) == ["stored"] * 4
    assert len(listed) > swept


def test_a_create_of_another_engine_waits_for_the_previous_task_id_to_be_committed(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Engines side by side in one process (each its own event loop and journal) share the process's turn. A
    turn passed within an engine relies on its journal's order; one passed to another engine is handed over
    only once the previous task id is committed. Task id writes are slowed so that a hand-over that did not
    wait would be seen: at each create, every earlier create's task id must already be durable."""
    host = Host()
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    commit, update_queued = Journal._commit, AsyncLedger.update_queued

    def tagged(self: AsyncLedger, identity: str, attempt: int, **values: Any) -> Any:
        if values.get("task_id"):
            self.journal._queue.put(_SLOW)  # type: ignore[arg-type]  # its journal stalls before the task id
        return update_queued(self, identity, attempt, **values)

    def stalling(self: Journal, batch: list[Any]) -> None:
        if _SLOW in batch:
            time.sleep(0.05)
        commit(self, [op for op in batch if op is not _SLOW])

    monkeypatch.setattr(AsyncLedger, "update_queued", tagged)
    monkeypatch.setattr(Journal, "_commit", stalling)

    class Probe(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and "generation" in request.url.path:
                with lock, open_ledger(plan.spec) as ledger:
                    durable = sum(1 for a in ledger.all_attempts("lost") if a.task_id)
                    seen.append((host.state.report()["submit_requests"], durable))
            return await host.transport.handle_async_request(request)

    results: list[list[Outcome]] = []
    together = threading.Barrier(2)

    def engine(part: list[Any]) -> None:
        async def run() -> list[Outcome]:
            async with open_session(plan.spec, FAST, transport=Probe()) as session:
                together.wait(timeout=30)  # both engines want the turn at once
                return await session.engine.run(part)

        results.append(asyncio.run(run()))

    tasks = list(plan.tasks)
    threads = [threading.Thread(target=engine, args=(tasks[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(o.status for r in results for o in r) == ["stored"] * 4
    assert sorted(seen) == [(n, n) for n in range(4)]


_SLOW = object()
