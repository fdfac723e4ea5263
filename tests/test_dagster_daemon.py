"""Dagster on PostgreSQL with runs launched by the daemon deploy/docker-compose.yaml runs (`wan-pipeline daemon`:
Dagster's daemon with the quick backfill daemon), configured by deploy/dagster.yaml itself.

PostgreSQL and SeaweedFS (S3) run on 127.0.0.1; the instance uses the deploy file's PostgreSQL storage,
queued run coordinator, tag limits, pools and S3 compute logs, with only the environment variables filled
in. A multi-run backfill of a dataset is launched through GraphQL exactly as the UI does; the daemon
queues and launches its runs. Every partition must be materialized, the lineage complete, and the host
must have created one task per output. The ledger is found through the instance (no WAN_PIPELINE_LEDGER_URL).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import write_csv, write_dataset
from dagster import AssetKey, DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.test.utils import execute_dagster_graphql
from e2e_helpers import ROOT, cli_env, emulator_process, pycache_dir
from servers import S3_BUCKET, PostgresCluster, s3_environ, s3_keys, stop_pid

from wan_pipeline.money.ledger import Ledger
from wan_pipeline.money.location import shared_ledger_url
from wan_pipeline.outputs.lineage import lineage_rows
from wan_pipeline.planning.spec import load_spec

PROMPTS = 80  # runs of 64 partitions (`partitions_per_run` at rivya's catalog concurrency, 8): two runs
LAUNCH_BACKFILL = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


def instance_env(postgres: PostgresCluster, db_url: str, s3: str) -> dict[str, str]:
    """What deploy/dagster.yaml reads from the environment, pointed at the test's servers."""
    return {"DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_PORT": str(postgres.port),
            "DAGSTER_POSTGRES_USER": "postgres", "DAGSTER_POSTGRES_PASSWORD": "trust-auth-ignores-it",
            "DAGSTER_POSTGRES_DB": db_url.rsplit("/", 1)[1], "WAN_PIPELINE_COMPUTE_LOG_BUCKET": S3_BUCKET,
            **s3_environ(s3)}


def launch_backfill(instance: DagsterInstance, workspace: Path, keys: list[AssetKey], partitions: list[str]) -> str:
    """The UI's "Materialize selected partitions" → launchPartitionBackfill, through the GraphQL schema."""
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as ctx:
        result = execute_dagster_graphql(ctx.create_request_context(), LAUNCH_BACKFILL, {"backfillParams": {
            "assetSelection": [{"path": k.path} for k in keys], "partitionNames": partitions,
            "tags": [{"key": "wan_pipeline/provider", "value": "rivya"}]}})
    answer = (result.data or {}).get("launchPartitionBackfill") or {}
    assert answer.get("__typename") == "LaunchBackfillSuccess", (result.errors, answer)
    return str(answer["backfillId"])


def wait_for_backfill(instance: DagsterInstance, backfill_id: str, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 900
    while True:
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
        done = backfill.status != BulkActionStatus.REQUESTED and all(r.is_finished for r in runs)
        if done:
            return
        assert daemon.poll() is None, f"wan-pipeline daemon exited:\n{log.read_text(errors='replace')[-4000:]}"
        assert time.monotonic() < deadline, f"backfill still {backfill.status}:\n{log.read_text()[-4000:]}"
        time.sleep(1)


def test_daemon_runs_a_multi_run_backfill_on_postgres(
    postgres: PostgresCluster, s3_endpoint: str, pycache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = postgres.create_database("dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")  # the deployed file, unchanged
    work = tmp_path / "work"
    work.mkdir()
    write_csv(work / "prompts.csv", [{"prompt_id": f"p{i:02d}", "prompt": f"study number {i} of a paper boat"}
                                     for i in range(PROMPTS)])
    spec_path = write_dataset(work, None, table="prompts.csv", spec_file="spec.yaml", name="daemon_ds", seed=5,
                              params={"resolution": "1K"}, budget={"max_credits": 100000},
                              storage=f"s3://{S3_BUCKET}/daemon")
    workspace = work / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_module:\n      module_name: wan_pipeline.definitions\n"
                         f"      working_directory: {ROOT}\n")
    with emulator_process("--queue-s", "0", "--process-s", "0.05", env=cli_env(tmp_path, pycache), cwd=tmp_path,
                          log=tmp_path / "emulator.log") as emu:
        env = cli_env(home, pycache, WAN_PIPELINE_SPECS=str(spec_path), RIVYA_BASE_URL=emu.base_url,
                      RIVYA_API_KEY="sk-daemon", HOME=str(tmp_path), **instance_env(postgres, db_url, s3_endpoint))
        for name, value in env.items():  # this process is "the webserver": same instance, same code location
            monkeypatch.setenv(name, value)
        assert shared_ledger_url() == db_url.replace("postgres@", "postgres:trust-auth-ignores-it@")
        spec = load_spec(spec_path)
        ids = [f"p{i:02d}" for i in range(PROMPTS)]
        instance = DagsterInstance.get()
        instance.add_dynamic_partitions(spec.partitions_name, ids)  # what the prompt_table asset does
        log = tmp_path / "daemon.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(["wan-pipeline", "daemon", "-w", str(workspace)], env=env, cwd=work,
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            keys = [AssetKey([spec.name, "generations"]), AssetKey([spec.name, "media"])]
            backfill_id = launch_backfill(instance, workspace, keys, ids)
            wait_for_backfill(instance, backfill_id, daemon, log)
        finally:
            stop_pid(daemon)
        report = emu.report()

    assert "QuickBackfillDaemon" in log.read_text(errors="replace")  # ours ran the backfill, not Dagster's stock one
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert len(runs) == 2 and all(r.status == DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
    assert all(r.tags.get("wan_pipeline/provider") == "rivya" for r in runs)  # the tag the run queue limits
    for key in keys:
        assert set(instance.get_materialized_partitions(key)) == set(ids)
    assert report["tasks_created"] == PROMPTS  # one task per output: nothing billed twice
    assert set(report["tasks_by_idempotency_key"].values()) == {1}
    with Ledger.open(db_url) as ledger:  # the instance's own database holds the ledger
        rows = lineage_rows(ledger, spec.name)
    assert len(rows) == PROMPTS and {r["status"] for r in rows} == {"succeeded"}
    assert {r["prompt_id"] for r in rows} == set(ids)
    media = s3_keys(s3_endpoint, "daemon/media/")
    assert sorted(r["media_uri"].removeprefix(f"s3://{S3_BUCKET}/") for r in rows) == sorted(media)
    logs = s3_keys(s3_endpoint, "dagster/compute-logs/")
    assert any(runs[0].run_id in k for k in logs)  # step logs went to S3 (deploy/dagster.yaml compute_logs)

