"""The journal: the engine's ledger traffic off the event loop, concurrent writes sharing one commit."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import yaml

from wan_pipeline.emulator.app import IN_PROCESS_BASE, in_process
from wan_pipeline.emulator.state import EmulatorConfig
from wan_pipeline.execution.engine import EngineSettings, TaskEngine
from wan_pipeline.execution.journal import Journal
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.ledger import SUBMITTING, Attempt, Ledger
from wan_pipeline.outputs.storage import LocalStorage
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.registry import get_provider

FAST = EngineSettings(max_concurrency=16, submits_per_second=1000, poll_initial_s=0.01, poll_max_s=0.05)


def attempt(identity: str) -> Attempt:
    return Attempt(
        identity=identity, attempt=1, dataset="d", prompt_id=identity, variant=0, fingerprint="f", provider="rivya",
        model="m", mode="text_to_image", prompt="p", params_json="{}", seed=1, seed_source="derived", extra_json="{}",
        idempotency_key=f"k-{identity}", request_json="{}", state=SUBMITTING,
    )  # fmt: skip


async def test_concurrent_writes_share_commits_and_are_durable_when_answered(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    journal = Journal(ledger)
    journal.start()
    try:
        await asyncio.gather(*(journal.run(lambda i=i: ledger.begin_attempt(attempt(f"id{i}"))) for i in range(200)))
        # answered only after the commit: a second connection (another process) already sees every row
        other = Ledger(tmp_path / "ledger.sqlite")
        assert len(other.all_attempts("d")) == 200
        other.close()
    finally:
        journal.close()
        ledger.close()
    assert journal.operations == 200
    assert journal.commits < 200  # grouped: fewer fsyncs than writes


async def test_one_failing_operation_does_not_undo_its_batch_neighbours(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    journal = Journal(ledger)
    journal.start()

    def refuse() -> None:
        ledger.begin_attempt(attempt("refused"), check=lambda: (_ for _ in ()).throw(ValueError("over budget")))

    try:
        results = await asyncio.gather(
            journal.run(lambda: ledger.begin_attempt(attempt("a"))),
            journal.run(refuse),
            journal.run(lambda: ledger.begin_attempt(attempt("b"))),
            return_exceptions=True,
        )
    finally:
        journal.close()
    assert isinstance(results[1], ValueError) and results[0] is None and results[2] is None
    assert sorted(a.identity for a in ledger.all_attempts("d")) == ["a", "b"]
    ledger.close()


def _dataset(root: Path, rows: int) -> Path:
    (root / "prompts.csv").write_text(
        "prompt_id,prompt\n" + "".join(f"p{i},A lighthouse number {i}\n" for i in range(rows)), encoding="utf-8"
    )
    spec = {"name": "scale", "prompts": "prompts.csv", "provider": "rivya", "model": "wan-2-7-image",
            "endpoint": "emulator", "seed": 1, "storage": str(root / "out"), "budget": {"max_credits": 100000}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return root / "spec.yaml"


async def _ledger_ops_per_output(root: Path, rows: int) -> float:
    plan = build_plan(load_spec(_dataset(root, rows)))
    _, transport = in_process(EmulatorConfig(queue_s=0, process_s=0.02))
    provider = get_provider("rivya")
    ledger = Ledger(root / "ledger.sqlite")
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            wire = Wire(client, IN_PROCESS_BASE, provider.auth_headers("k"))
            engine = TaskEngine(provider, wire, ledger, LocalStorage(root / "out"), plan.spec.budget, FAST,
                                rng=random.Random(1))  # fmt: skip
            outcomes = await engine.run(list(plan.tasks))
    finally:
        ledger.close()
    assert [o.status for o in outcomes] == ["stored"] * rows
    return engine.journal.operations / rows


async def test_ledger_operations_per_output_do_not_grow_with_the_dataset(tmp_path: Path) -> None:
    """ops(N) = a·N + b: a constant per output (polls that found a task pending add no ledger traffic) plus a
    constant per run (the poll schedule's seed)."""
    ops = {}
    for rows in (4, 12, 40):
        (tmp_path / str(rows)).mkdir()
        ops[rows] = round(await _ledger_ops_per_output(tmp_path / str(rows), rows) * rows)
    per_output = (ops[12] - ops[4]) / 8
    assert per_output == (ops[40] - ops[12]) / 28
    assert ops[4] - 4 * per_output <= 2
