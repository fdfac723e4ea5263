"""`generate` runs a backfill's range runs side by side in one process, on Dagster's SQLite instance as the CLI
sets it up (issue 7): they overlap in time, share the account's concurrency, buy each output once, and leave a
record a stock Dagster instance reads.

Against the DashScope emulator in its own process (no idempotency keys: one create at a time across all runs).
Nothing is timed; overlap is read from the runs' own start and end records.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import write_dataset
from e2e_helpers import cli_env, emulator_process, pycache_dir, run_cli

from wan_pipeline.assets.backfill import WAVES_PER_RUN
from wan_pipeline.assets.dagster_compat import PooledSqliteEventLogStorage, prepare_side_by_side, range_tags
from wan_pipeline.assets.dataset import generate_job_name
from wan_pipeline.assets.keys import key
from wan_pipeline.cli.home import ensure_dagster_home
from wan_pipeline.planning.spec import load_spec

API_KEY = "sk-side-by-side-0123"
CONCURRENCY = 8
ROWS = 2 * WAVES_PER_RUN * CONCURRENCY + 20  # three range runs (`partitions_per_run` at this concurrency: 64)


def test_range_runs_go_side_by_side_and_buy_each_output_once(tmp_path: Path,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path / "dagster_home"
    env = cli_env(home, pycache_dir(tmp_path_factory), WAN_PIPELINE_STATE_DIR=str(tmp_path / "state"))
    with emulator_process("--api-key", API_KEY, "--root-provider", "dashscope", "--queue-s", "0",
                          "--process-s", "0.3", env=env, cwd=tmp_path, log=tmp_path / "emulator.log") as emu:
        emu.config({"media_max_side": 32})
        env.update(DASHSCOPE_BASE_URL=emu.base_url, DASHSCOPE_API_KEY=API_KEY,
                   WAN_PIPELINE_MAX_CONCURRENCY=str(CONCURRENCY), WAN_PIPELINE_SUBMITS_PER_SECOND="1000")
        rows = [{"prompt_id": f"s{i:03d}", "prompt": f"A harbour crane, study {i}"} for i in range(ROWS)]
        spec_path = write_dataset(tmp_path / "data", rows, table="prompts.csv", spec_file="spec.yaml", name="sides",
                                  provider="dashscope", model="wan2.7-image", seed=3, params={"resolution": "1K"},
                                  storage="./out")
        done = run_cli("generate", str(spec_path), env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 at a time" in done.stderr
        report = emu.report()
    assert report["tasks_created"] == ROWS == report["submit_requests"]  # each output bought once
    spec = load_spec(spec_path)
    # a stock instance (Dagster's own SqliteEventLogStorage) reads what the pooled one wrote
    (home / "stock.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    stock = dg.DagsterInstance.from_config(str(home), config_filename="stock.yaml")
    try:
        assert not isinstance(stock.event_log_storage, PooledSqliteEventLogStorage)
        assert set(stock.get_materialized_partitions(key(spec, "media"))) == {r["prompt_id"] for r in rows}
        runs = stock.get_runs(dg.RunsFilter(job_name=generate_job_name(spec)))
        assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        spans = sorted((stock.get_run_record_by_id(r.run_id).start_time, stock.get_run_record_by_id(r.run_id).end_time)  # type: ignore[union-attr]
                       for r in runs)
    finally:
        stock.dispose()
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))  # they overlapped


def test_the_cli_instance_uses_the_pooled_event_log_and_upgrades_only_its_own_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    (ours).mkdir()
    (ours / "dagster.yaml").write_text("# created by wan-pipeline; old\ntelemetry:\n  enabled: false\n", "utf-8")
    (theirs).mkdir()
    (theirs / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", "utf-8")
    for home, pooled in ((ours, True), (theirs, False)):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        ensure_dagster_home()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage) is pooled
            assert prepare_side_by_side(instance) is pooled  # a user's instance captures step output


def test_the_pooled_event_log_takes_events_from_many_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs in threads writing at once (what side-by-side runs do), then read back whole."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    ensure_dagster_home()

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition([f"p{i}" for i in range(40)]))
    def thing(context) -> None:  # type: ignore[no-untyped-def]  # Dagster reads the annotation, not its string
        for pk in context.partition_keys:
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=pk))

    job = dg.Definitions(assets=[thing], jobs=[dg.define_asset_job("j", [thing])]).resolve_job_def("j")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert prepare_side_by_side(instance)
        results: list[bool] = []

        def one(first: int) -> None:
            tags = range_tags(f"p{first}", f"p{first + 9}")
            results.append(job.execute_in_process(instance=instance, tags=tags, raise_on_error=False).success)

        threads = [threading.Thread(target=one, args=(first,)) for first in (0, 10, 20, 30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert results == [True] * 4
        assert len(instance.get_materialized_partitions(thing.key)) == 40
        # its commits do not wait for the disk (the ledger's do): WAL with synchronous=NORMAL on every connection
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        run_id = instance.get_runs(limit=1)[0].run_id
        for connection in (storage.index_connection(), storage.run_connection(run_id)):
            with connection as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_planned_events_written_as_one_batch_read_like_stock_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's instance takes a run's per-partition "planned" events as one batch (one transaction per shard)
    and makes each run's shard from a template. A stock instance reads the same thing a stock write gives: a
    planned event per partition (what marks a partition in progress, or failed when its run fails), the
    materializations, and the run's own log."""
    parts = dg.StaticPartitionsDefinition([f"p{i}" for i in range(10)])

    @dg.asset(partitions_def=parts)
    def thing(context) -> None:  # type: ignore[no-untyped-def]  # Dagster reads the annotation, not its string
        for pk in context.partition_keys[:4]:
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=pk))
        raise dg.Failure("the rest failed")

    job = dg.Definitions(assets=[thing], jobs=[dg.define_asset_job("j", [thing])]).resolve_job_def("j")
    batches: list[int] = []
    templates: list[bool] = []
    pooled = PooledSqliteEventLogStorage
    store_batch, copy_template = pooled.store_event_batch, pooled._copy_template

    def spy_batch(self: PooledSqliteEventLogStorage, events: Any) -> None:
        batches.append(len(events))
        store_batch(self, events)

    def spy_template(self: PooledSqliteEventLogStorage, shard: str) -> bool:
        templates.append(copy_template(self, shard))
        return templates[-1]

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", spy_batch)
    monkeypatch.setattr(PooledSqliteEventLogStorage, "_copy_template", spy_template)
    seen = {}
    for name, ours in (("ours", True), ("stock", False)):
        home = tmp_path / name
        home.mkdir()
        if ours:
            monkeypatch.setenv("DAGSTER_HOME", str(home))
            ensure_dagster_home()
            monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "10000")
        else:
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", "utf-8")
            monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE")
        with dg.DagsterInstance.from_config(str(home)) as writer:
            assert isinstance(writer.event_log_storage, PooledSqliteEventLogStorage) is ours
            runs = [job.execute_in_process(instance=writer, tags=range_tags(f"p{a}", f"p{a + 4}"),
                                           raise_on_error=False) for a in (0, 5)]  # fmt: skip
            assert [r.success for r in runs] == [False, False]
        (home / "stock.yaml").write_text("telemetry:\n  enabled: false\n", "utf-8")
        with dg.DagsterInstance.from_config(str(home), config_filename="stock.yaml") as stock:
            storage = stock.event_log_storage
            assert not isinstance(storage, PooledSqliteEventLogStorage)
            planned = stock.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                                                    asset_key=thing.key))  # fmt: skip
            unfinished = storage.get_latest_asset_partition_materialization_attempts_without_materializations(thing.key)
            logs = [stock.all_logs(r.run_id) for r in runs]
            seen[name] = (
                sorted(r.partition_key or "" for r in planned),
                set(stock.get_materialized_partitions(thing.key)),
                sorted(unfinished),
                [sorted(str(e.dagster_event_type) for e in log) for log in logs],
            )
    assert batches == [5, 5] and templates == [True, True]  # one batch of planned events per run; shards copied
    assert seen["ours"] == seen["stock"]
    planned_keys, materialized, unfinished_keys, _ = seen["ours"]
    assert planned_keys == [f"p{i}" for i in range(10)]
    assert materialized == {"p0", "p1", "p2", "p3", "p5", "p6", "p7", "p8"}
    assert unfinished_keys == ["p4", "p9"]  # their runs failed: the UI shows them failed


def test_dynamic_partitions_written_and_read_like_stock_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled event log adds and reads dynamic partitions through the driver's cursor: the same rows, in
    the same order, as Dagster's own storage writes and reads, on the same files."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    ensure_dagster_home()
    (tmp_path / "stock.yaml").write_text("telemetry:\n  enabled: false\n", "utf-8")
    with dg.DagsterInstance.from_config(str(tmp_path)) as ours, \
            dg.DagsterInstance.from_config(str(tmp_path), config_filename="stock.yaml") as stock:  # fmt: skip
        assert isinstance(ours.event_log_storage, PooledSqliteEventLogStorage)
        assert not isinstance(stock.event_log_storage, PooledSqliteEventLogStorage)
        ours.add_dynamic_partitions("d", ["c", "a", "b"])
        ours.add_dynamic_partitions("d", ["a", "e", "d", "e", "c"])  # known keys skipped, a repeat added once
        stock.add_dynamic_partitions("d", ["f", "a"])
        ours.add_dynamic_partitions("other", ["a"])
        ours.add_dynamic_partitions("d", [])
        stock.delete_dynamic_partition("d", "b")
        ours.add_dynamic_partitions("d", ["b"])  # deleted, then added again: last
        expected = ["c", "a", "e", "d", "f", "b"]
        assert list(ours.get_dynamic_partitions("d")) == expected == list(stock.get_dynamic_partitions("d"))
        assert list(ours.get_dynamic_partitions("other")) == ["a"] and list(ours.get_dynamic_partitions("none")) == []
        assert ours.has_dynamic_partition("d", "e") and not stock.has_dynamic_partition("d", "g")
    with sqlite3.connect(tmp_path / "history" / "runs" / "index.db") as db:
        stamps = db.execute("SELECT create_timestamp FROM dynamic_partitions WHERE create_timestamp IS NULL").fetchall()
    assert stamps == []  # the column's server default, as Dagster's insert leaves it


def test_asset_events_leave_the_rows_dagsters_own_writes_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's asset events — planned, materialized (with an indexed tag), and a second run's — written three
    ways on fresh stores: by a stock instance (Dagster's own storage) one by one; by ours one by one (each a
    batch of one, the asset's row updated first); and as one batch per run (each asset's row updated once,
    with what its events would have left in turn). The index's event rows, indexed tags and `asset_keys` rows
    come out the same."""
    parts = dg.StaticPartitionsDefinition([f"p{i}" for i in range(6)])

    @dg.multi_asset(specs=[dg.AssetSpec("a", partitions_def=parts, skippable=True),
                           dg.AssetSpec("b", partitions_def=parts, skippable=True)])  # fmt: skip
    def both(context):  # type: ignore[no-untyped-def]  # Dagster reads the annotation, not its string
        for pk in context.partition_keys[:2]:
            context.log_event(dg.AssetMaterialization(asset_key="a", partition=pk,
                                                      tags={"dagster/data_version": f"v-{pk}"}))  # fmt: skip
        raise dg.Failure("the rest not made")
        yield  # a generator, as the generate assets are

    captured: list[Any] = []

    def spy(self: PooledSqliteEventLogStorage, events: Any) -> None:
        captured.extend(e for e in events if e.is_dagster_event and e.dagster_event.asset_key)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "_store_asset_events", spy)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "10000")
    job = dg.Definitions(assets=[both], jobs=[dg.define_asset_job("j", [both])]).resolve_job_def("j")
    rows = {}
    for name in ("source", "dagster", "one_by_one", "batch"):
        home = tmp_path / name
        home.mkdir()
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        ensure_dagster_home()
        (home / "stock.yaml").write_text("telemetry:\n  enabled: false\n", "utf-8")
        config = "stock.yaml" if name == "dagster" else "dagster.yaml"
        with dg.DagsterInstance.from_config(str(home), config_filename=config) as instance:
            storage = instance.event_log_storage
            assert isinstance(storage, PooledSqliteEventLogStorage) is (name != "dagster")
            if name == "source":
                for first, last in (("p0", "p2"), ("p3", "p5")):
                    job.execute_in_process(instance=instance, tags=range_tags(first, last), raise_on_error=False)
                monkeypatch.undo()
                monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "10000")
                kinds = [str(e.dagster_event_type).rsplit(".", 1)[-1] for e in captured]
                assert kinds.count("ASSET_MATERIALIZATION_PLANNED") == 12 and kinds.count("ASSET_MATERIALIZATION") == 4
                continue
            if name == "batch":
                for run_id in dict.fromkeys(e.run_id for e in captured):
                    storage.store_event_batch([e for e in captured if e.run_id == run_id])
            for event in captured if name != "batch" else ():
                storage.store_event(event)
        with sqlite3.connect(home / "history" / "runs" / "index.db") as db:
            columns = [c[1] for c in db.execute("PRAGMA table_info(asset_keys)") if c[1] != "create_timestamp"]
            # every column but when the row was made (the database's clock, not the events')
            rows[name] = (
                db.execute(f"SELECT {', '.join(columns)} FROM asset_keys ORDER BY asset_key").fetchall(),
                db.execute("SELECT id, run_id, event, dagster_event_type, asset_key, partition FROM event_logs"
                           " ORDER BY id").fetchall(),
                db.execute("SELECT event_id, asset_key, key, value FROM asset_event_tags ORDER BY id").fetchall(),
            )
    assert len(rows["dagster"][0]) == 2 and len(rows["dagster"][1]) == 16 and len(rows["dagster"][2]) == 4
    assert rows["one_by_one"] == rows["dagster"] == rows["batch"]
