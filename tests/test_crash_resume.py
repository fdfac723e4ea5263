"""Money safety across a hard crash and under injected faults, against the emulator on a real port.

`generate` is SIGKILLed while tasks are in flight; the next `generate` must resume the recorded
tasks (or re-send their creates with the same Idempotency-Key) and never buy an output twice. A
second dataset runs through 429s, 5xx and dropped connections. Both end with every planned output
stored once, lineage matching the files, lineage credits matching what the emulator charged, and the
API key nowhere on disk or in the output.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_dataset
from e2e_helpers import (
    EmulatorProcess,
    cli_cmd,
    cli_env,
    emulator_process,
    media_files,
    pycache_dir,
    read_lineage,
    run_cli,
    sha256_file,
    stop_group,
    storage_root,
)

API_KEY = "sk-test-XYZ"
ROWS = 10
SUBJECTS = ["a lighthouse in fog", "a bowl of ramen", "a paper crane", "a desert fox", "a glass teapot",
            "an old bicycle", "a snowy cabin", "a koi pond", "a street violinist", "a red umbrella"]


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


def _dataset(root: Path, name: str) -> Path:
    """A spec without `endpoint:` (so RIVYA_BASE_URL decides) and a table of ROWS prompts."""
    rows = [{"prompt_id": f"{name}_{i:02d}", "prompt": f"{subject}, photographed at dusk", "aspect_ratio": "1:1",
             "note": f"row {i}"} for i, subject in enumerate(SUBJECTS[:ROWS])]
    return write_dataset(root, rows, table="prompts.csv", spec_file="spec.yaml", name=name, seed=7,
                         params={"resolution": "1K", "watermark": False}, budget={"max_credits": 1000}, storage="./out")


def _ledger_task_ids(spec: Path) -> dict[str, str | None]:
    db = sqlite3.connect(storage_root(spec) / "_state" / "ledger.sqlite")
    try:
        return {identity: task_id for identity, task_id in db.execute("SELECT identity, task_id FROM attempts")}
    finally:
        db.close()


def _own(mapping: dict[str, int], name: str, report: dict[str, Any], field: str) -> dict[str, int]:
    """The entries of a report's per-key map that belong to dataset `name`."""
    if field == "tasks_by_client_ref":
        return {k: v for k, v in mapping.items() if k.startswith(f"{name}/")}
    keys = {t["idempotency_key"] for t in report["tasks"] if (t["client_ref"] or "").startswith(f"{name}/")}
    return {k: v for k, v in mapping.items() if k in keys}


def _assert_bought_once(emu: EmulatorProcess, spec: Path, name: str) -> dict[str, Any]:
    report = emu.report()
    by_ref = _own(report["tasks_by_client_ref"], name, report, "tasks_by_client_ref")
    by_key = _own(report["tasks_by_idempotency_key"], name, report, "tasks_by_idempotency_key")
    assert len(by_ref) == ROWS and set(by_ref.values()) == {1}, by_ref
    assert len(by_key) == ROWS and set(by_key.values()) == {1}, by_key
    own_tasks = [t for t in report["tasks"] if t["client_ref"].startswith(f"{name}/")]
    assert len(own_tasks) == ROWS
    assert {t["status"] for t in own_tasks} == {"succeeded"}

    frame = read_lineage(spec)
    assert len(frame) == ROWS
    assert set(frame["status"]) == {"succeeded"}
    assert sorted(frame["task_id"]) == sorted(t["id"] for t in own_tasks)
    assert sorted(frame["idempotency_key"]) == sorted(by_key)
    assert sorted(frame["prompt_id"]) == [f"{name}_{i:02d}" for i in range(ROWS)]
    for row in frame.itertuples():
        assert Path(row.media_uri).is_file()
        assert sha256_file(row.media_uri) == row.media_sha256
    assert len(media_files(spec)) == ROWS
    assert (frame["extra_json"].str.contains('"note"')).all()
    return report


def _assert_no_key(where: list[Path], texts: list[str]) -> None:
    needle = API_KEY.encode()
    for text in texts:
        assert API_KEY not in text
    checked = 0
    for root in where:
        for dirpath, _dirs, files in os.walk(root):
            for fname in files:
                path = Path(dirpath) / fname
                checked += 1
                assert needle not in path.read_bytes(), f"API key found in {path}"
    assert checked > 0


def _open_runs(dagster_home: Path) -> list[str]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        runs = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]))
        return [r.run_id for r in runs]


def test_kill_mid_run_then_resume_buys_each_output_once(tmp_path: Path, pycache: Path) -> None:
    dagster_home = tmp_path / "dagster_home"
    base_env = cli_env(dagster_home, pycache)
    texts: list[str] = []
    with emulator_process("--api-key", API_KEY, "--queue-s", "0.5", "--process-s", "1.5",
                          "--state", str(tmp_path / "emu.json"), env=base_env, cwd=tmp_path,
                          log=tmp_path / "emulator.log") as emu:
        env = {**base_env, "RIVYA_BASE_URL": emu.base_url, "RIVYA_API_KEY": API_KEY,
               "WAN_PIPELINE_MAX_CONCURRENCY": str(ROWS), "WAN_PIPELINE_HTTP_RETRIES": "20"}
        spec = _dataset(tmp_path / "crash", "crash")

        # 1. generate, SIGKILLed once its Dagster run is going and a few (not all) tasks exist at the provider
        # (the first wave leaves before Dagster loads, `cli.head_start`; 2 creates a second keep the rest back).
        out, err = tmp_path / "killed.out", tmp_path / "killed.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(cli_cmd("generate", str(spec)), cwd=tmp_path, stdout=o, stderr=e,
                                    env={**env, "WAN_PIPELINE_SUBMITS_PER_SECOND": "2"}, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            created, running = 0, False
            while created < 3 or not running:
                assert proc.poll() is None, f"generate ended before the kill:\n{err.read_text()}"
                assert time.monotonic() < deadline, "no run and tasks at the emulator within 60 s"
                time.sleep(0.02)
                created = emu.report()["tasks_created"]
                # the instance is opened once generate says it is set up
                running = running or ("run(s) of at most" in err.read_text() and bool(_open_runs(dagster_home)))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            stop_group(proc)
        assert proc.returncode == -signal.SIGKILL
        texts += [out.read_text(), err.read_text()]
        at_kill = emu.report()
        assert 3 <= at_kill["tasks_created"] < ROWS, at_kill["tasks_created"]
        recorded = {k: v for k, v in _ledger_task_ids(spec).items() if v}
        assert len(recorded) <= at_kill["tasks_created"]
        assert set(recorded.values()) <= {t["id"] for t in at_kill["tasks"]}

        # 2. generate again, to completion (new tasks render faster; the old ones keep their timing).
        emu.config({"queue_s": 0.05, "process_s": 0.2})
        proc2 = run_cli("generate", str(spec), env={**env, "WAN_PIPELINE_SUBMITS_PER_SECOND": "200"}, cwd=tmp_path)
        texts += [proc2.stdout, proc2.stderr]
        assert proc2.returncode == 0, proc2.stdout + proc2.stderr
        assert re.search(r"outputs stored:\s+10/10", proc2.stdout)
        # Attempts whose task id was on disk are polled, not counted as new; the rest are (re-)sent.
        assert re.search(rf"new submissions:\s+{ROWS - len(recorded)}\n", proc2.stdout), proc2.stdout
        report = _assert_bought_once(emu, spec, "crash")
        assert report["tasks_created"] == ROWS
        frame = read_lineage(spec)
        assert frame["credits_final"].sum() == pytest.approx(report["credits_net"]) == 5.0 * ROWS
        assert [t for t in _ledger_task_ids(spec).values() if not t] == []
        # The killed process's Dagster run was closed as failed by the next generate; none is left STARTED.
        assert "closed 1 run(s) left open by a killed process" in proc2.stderr
        assert _open_runs(dagster_home) == []

        # 3. a fresh dataset through 429s (with Retry-After), 5xx and dropped connections.
        # `next` makes sure each kind fires at least once whatever order the concurrent requests arrive in.
        emu.faults({"rate_limit": {"next": 1, "rate": 0.3}, "server_error": {"next": 1, "rate": 0.2},
                    "drop": {"next": 2, "rate": 0.2}, "retry_after_s": 0.1, "seed": 3})
        before = emu.report()
        faulty = _dataset(tmp_path / "faulty", "faulty")
        proc3 = run_cli("generate", str(faulty), env={**env, "WAN_PIPELINE_SUBMITS_PER_SECOND": "200"}, cwd=tmp_path)
        texts += [proc3.stdout, proc3.stderr]
        assert proc3.returncode == 0, proc3.stdout + proc3.stderr
        report = _assert_bought_once(emu, faulty, "faulty")
        injected = report["faults_injected"]
        assert injected.get("rate_limit", 0) > 0 and injected.get("server_error", 0) > 0 and injected.get("drop", 0) > 0
        assert report["tasks_created"] - before["tasks_created"] == ROWS
        # A dropped create was answered later from its Idempotency-Key: more requests than tasks.
        own_keys = _own(report["requests_by_idempotency_key"], "faulty", report, "requests_by_idempotency_key")
        assert sum(own_keys.values()) > ROWS
        frame = read_lineage(faulty)
        spent = report["credits_net"] - before["credits_net"]
        assert frame["credits_final"].sum() == pytest.approx(spent) == 5.0 * ROWS

    _assert_no_key([dagster_home, storage_root(spec), storage_root(faulty)], texts)
