"""The only place this package relies on Dagster beyond its public API (checked against dagster 1.13.27).

Everything else uses what `import dagster` exports. Two things have no public form:

- **Partition-range run tags.** A run over several partitions of a multi-run backfill carries its range in two
  system tags. Dagster exports no constant for them (they are `ASSET_PARTITION_RANGE_START_TAG` / `..._END_TAG`
  in `dagster._core.storage.tags`); setting them is the way Dagster's maintainers show to launch a range run
  from Python (dagster-io/dagster discussion #11653). We keep the strings here instead of importing the private
  module; tests/test_backfill_runs.py compares them with Dagster's own, so a rename fails a test, not a run.
- **An event log that keeps its SQLite connections.** Dagster's `SqliteEventLogStorage` builds an engine, opens
  a connection, commits, closes it and disposes the engine for every event; closing the last connection of a
  WAL database also checkpoints it. At thousands of partitions that is most of a run's CPU (profiled: 56 % of
  `generate` in `store_event`, 7 ms an event). `PooledSqliteEventLogStorage` is the same storage — same
  files, same schema, readable by a stock webserver — keeping one small pool per recently used shard. The
  instance the CLI creates names it in its dagster.yaml (`cli/home.py`); `_connect` is the private method it
  overrides; tests/test_side_by_side_runs.py has a stock instance read what it wrote, from runs in threads.
  More costs go the same way. A batch of asset events (Dagster sends a run's per-partition "planned"
  events as one batch when `DAGSTER_EVENT_BATCH_SIZE` is set; the stock SQLite storage still writes them one
  transaction pair each) is written in one transaction per shard, with the same rows (`store_event_batch`);
  a single asset event (a partition's materialization) is written the same way, as a batch of one, with the
  asset's row updated first rather than after a refused insert, and the schema checks Dagster repeats for
  every such event (a new connection to ask whether the tags table exists; a reflection of the asset table's
  columns) remember what they found (`has_table`): `benchmarks/bench_event_store.py` measured 4.7 → 2.0-2.7 ms
  of CPU a materialization (Dagster's own storage: 11-14 ms).
  And a new run's shard is a copy of a freshly initialized one instead of Dagster's per-run schema creation
  and alembic stamping (`_open`); the template is made by Dagster's own `_initdb`, once per process. Dynamic
  partitions are added and read with Dagster's SQL on the driver's cursor (every range run reads all of a
  dataset's keys three times; SQLAlchemy's rows made that 0.16 s a read at 100,000 keys).
- **Runs side by side in one process.** Two things in Dagster assume one run per process. Capturing steps'
  stdout redirects the process's file descriptors for the step's duration, so two runs would trade streams;
  and every run start calls `logging.config.dictConfig` (`get_yaml_python_handlers`, even with no
  `python_logs` configured), which holds the logging module's lock while it takes every handler's lock — and
  another run's event handler holds its own lock while it writes an event, which may need the module's lock
  (a logger cache miss): a lock-order deadlock, seen here within minutes. `prepare_side_by_side` allows it
  only for an instance that captures nothing and has no `python_logs` handlers, and then skips that call on
  this instance object (it configures nothing in that case).
- **Closing a run from outside its process.** A SIGKILLed `generate` leaves its run STARTED. The webserver's
  GraphQL can terminate runs, but the CLI has no webserver; `DagsterInstance.report_run_failed` is the
  instance method the webserver and daemons use for this and is not marked public.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.storage.event_log.schema import AssetKeyTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from sqlalchemy import event as sa_event
from sqlalchemy import exc as db_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, QueuePool

PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """The run tags of a run over the partition keys first..last (inclusive, in the definition's order)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}


def mark_run_failed(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Record a run whose process is gone as failed, with why."""
    instance.report_run_failed(run, message)


#: shards (run databases and the index) whose pools stay open; older ones are closed as runs come and go
_OPEN_SHARDS = 32
#: asked of Dagster for the "planned" events of a run: all of a run's in one batch (`launch.py` sets it)
EVENT_BATCH_SIZE = "10000"
_BATCHABLE = ASSET_EVENTS - ASSET_CHECK_EVENTS - set(EVENT_TYPE_TO_PIPELINE_RUN_STATUS)


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with its connections kept open per shard (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._template: bytes | None = None
        self._schema_seen: set[str] = set()  # index tables and asset-key columns found present (see has_table)
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # The lock guards only making a shard's engine: holding it while connecting (Dagster's way) would put it
        # inside the logging locks of runs side by side (see prepare_side_by_side). The pool is thread-safe.
        engine = self._engines.get(shard)
        if engine is None:
            engine = self._open(shard)
        with engine.connect() as conn, conn.begin():
            yield conn

    def _open(self, shard: str) -> Engine:
        with self._db_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,  # the storage opens a second connection to a shard inside a first
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            sa_event.listen(engine, "connect", _commit_without_fsync)
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._copy_template(shard):
                    self._initdb(engine)
                self._initialized_dbs.add(shard)
            self._engines[shard] = engine
            if len(self._engines) > _OPEN_SHARDS:
                # the least recently opened shard; a connection still checked out of it closes on return
                self._engines.pop(next(iter(self._engines))).dispose()
            return engine

    def has_table(self, table_name: str) -> bool:
        """Dagster's check, asked of the index for every materialization (whether to write its tags), opens a new
        engine and connection each time. Tables are only ever added (`dagster instance migrate`;
        `wipe` empties them), so one found stays found; one not found is asked again, on a pooled connection."""

        def ask() -> bool:
            with self.index_connection() as conn:
                return bool(conn.dialect.has_table(conn, table_name))

        return self._found(table_name, ask)

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        """Dagster's check reflects the asset-key table's columns for every asset event; as with `has_table`, a
        column found stays found."""
        check = super()._has_asset_key_col_on_connection
        return self._found(f"{AssetKeyTable.name}.{column_name}", lambda: check(conn, column_name))

    def _found(self, name: str, ask: Callable[[], bool]) -> bool:
        """Whether the schema has `name`: remembered once found (schemas only grow), asked again until then."""
        if name not in self._schema_seen:
            if not ask():
                return False
            self._schema_seen.add(name)
        return True

    def store_event(self, event: Any) -> None:
        """An asset event alone is written as a batch of one (the same rows; see `_store_asset_events`);
        everything else as Dagster writes it."""
        if event.is_dagster_event and event.dagster_event_type in _BATCHABLE:
            self._store_asset_events([event])
        else:
            super().store_event(event)

    def store_event_batch(self, events: Sequence[Any]) -> None:
        """One run's asset events in one transaction on its shard and one on the index. Anything else (run
        status, asset checks, mixed runs) goes one by one."""
        if len({e.run_id for e in events}) != 1 or not all(
            e.is_dagster_event and e.dagster_event_type in _BATCHABLE for e in events
        ):
            for event in events:
                self.store_event(event)
            return
        self._store_asset_events(events)

    def _store_asset_events(self, events: Sequence[Any]) -> None:
        """The rows Dagster's `store_event` writes for each of one run's asset events, in order: the event on
        its run's shard and on the index, its indexed tags, and its asset's row (`_upsert_asset_key`)."""
        inserts = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            for insert in inserts:
                conn.execute(insert)
        with self.index_transaction() as conn:
            latest: dict[str, dict[str, Any]] = {}  # per asset key: its row's values as the events leave them
            has_cols = self._has_asset_key_index_cols_on_connection(conn)
            for event, insert in zip(events, inserts, strict=True):
                key = conn.execute(insert).inserted_primary_key
                event_id = key[0] if key else None
                if event_id is None:
                    raise dg.DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
                self._store_asset_event_tags(conn, [event], [event_id])
                asset = event.dagster_event.asset_key
                values = self._get_asset_entry_values(event, event_id, has_cols) if asset else {}
                if values:
                    latest.setdefault(asset.to_string(), {}).update(values)
            for asset_key, values in latest.items():
                _upsert_asset_key(conn, asset_key, values)

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        """Dagster's query (the keys in the order they were added), read through the driver's cursor: SQLAlchemy's
        row objects were five sixths of the time at 100,000 keys (0.16 s against 0.03 s), and Dagster reads every
        key of the definition three times per range run to resolve the run's range."""
        self._check_partitions_table()
        with self.index_connection() as conn:
            rows = _driver_query(conn, _SELECT_PARTITIONS, (partitions_def_name,))
        return [row[0] for row in rows]

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys: Sequence[str]) -> None:
        """Dagster's insert of the keys not there yet, in their order, as one driver-level statement: the stock
        way compiles an IN list of every key to find the existing ones first (0.55 s for 100,000 new keys, on
        the way to the first submission). Same rows: the unique index on (definition, key) skips existing keys,
        and the timestamp is the column's server default as before."""
        self._check_partitions_table()
        rows = [(partitions_def_name, partition_key) for partition_key in dict.fromkeys(partition_keys)]
        if rows:
            with self.index_connection() as conn:
                _driver_executemany(conn, _INSERT_PARTITIONS, rows)

    def _copy_template(self, shard: str) -> bool:
        """Create a new run's shard as a copy of an empty initialized one; False if it exists already (then
        Dagster's own check runs). Linked into place complete, so a reader never sees half a file."""
        path = Path(self.path_for_shard(shard))
        if path.exists():
            return False
        if self._template is None:
            self._template = self._fresh_shard()
        fd, tmp = tempfile.mkstemp(prefix=f".{shard}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._template)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def _fresh_shard(self) -> bytes:
        """The bytes of a run shard as Dagster initializes it (schema, WAL mode, alembic stamp)."""
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(create_db_conn_string(tmp, "template"), poolclass=NullPool)
            self._initdb(engine)
            engine.dispose()  # the last connection closed: the WAL is checkpointed into the file
            return (Path(tmp) / "template.db").read_bytes()

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def _commit_without_fsync(dbapi_connection: Any, _record: Any) -> None:
    """The event log's commits are not fsync'd (WAL with synchronous=NORMAL: durable when the process dies, not
    always when the machine loses power; checkpoints still sync). Two fsyncs per materialization (run shard and
    index) queued on the disk with the ledger's, whose commits must sync (an attempt is durable before its create
    leaves): at a run's end and the next one's start the ledger's commits took 20-60 ms instead of 2-5, and the
    creates waiting on them fell behind the slots the host freed (issue 7, benchmarks/RESULTS.md). The event log
    is the UI's record, rebuilt from the ledger where it lost a partition (`cli.runs.unrecorded_partitions`)."""
    with closing(dbapi_connection.cursor()) as cursor:
        cursor.execute("PRAGMA synchronous=NORMAL")


_SELECT_PARTITIONS = "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = ? ORDER BY id"
_INSERT_PARTITIONS = "INSERT OR IGNORE INTO dynamic_partitions (partitions_def_name, partition) VALUES (?, ?)"


def _upsert_asset_key(conn: Connection, asset_key: str, values: dict[str, Any]) -> None:
    """Dagster's `_store_asset_event` write (insert the asset's row, else update it) once per asset key for a
    batch, with the values each event would have left in turn: every event overwrites the columns it sets, so
    the row ends the same. Per event, a run of 512 partitions made 1,024 failed inserts and updates of two rows
    (0.22 s before its first create). The update goes first: the row exists for every event but an asset's
    first, and a refused insert costs an exception each time."""
    update = AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == asset_key)
    if conn.execute(update).rowcount:
        return
    try:  # as Dagster does it: on SQLite a refused insert ends only that statement, not the transaction
        conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **values))
    except db_exc.IntegrityError:  # another process inserted it since our update
        conn.execute(update)


def _driver_query(conn: Connection, sql: str, params: tuple[str, ...]) -> list[Any]:
    """The rows of `sql`, read on the SQLite driver's own cursor inside `conn`'s transaction."""
    with closing(conn.connection.cursor()) as cursor:
        return list(cursor.execute(sql, params).fetchall())


def _driver_executemany(conn: Connection, sql: str, rows: Sequence[tuple[str, ...]]) -> None:
    """`sql` once per row of parameters, as one `executemany` on the driver's cursor inside `conn`'s transaction."""
    with closing(conn.connection.cursor()) as cursor:
        cursor.executemany(sql, rows)


def batch_event_writes(instance: dg.DagsterInstance | None = None) -> None:
    """Have Dagster hand a run's "planned" events to the event log as one batch, for an instance whose event
    log writes a batch at once (ours; with `instance` None the caller knows it is). Other storages keep their
    own behaviour: PostgreSQL's batch write, for one, refuses planned events and falls back noisily."""
    if instance is None or isinstance(instance.event_log_storage, PooledSqliteEventLogStorage):
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)


def prepare_side_by_side(instance: dg.DagsterInstance) -> bool:
    """True when runs may execute side by side in this process on `instance` (see the module docstring)."""
    if not isinstance(instance.compute_log_manager, NoOpComputeLogManager):
        return False
    if instance.get_python_log_dagster_handler_config():
        return False
    instance.get_yaml_python_handlers = list  # type: ignore[method-assign]
    return True
