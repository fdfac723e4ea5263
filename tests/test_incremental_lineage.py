"""Incremental lineage and audit (outputs/lineage.py, outputs/audit.py, money/changes.py).

Rounds of generating against the emulator — failures retried, a permanent rejection, an edited prompt (a new
identity), more variants, an output stored again, orphans found and claimed, an attempt deleted — and after
each: the lineage built on the previous file recomputes only the attempts that changed and is the very table
a build from scratch gives; the audit that skips files unchanged since verified finds what a full audit finds.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import FAST_ENGINE, write_dataset
from servers import PostgresCluster

from wan_pipeline.emulator.app import InProcessTransport, in_process
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.execution.session import open_ledger, open_session
from wan_pipeline.money.ledger import Attempt, Ledger, Orphan
from wan_pipeline.money.location import LEDGER_URL_ENV
from wan_pipeline.outputs.audit import audit_outputs
from wan_pipeline.outputs.lineage import LINEAGE_PATH, lineage_table, write_lineage
from wan_pipeline.outputs.storage import LocalStorage
from wan_pipeline.outputs.verified import take_notes
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import DatasetSpec, load_spec

PROMPTS = {f"p{i}": f"A lighthouse number {i} at dusk" for i in range(4)}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, e2e_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ledger `open_ledger` gives: SQLite in the state dir, or a shared PostgreSQL database."""
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        monkeypatch.setenv(LEDGER_URL_ENV, cluster.create_database("lineage"))
    return str(request.param)


class Host:
    """One emulated account for every round (its task ids stay unique), with faults set per round."""

    def __init__(self) -> None:
        self.state, self.transport = self._start()

    @staticmethod
    def _start() -> tuple[EmulatorState, InProcessTransport]:
        return in_process(EmulatorConfig(queue_s=0, process_s=0.01), "rivya")

    async def generate(self, spec: DatasetSpec, **faults: int) -> None:
        self.state.faults.configure(FaultConfig.model_validate({k: {"next": n} for k, n in faults.items()}))
        async with open_session(spec, FAST_ENGINE, transport=self.transport) as session:
            await session.engine.run(list(build_plan(spec).tasks))


def dataset(root: Path, prompts: dict[str, str], variants: int) -> DatasetSpec:
    rows = [{"prompt_id": k, "prompt": v} for k, v in prompts.items()]
    return load_spec(write_dataset(root, rows, name="inc", endpoint="emulator", variants=variants,
                                   params={"aspect_ratio": "1:1", "resolution": "1K"}))  # fmt: skip


class Recomputed:
    """Counts the attempts a build reads from the ledger (a full build reads every one)."""

    def __init__(self, ledger: Ledger) -> None:
        self.attempts = 0
        pages = ledger.attempt_pages

        def counted(dataset: str, changed_since: int | None = None, size: int = 500) -> Iterator[Any]:
            for page, outputs in pages(dataset, changed_since, size):
                self.attempts += len(page)
                yield page, outputs

        ledger.attempt_pages = counted  # type: ignore[method-assign]


def build(spec: DatasetSpec, storage: LocalStorage) -> int:
    """Writes the lineage incrementally and checks it against a build from scratch; returns how many
    attempts the incremental build recomputed."""
    with open_ledger(spec) as ledger:
        meter = Recomputed(ledger)
        uri, incremental = write_lineage(ledger, spec.name, storage)
        recomputed = meter.attempts
        full = lineage_table(ledger, spec.name)
        everything = len(ledger.all_attempts(spec.name))
    assert incremental.equals(full, check_metadata=True)
    assert pq.read_table(uri).equals(full, check_metadata=True)
    assert recomputed <= everything
    return recomputed


def audits(spec: DatasetSpec, storage: LocalStorage) -> tuple[Any, Any]:
    """(incremental, full) audits of the same state; the full one runs second so it sees the same files. As
    another process would run them: what this one noted as it stored files is dropped first (see below)."""
    take_notes(storage)
    with open_ledger(spec) as ledger:
        incremental = audit_outputs(ledger, spec.name, storage)
        full = audit_outputs(ledger, spec.name, storage, full=True)
    assert (incremental.problems, incremental.checked) == (full.problems, full.checked)
    assert full.read == full.checked
    return incremental, full


async def test_lineage_and_audit_built_on_the_last_pass_equal_a_build_from_scratch(
    backend: str, e2e_env: Path
) -> None:
    host = Host()
    spec = dataset(e2e_env, PROMPTS, variants=2)
    storage = LocalStorage(spec.storage_root)

    # 1: eight outputs; three generation failures (retried) and one permanent rejection
    await host.generate(spec, fail_task=3, reject_content=1)
    assert build(spec, storage) > 0  # no file yet: built from scratch
    first, _ = audits(spec, storage)
    assert first.read == first.checked == 7 and first.problems == []

    # nothing changed: nothing recomputed, nothing rewritten, nothing read again
    written = os.stat(storage.path(LINEAGE_PATH)).st_mtime_ns
    assert build(spec, storage) == 0
    assert os.stat(storage.path(LINEAGE_PATH)).st_mtime_ns == written
    again, _ = audits(spec, storage)
    assert again.read == 0

    # 2: an edited prompt (new identities for p1), a third variant, a failure; the rejection is not retried
    spec = dataset(e2e_env, {**PROMPTS, "p1": "A lighthouse in fog"}, variants=3)
    await host.generate(spec, fail_task=1)
    with open_ledger(spec) as ledger:
        everything = len(ledger.all_attempts(spec.name))
    assert 0 < build(spec, storage) < everything  # the new attempts, not the ones of round 1
    second, _ = audits(spec, storage)
    assert 0 < second.read < second.checked

    # 3: orphans found (one claimed by an output's task, one not), one claimed afterwards; an output re-stored
    with open_ledger(spec) as ledger:
        stored = [a for a in ledger.all_attempts(spec.name) if a.state == "stored"]
        for n, task_id in enumerate([stored[0].task_id or "", "lost-1", "lost-2"]):
            found = "2026-12-09T00:00:00Z"
            ledger.record_orphan(Orphan(task_id, spec.name, "rivya", "wan-2-7-image", "succeeded",
                                        f"2026-12-0{n + 1} 10:00:00", 0.05, "reported", found))  # fmt: skip
        ledger.claim_orphan("lost-2")
        out = ledger.outputs(stored[1].identity, stored[1].attempt)[0]
        ledger.record_output(dataclasses.replace(out, warnings="re-checked"))
    assert build(spec, storage) == 1  # the re-stored output's attempt; orphans are always recomputed
    table = pq.read_table(storage.path(LINEAGE_PATH)).to_pylist()
    assert [r["task_id"] for r in table if r["status"] == "orphaned"] == ["lost-1"]

    # 4: a file changed on disk is found without a full pass; one changed behind its stamp only by `full`
    victims = sorted((Path(storage.root) / "media").rglob("*.png"))[:2]
    victims[0].write_bytes(victims[0].read_bytes() + b"tail")
    incremental, _ = audits(spec, storage)
    assert incremental.read == 1 and any(str(victims[0]) in p for p in incremental.problems)
    st = victims[1].stat()
    data = bytearray(victims[1].read_bytes())
    data[-1] ^= 0xFF
    with victims[1].open("r+b") as fh:  # same size, same inode, mtime put back: the stamp cannot tell
        fh.write(data)
    os.utime(victims[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    with open_ledger(spec) as ledger:
        quick = audit_outputs(ledger, spec.name, storage)
        thorough = audit_outputs(ledger, spec.name, storage, full=True)
    assert not any(str(victims[1]) in p for p in quick.problems)
    assert any(str(victims[1]) in p for p in thorough.problems)

    # 5: an attempt deleted by hand: the next build starts over, and still equals one from scratch
    with open_ledger(spec) as ledger:
        gone = ledger.all_attempts(spec.name)[0]
        ledger.db.execute("DELETE FROM attempts WHERE identity=? AND attempt=?", (gone.identity, gone.attempt))
        everything = len(ledger.all_attempts(spec.name))
    assert build(spec, storage) == everything


TEMPLATE = Attempt(identity="", attempt=1, dataset="race", prompt_id="p", variant=0, fingerprint="f",
                   provider="rivya", model="m", mode="text_to_image", prompt="x", params_json="{}", seed=1,
                   seed_source="derived", extra_json="{}", idempotency_key="k", request_json="{}",
                   state="submitting", credits_estimate=1.0)  # fmt: skip


def test_pages_read_each_attempt_and_one_written_again_meanwhile_counts_once(ledger_where: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "out")
    with Ledger.open(ledger_where) as ledger:
        for i in range(7):
            ledger.begin_attempt(dataclasses.replace(TEMPLATE, identity=f"a{i}", prompt_id=f"p{i}"))
        pages = list(ledger.attempt_pages("race", size=3))
        assert [[a.identity for a in page] for page, _ in pages] == [["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6"]]
        write_lineage(ledger, "race", storage)
        for i in range(3):
            ledger.update(f"a{i}", 1, state="submitted", task_id=f"t{i}")
        read = ledger.attempt_pages

        def racing(dataset: str, changed_since: int | None = None, size: int = 500) -> Iterator[Any]:
            for n, (page, outputs) in enumerate(read(dataset, changed_since, size=1)):
                yield page, outputs
                if n == 0:  # another process writes the attempt just read: it comes again, later
                    ledger.update(page[0].identity, 1, state="failed", error_class="Transient", error_code="503")
        ledger.attempt_pages = racing  # type: ignore[method-assign]
        _, racy = write_lineage(ledger, "race", storage)
        ledger.attempt_pages = read  # type: ignore[method-assign]
        assert racy.num_rows == 7 and racy.equals(lineage_table(ledger, "race"))  # rows as now (marks differ)
        _, settled = write_lineage(ledger, "race", storage)
        assert settled.equals(lineage_table(ledger, "race"), check_metadata=True)


def test_a_change_number_seen_means_every_record_numbered_up_to_it_is_visible(ledger_where: str) -> None:
    """Writers on several connections at once (as several machines); readers take the mark, then read the
    attempts above 0: none numbered at or below the mark may be missing — what a lineage build relies on."""
    template = TEMPLATE
    Ledger.open(ledger_where).close()

    def writer(n: int) -> None:
        with Ledger.open(ledger_where) as ledger:
            for i in range(25):
                with ledger.batch():
                    ledger.begin_attempt(dataclasses.replace(template, identity=f"w{n}-{i}"))
                    ledger.update(f"w{n}-{i}", 1, state="submitted", task_id=f"t{n}-{i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    snapshots: list[tuple[int, set[str]]] = []
    for t in threads:
        t.start()
    with Ledger.open(ledger_where) as reader:
        while any(t.is_alive() for t in threads):
            mark = reader.change_mark("race")
            snapshots.append((mark.changes, {a.identity for a in reader.all_attempts("race", changed_since=0)}))
        for t in threads:
            t.join()
        final = {row[0]: int(row[1]) for row in reader.db.query(
            "SELECT identity, change_seq FROM attempts WHERE dataset='race'")}  # fmt: skip
    assert len(final) == 75 and len(snapshots) > 1
    for seen_mark, visible in snapshots:
        # an attempt's final number is its last write; at or below the mark means written before it
        assert {i for i, seq in final.items() if seq <= seen_mark} <= visible


async def test_files_this_process_stored_are_not_read_again_unless_they_changed(
    backend: str, e2e_env: Path
) -> None:
    """The engine hashed and decoded each file as it stored it, and noted its stamp: the first audit in the same
    process (`generate`'s lineage job) reads only a file changed since, and keeps the others as verified."""
    spec = dataset(e2e_env, PROMPTS, variants=2)
    storage = LocalStorage(spec.storage_root)
    await Host().generate(spec)
    victim = sorted((Path(storage.root) / "media").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes() + b"tail")
    with open_ledger(spec) as ledger:
        first = audit_outputs(ledger, spec.name, storage)
        again = audit_outputs(ledger, spec.name, storage)  # the notes are taken; the state file has the rest
        full = audit_outputs(ledger, spec.name, storage, full=True)
    assert first.read == 1 and any(str(victim) in p for p in first.problems)
    assert first.checked == full.checked == full.read > 1 and first.problems == full.problems
    assert again.read == 1  # only the bad file, still not verified
