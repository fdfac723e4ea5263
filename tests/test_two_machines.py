"""Two machines, one dataset: two `wan-pipeline generate` processes at once, each with its own empty HOME,
state dir and Dagster home, sharing only PostgreSQL (WAN_PIPELINE_LEDGER_URL) and an S3 store (SeaweedFS,
with real signature checking), against the emulator of a host WITHOUT idempotency keys (DashScope) on
127.0.0.1.

Every planned output must be bought and stored exactly once (the host's task count equals the plan), the
combined spend stays within the budget and the combined submission rate within the configured limit.
Then one machine is SIGKILLed mid-run: the other, and a re-run, finish without buying anything twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from conftest import write_csv, write_dataset
from e2e_helpers import cli_cmd, cli_env, emulator_process, pycache_dir
from servers import S3_BUCKET, PostgresCluster, s3_environ, s3_keys

from wan_pipeline.money.ledger import Ledger

ROWS = 16
RATE = 6.0  # creates per second for the whole account, both machines together
PRICE_USD = 0.03  # what the plan estimates for one wan2.7-image 1K image (checked against `estimate` below)
SUBJECTS = ["lighthouse", "ramen", "paper crane", "fox", "teapot", "bicycle", "cabin", "koi pond",
            "violinist", "umbrella", "orchard", "tram", "glacier", "market", "kite", "harbor"]


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


@dataclass
class Machine:
    """One 'machine': a directory standing for its whole local disk, and the environment it runs with."""

    root: Path
    spec: Path
    env: dict[str, str]


def machine(root: Path, name: str, prefix: str, shared: dict[str, str], pycache: Path, rows: int = ROWS) -> Machine:
    for sub in ("home", "state", "dagster_home", "work"):
        (root / sub).mkdir(parents=True)
    work = root / "work"
    write_csv(work / "prompts.csv", [{"prompt_id": f"p{i:02d}", "prompt": f"a {s} at dusk, film photo"}
                                     for i, s in enumerate(SUBJECTS[:rows])])
    spec = write_dataset(work, None, table="prompts.csv", spec_file="spec.yaml", name=name, provider="dashscope",
                         model="wan2.7-image", seed=11, params={"resolution": "1K", "watermark": False},
                         budget={"max_usd": round(rows * PRICE_USD, 4)}, storage=f"s3://{S3_BUCKET}/{prefix}")
    env = cli_env(root / "dagster_home", pycache, HOME=str(root / "home"),
                  WAN_PIPELINE_STATE_DIR=str(root / "state"), **shared)
    return Machine(root, spec, env)


def start(m: Machine, log: str) -> subprocess.Popen[bytes]:
    with (m.root / log).open("wb") as out:
        return subprocess.Popen(cli_cmd("generate", str(m.spec)), env=m.env, cwd=m.spec.parent, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen[bytes], m: Machine, log: str) -> int:
    try:
        return proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"generate did not finish:\n{(m.root / log).read_text(errors='replace')}") from None


def shared_env(ledger_url: str, emulator_url: str, s3: str, concurrency: int) -> dict[str, str]:
    return {"WAN_PIPELINE_LEDGER_URL": ledger_url, "DASHSCOPE_BASE_URL": f"{emulator_url}/dashscope",
            "DASHSCOPE_API_KEY": "sk-two-machines", "WAN_PIPELINE_SUBMITS_PER_SECOND": str(RATE),
            "WAN_PIPELINE_MAX_CONCURRENCY": str(concurrency), "WAN_PIPELINE_LEASE_TTL_S": "30",
            **s3_environ(s3)}


def ledger_rows(url: str, dataset: str) -> list[dict[str, Any]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT identity, attempt, state, task_id, submitted_at, error_class, cost_usd "
                        "FROM wan_pipeline.attempts WHERE dataset=%s", (dataset,))
            cols = [d[0] for d in cur.description or []]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def s3_media(s3: str, prefix: str) -> list[str]:
    return s3_keys(s3, f"{prefix}/media/")


def submit_times(rows: list[dict[str, Any]]) -> list[float]:
    return sorted(datetime.fromisoformat(r["submitted_at"].replace("Z", "+00:00")).timestamp()
                  for r in rows if r["submitted_at"])


def test_two_machines_buy_every_output_once(
    postgres: PostgresCluster, s3_endpoint: str, pycache: Path, tmp_path: Path
) -> None:
    url = postgres.create_database("two_machines")
    with emulator_process("--queue-s", "0.2", "--process-s", "0.6", env=cli_env(tmp_path, pycache), cwd=tmp_path,
                          log=tmp_path / "emulator.log") as emu:
        shared = shared_env(url, emu.base_url, s3_endpoint, concurrency=4)
        a = machine(tmp_path / "a", "twin", "two-machines/twin", shared, pycache)
        b = machine(tmp_path / "b", "twin", "two-machines/twin", shared, pycache)
        estimate = subprocess.run(cli_cmd("estimate", str(a.spec)), env=a.env, cwd=a.spec.parent,
                                  capture_output=True, text=True, check=True)
        assert f"{ROWS * PRICE_USD:.2f}" in estimate.stdout + estimate.stderr  # the budget is exactly the plan
        procs = [start(a, "a.log"), start(b, "b.log")]
        codes = [finish(procs[0], a, "a.log"), finish(procs[1], b, "b.log")]
        logs = (a.root / "a.log").read_text(errors="replace") + (b.root / "b.log").read_text(errors="replace")
        assert codes == [0, 0], logs
        report = emu.report()

    assert report["tasks_created"] == ROWS  # the host's task count equals the plan: nothing bought twice
    assert report["submit_requests"] == ROWS
    assert sorted(report["tasks_by_body"].values()) == [1] * ROWS
    media = s3_media(s3_endpoint, "two-machines/twin")
    assert len(media) == ROWS and len(set(media)) == ROWS  # every output stored once, in the shared store
    rows = ledger_rows(url, "twin")
    assert len(rows) == ROWS and {r["state"] for r in rows} == {"stored"}
    assert len({r["task_id"] for r in rows}) == ROWS
    assert sum(r["cost_usd"] for r in rows) <= ROWS * PRICE_USD + 1e-9  # within the budget, both together
    assert "sk-two-machines" not in logs


def test_a_killed_machine_leaves_nothing_to_buy_twice(
    postgres: PostgresCluster, s3_endpoint: str, pycache: Path, tmp_path: Path
) -> None:
    url = postgres.create_database("killed")
    Ledger.open(url).close()  # the schema exists before the test polls it
    with emulator_process("--queue-s", "0.5", "--process-s", "1.5", env=cli_env(tmp_path, pycache), cwd=tmp_path,
                          log=tmp_path / "emulator.log") as emu:
        shared = shared_env(url, emu.base_url, s3_endpoint, concurrency=4)
        a = machine(tmp_path / "a", "killed", "two-machines/killed", shared, pycache)
        b = machine(tmp_path / "b", "killed", "two-machines/killed", shared, pycache)
        victim, survivor = start(a, "a.log"), start(b, "b.log")
        deadline = time.monotonic() + 300
        while sum(1 for r in ledger_rows(url, "killed") if r["task_id"]) < 4:  # tasks in flight, none finished
            assert time.monotonic() < deadline and victim.poll() is None, (a.root / "a.log").read_text()
            time.sleep(0.05)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        in_flight = {r["identity"]: r["task_id"] for r in ledger_rows(url, "killed") if r["task_id"]}
        survivor_code = finish(survivor, b, "b.log")
        rerun = start(a, "rerun.log")  # the killed machine comes back with the same (local) disk
        rerun_code = finish(rerun, a, "rerun.log")
        report = emu.report()

    rows = ledger_rows(url, "killed")
    # A create the killed process sent but never heard back about may be held by the host: without
    # idempotency keys it is reported, never re-sent (DESIGN §9); it was still bought only once.
    unknown = [r for r in rows if r["state"] != "stored"]
    assert all(r["error_class"] == "AmbiguousSubmission" and r["task_id"] is None for r in unknown), unknown
    # the re-run finishes: every output stored, or reported ambiguous as above
    assert rerun_code == (1 if unknown else 0), (a.root / "rerun.log").read_text(errors="replace")
    assert survivor_code in (0, 1), (b.root / "b.log").read_text(errors="replace")
    stored = [r for r in rows if r["state"] == "stored"]
    # nothing bought twice: one task per stored output, plus at most one for each unconfirmed create
    assert len(stored) <= report["tasks_created"] <= ROWS
    assert set(report["tasks_by_body"].values()) == {1}
    assert len({r["task_id"] for r in stored}) == len(stored)
    assert len(rows) == ROWS and all(r["attempt"] == 1 for r in rows)
    # the tasks in flight when the machine died were polled to the end, not bought again
    assert {r["identity"]: r["task_id"] for r in stored if r["identity"] in in_flight} == in_flight
    media = s3_media(s3_endpoint, "two-machines/killed")
    assert len(media) == ROWS - len(unknown) == len(set(media))


def test_two_machines_on_one_account_share_its_submission_rate(
    postgres: PostgresCluster, s3_endpoint: str, pycache: Path, tmp_path: Path
) -> None:
    """Two datasets on one provider account, one per machine, started together: their creates together keep
    to the account's rate (each pacing alone, they would submit at twice the rate). Instants are reserved in
    arrival order, so the machine that asks first may well be served first."""
    url = postgres.create_database("one_account")
    rate = 2.0  # 16 creates a machine: 8 s each alone, longer than the two take to start
    with emulator_process("--queue-s", "0.1", "--process-s", "0.3", env=cli_env(tmp_path, pycache), cwd=tmp_path,
                          log=tmp_path / "emulator.log") as emu:
        # account concurrency for both plans at once: only the shared submission rate spaces the creates
        shared = {**shared_env(url, emu.base_url, s3_endpoint, concurrency=2 * ROWS),
                  "WAN_PIPELINE_SUBMITS_PER_SECOND": str(rate)}
        a = machine(tmp_path / "a", "left", "two-machines/left", shared, pycache)
        b = machine(tmp_path / "b", "right", "two-machines/right", shared, pycache)
        procs = [start(a, "a.log"), start(b, "b.log")]
        assert [finish(procs[0], a, "a.log"), finish(procs[1], b, "b.log")] == [0, 0]
        report = emu.report()
    assert report["tasks_created"] == 2 * ROWS
    left, right = submit_times(ledger_rows(url, "left")), submit_times(ledger_rows(url, "right"))
    assert len(left) == len(right) == ROWS
    # 2/s for the account: any 3 s holds at most 6 creates (+2 for the jitter of recording them), whoever
    # sent them; each machine pacing alone at 2/s would have put up to 12 there
    both = sorted(left + right)
    assert max(sum(1 for t in both if start <= t < start + 3.0) for start in both) <= 8
    assert both[-1] - both[0] >= (2 * ROWS - 1) / rate * 0.9
