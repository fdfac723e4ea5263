"""A kill storm on a host without idempotency keys (DESIGN §9): `generate` is SIGKILLed again and again, each
time right as the DashScope emulator (a real server on 127.0.0.1) makes a task, so the process often dies
between the host creating a task and the ledger hearing of it. Each next run finds such a create in the host's
task list, inside its own window between its neighbours, and adopts it (or re-sends it when the list proves it
never arrived). The storm ends with every output stored and the host holding exactly one task per output.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import write_dataset
from e2e_helpers import (
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

API_KEY = "sk-storm-0123"
ROWS = 12
ROUNDS = 8


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


def _spec(root: Path) -> Path:
    rows = [{"prompt_id": f"storm_{i:02d}", "prompt": f"A lighthouse in storm number {i}"} for i in range(ROWS)]
    # No `endpoint:`: DASHSCOPE_BASE_URL points at the emulator process.
    return write_dataset(root, rows, table="prompts.csv", spec_file="spec.yaml", name="storm", provider="dashscope",
                         model="wan2.7-image", seed=11, params={"resolution": "1K"}, storage="./out")


def _kill_after_new_tasks(proc: subprocess.Popen[bytes], created: int, wanted: int, count: object) -> bool:
    """SIGKILL the generate process group as soon as the host holds `wanted` more tasks; False if it ended."""
    assert callable(count)
    while proc.poll() is None:
        if count() >= created + wanted:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return True
        time.sleep(0.003)
    return False


def _unconfirmed(spec: Path) -> int:
    """Attempts the ledger holds as sent but without a task id (what a kill mid-create leaves)."""
    db = sqlite3.connect(storage_root(spec) / "_state" / "ledger.sqlite")
    try:
        return int(db.execute("SELECT COUNT(*) FROM attempts WHERE task_id IS NULL AND submit_calls > 0")
                   .fetchone()[0])
    finally:
        db.close()


def test_kill_storm_ends_with_every_output_stored_and_one_task_each(tmp_path: Path, pycache: Path) -> None:
    base_env = cli_env(tmp_path / "dagster_home", pycache)
    with emulator_process("--api-key", API_KEY, "--root-provider", "dashscope", "--queue-s", "0.05",
                          "--process-s", "0.3", "--state", str(tmp_path / "emu.json"), env=base_env, cwd=tmp_path,
                          log=tmp_path / "emulator.log") as emu:
        env = {**base_env, "DASHSCOPE_BASE_URL": emu.base_url, "DASHSCOPE_API_KEY": API_KEY,
               "WAN_PIPELINE_SUBMITS_PER_SECOND": "50"}
        spec = _spec(tmp_path / "storm")
        # Creates are answered 0.2 s after the host made the task, so a kill aimed at a new task lands in that
        # window: the host holds a task the killed process never heard of.
        emu.config({"answer_delay_s": 0.2})

        def created() -> int:
            return int(emu.report()["tasks_created"])

        kills, left_unconfirmed = 0, 0
        for round_no in range(ROUNDS):
            before = created()
            if before >= ROWS:
                break
            log = (tmp_path / f"round{round_no}.log").open("wb")
            proc = subprocess.Popen(cli_cmd("generate", str(spec)), cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                killed = _kill_after_new_tasks(proc, before, 1 + round_no % 3, created)
            finally:
                stop_group(proc)
                log.close()
            kills += killed
            if killed:
                left_unconfirmed += _unconfirmed(spec)
        assert kills >= 3, "the storm needs a few kills mid-run"

        assert left_unconfirmed >= 1, "no kill landed between a task's creation and its answer"
        emu.config({"answer_delay_s": 0})
        final = run_cli("generate", str(spec), env=env, cwd=tmp_path, timeout=300)
        assert final.returncode == 0, final.stdout + final.stderr
        report = emu.report()
        # Exactly one task per planned output, and no create was ever sent twice.
        assert report["tasks_created"] == ROWS, (report["tasks_created"], left_unconfirmed)
        assert report["submit_requests"] == ROWS
        frame = read_lineage(spec)
        assert set(frame["status"]) == {"succeeded"} and len(frame) == ROWS
        assert sorted(frame["task_id"]) == sorted(t["id"] for t in report["tasks"])
        assert sorted(frame["prompt_id"]) == [f"storm_{i:02d}" for i in range(ROWS)]
        for row in frame.itertuples():
            assert sha256_file(row.media_uri) == row.media_sha256
        assert len(media_files(spec)) == ROWS
        assert frame["cost_usd"].sum() == pytest.approx(report["credits_net"]) == pytest.approx(0.03 * ROWS)
        assert _unconfirmed(spec) == 0
