"""A SIGKILLed `generate` keeps in Dagster the record of every partition it stored (issue 7, live materialization).

`wan-pipeline generate` runs as a subprocess (its own DAGSTER_HOME and state dir) against the DashScope emulator
in a process of its own on 127.0.0.1. Creates are paced (a few per second), so partitions complete one by one
while later creates are still to be sent; the first task the host makes is refused by its content filter. The
test polls the ledger, the host and the Dagster instance, and SIGKILLs the process group once the instance
shows a materialized partition and the refused partition's observation while creates are still pending
(preferring a moment when the ledger holds a stored partition Dagster has not heard of yet). Nothing is timed:
every wait polls under a generous bound that fails with what it saw.

What must hold after the kill, read from the same instance and the ledger:
  (a) every partition materialized in Dagster is stored in the ledger (no false materializations);
  (b) what the instance showed before the kill is still there, written by the run that was STARTED then;
  (c) partitions the ledger stored that Dagster has not recorded are only the last moments' (≤ concurrency);
  the refused partition is observed failed, with its reason.
Then a second `generate`: closes the killed run, materializes every stored partition — the ones the kill cut
off included — and the host made exactly one task per output (none bought twice, the refused one not again).
Last, a fresh Dagster instance over the same ledger learns every stored partition from one `generate`,
buying nothing: the ledger, not the instance, is what says an output exists.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import write_dataset
from e2e_helpers import cli_cmd, cli_env, emulator_process, pycache_dir, run_cli, stop_group

from wan_pipeline.assets.dataset import generate_job_name
from wan_pipeline.assets.keys import key
from wan_pipeline.cli.runs import DATASET_TAG
from wan_pipeline.planning.spec import DatasetSpec, load_spec

API_KEY = "sk-killed-run-0123"
ROWS = 30
CONCURRENCY = 4
#: creates per second: 30 creates take several seconds, so partitions are stored while creates are pending
SUBMITS_PER_SECOND = 4
#: bounds on waits that fail the test with what was seen; never a speed requirement
WAIT_S = 180.0


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


@dataclass
class Seen:
    """What the test saw in the host, the ledger and the instance at one moment while the run went on."""

    created: int = 0
    stored: set[str] = field(default_factory=set)
    materialized: set[str] = field(default_factory=set)
    refused: dict[str, Any] | None = None
    live_run: str | None = None  # the generate run that is STARTED and wrote the materializations seen

    def __str__(self) -> str:
        return (f"host tasks created {self.created}/{ROWS}, ledger stored {len(self.stored)}, "
                f"instance materialized {len(self.materialized)}, refused partition observed: {bool(self.refused)}")


def _ledger_stored(state: Path, spec: DatasetSpec) -> set[str]:
    """Partitions whose every output is stored in the ledger (one output per prompt here)."""
    path = state / spec.name / "ledger.sqlite"
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT DISTINCT prompt_id FROM attempts WHERE dataset = ? AND state = 'stored'",
                          (spec.name,)).fetchall()
    except sqlite3.OperationalError:  # the first run has not created its tables yet
        return set()
    finally:
        db.close()
    return {str(r[0]) for r in rows}


def _refused_observation(instance: dg.DagsterInstance, spec: DatasetSpec) -> dict[str, Any] | None:
    """The metadata of a `failed` observation of the generations asset, if the instance holds one."""
    records = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=key(spec, "generations")), limit=100)
    for record in records.records:
        observation = record.asset_observation
        if observation is not None and observation.metadata["status"].value == "failed":
            return {"partition": observation.partition, **{k: v.value for k, v in observation.metadata.items()}}
    return None


def _materializing_runs(instance: dg.DagsterInstance, spec: DatasetSpec) -> set[str]:
    """The runs that wrote the media asset's materializations."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key(spec, "media")), limit=1000)
    return {r.run_id for r in records.records}


def _started_generate_run(instance: dg.DagsterInstance, spec: DatasetSpec) -> str | None:
    runs = instance.get_run_records(filters=dg.RunsFilter(
        job_name=generate_job_name(spec), statuses=[dg.DagsterRunStatus.STARTED], tags={DATASET_TAG: spec.name}))
    return runs[0].dagster_run.run_id if len(runs) == 1 else None


def _look(instance: dg.DagsterInstance, spec: DatasetSpec, state: Path, created: int) -> Seen:
    # the ledger first: a partition the instance shows was stored before it was published
    seen = Seen(created=created, stored=_ledger_stored(state, spec))
    seen.materialized = set(instance.get_materialized_partitions(key(spec, "media")))
    seen.refused = _refused_observation(instance, spec)
    started = _started_generate_run(instance, spec)
    if started is not None and _materializing_runs(instance, spec) == {started}:
        seen.live_run = started
    return seen


def _ready(seen: Seen) -> bool:
    return bool(seen.materialized and seen.refused and seen.live_run and len(seen.stored) >= 2)


def _kill_when_ready(proc: subprocess.Popen[bytes], created: Callable[[], int], look: Callable[[int], Seen],
                     log: Path) -> Seen:
    """Poll until the run has published partitions while creates are pending, then SIGKILL its process group.

    Once ready, it waits (while creates remain) for a moment when the ledger is ahead of the instance, so the
    kill is likely to land between a partition's storing and its materialization."""
    deadline = time.monotonic() + WAIT_S
    seen = Seen()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"generate ended (rc {proc.returncode}) before the kill; last seen: {seen}\n"
                        + log.read_text(errors="replace")[-3000:])
        seen = look(created())
        if seen.created >= ROWS:
            pytest.fail(f"every create was sent before the instance showed the run's partitions: {seen}")
        if _ready(seen) and (seen.stored - seen.materialized or seen.created >= ROWS - CONCURRENCY):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return seen
        time.sleep(0.02)
    pytest.fail(f"no live materialization within {WAIT_S:.0f} s; last seen: {seen}")


def test_a_killed_run_keeps_what_it_stored_and_a_rerun_finishes_it(tmp_path: Path, pycache: Path) -> None:
    home, state = tmp_path / "dagster_home", tmp_path / "state"
    base_env = cli_env(home, pycache, WAN_PIPELINE_STATE_DIR=str(state))
    with emulator_process("--api-key", API_KEY, "--root-provider", "dashscope", "--queue-s", "0",
                          "--process-s", "0.4", env=base_env, cwd=tmp_path, log=tmp_path / "emulator.log") as emu:
        emu.config({"media_max_side": 64})  # tiny renders: the host's CPU stays out of the way
        emu.faults({"reject_content": {"next": 1}})  # the first task the host makes is refused
        env = {**base_env, "DASHSCOPE_BASE_URL": emu.base_url, "DASHSCOPE_API_KEY": API_KEY,
               "WAN_PIPELINE_MAX_CONCURRENCY": str(CONCURRENCY),
               "WAN_PIPELINE_SUBMITS_PER_SECOND": str(SUBMITS_PER_SECOND)}
        rows = [{"prompt_id": f"k{i:02d}", "prompt": f"A lighthouse at dusk, study {i}"} for i in range(ROWS)]
        spec_path = write_dataset(tmp_path / "data", rows, table="prompts.csv", spec_file="spec.yaml",
                                  name="killed", provider="dashscope", model="wan2.7-image", seed=5,
                                  params={"resolution": "1K"}, storage="./out")
        spec = load_spec(spec_path)

        def created() -> int:
            return int(emu.report()["tasks_created"])

        # -- the run, killed mid-way ---------------------------------------------------------------------
        log = tmp_path / "killed_run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cli_cmd("generate", str(spec_path)), cwd=tmp_path, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        instance: dg.DagsterInstance | None = None

        def look(n: int) -> Seen:
            nonlocal instance
            if instance is None:
                # open the instance once generate says it is set up (its first wave leaves, and may be stored,
                # before Dagster loads: `cli.head_start`)
                if not _ledger_stored(state, spec) or "dagster instance:" not in log.read_text(errors="replace"):
                    return Seen(created=n)
                instance = dg.DagsterInstance.from_config(str(home))
            return _look(instance, spec, state, n)

        try:
            before = _kill_when_ready(proc, created, look, log)
        finally:
            stop_group(proc)
            if instance is not None:
                instance.dispose()
        created_at_kill = created()
        assert created_at_kill < ROWS, "the kill was meant to land while creates were pending"

        # -- what the instance keeps ---------------------------------------------------------------------
        stored = _ledger_stored(state, spec)
        with dg.DagsterInstance.from_config(str(home)) as after:
            materialized = set(after.get_materialized_partitions(key(spec, "media")))
            generations = set(after.get_materialized_partitions(key(spec, "generations")))
            refused = _refused_observation(after, spec)
            killed_run = after.get_run_by_id(before.live_run or "")
        # (a) nothing is recorded materialized that the ledger has not stored. A partition's two events are
        # written one after the other, so the kill may fall between them: at most one partition has its
        # generations materialized and not yet its media.
        assert materialized <= generations <= stored, (sorted(generations - stored), sorted(materialized - stored))
        assert len(generations - materialized) <= 1, sorted(generations - materialized)
        # (b) what was published before the kill survives it, and was written while its run was STARTED
        assert before.materialized and before.materialized <= materialized
        assert killed_run is not None and killed_run.status == dg.DagsterRunStatus.STARTED  # nobody closed it yet
        # (c) only the last moments' partitions can be stored yet unpublished
        unpublished = stored - materialized
        assert len(unpublished) <= CONCURRENCY, (sorted(unpublished), before)
        # the refused partition was observed failed, with its reason, while the run went on
        assert refused is not None and before.refused is not None
        assert refused["partition"] == before.refused["partition"] not in stored
        assert "DataInspectionFailed" in refused["reason"], refused

        # -- a second generate finishes the job ----------------------------------------------------------
        rerun = run_cli("generate", str(spec_path), "--json", env=env, cwd=tmp_path, timeout=300)
        assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # exit 1: the refused output is listed
        summary = json.loads(rerun.stdout)
        assert summary["stored"] == ROWS - 1
        assert list(summary["failed_partitions"]) == [refused["partition"]]
        report = emu.report()
        assert report["tasks_created"] == ROWS, "a task was bought twice (or the refused one again)"
        final_stored = _ledger_stored(state, spec)
        assert final_stored == {r["prompt_id"] for r in rows} - {refused["partition"]}
        with dg.DagsterInstance.from_config(str(home)) as after:
            assert set(after.get_materialized_partitions(key(spec, "media"))) == final_stored
            assert set(after.get_materialized_partitions(key(spec, "generations"))) == final_stored
            closed = after.get_run_by_id(killed_run.run_id)
            assert closed is not None and closed.status == dg.DagsterRunStatus.FAILURE
            left_open = after.get_run_records(filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING], tags={DATASET_TAG: spec.name}))
            assert not left_open

        # -- a new instance learns every stored partition from the ledger, buying nothing ----------------
        fresh_env = {**env, "DAGSTER_HOME": str(tmp_path / "fresh_home")}
        again = run_cli("generate", str(spec_path), "--json", env=fresh_env, cwd=tmp_path, timeout=300)
        assert again.returncode == 1, again.stdout + again.stderr
        assert json.loads(again.stdout)["new_submissions"] == 0
        assert emu.report()["tasks_created"] == ROWS
        with dg.DagsterInstance.from_config(str(tmp_path / "fresh_home")) as fresh:
            assert set(fresh.get_materialized_partitions(key(spec, "media"))) == final_stored

    print(f"\nkilled with {created_at_kill}/{ROWS} tasks created: {len(before.materialized)} partition(s) "
          f"materialized in the instance at the last look, {len(stored)} stored in the ledger at the kill, "
          f"{len(materialized)} materialized after it, {len(unpublished)} stored but unpublished: "
          f"{sorted(unpublished)}, generations-only (cut between its two events): {sorted(generations - materialized)}")
