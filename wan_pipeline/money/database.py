"""The ledger's database: one small contract, two backends (SQLite embedded, PostgreSQL shared).

The ledger and the shared limits speak only this contract: `query`/`execute` with `?` placeholders,
`transaction(lock)` for a write transaction that serializes every writer holding the same lock name
(across processes and machines), and `now()` read from the database's clock so machines with skewed
clocks still agree on lease expiry and submission pacing.

- SQLite: one file, WAL, synchronous=FULL; `BEGIN IMMEDIATE` takes the file's single write lock, so
  every lock name is the same lock.
- PostgreSQL: the ledger's own schema (`wan_pipeline`) so it can share the Dagster instance's database;
  `pg_advisory_xact_lock` on the lock name serializes writers of that name until commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from wan_pipeline.errors import ConfigError

#: the PostgreSQL schema holding the ledger's tables (never Dagster's own)
PG_SCHEMA = "wan_pipeline"
POSTGRES_SCHEMES = ("postgresql", "postgres")

Row = tuple[Any, ...]
T = TypeVar("T")


class Runner(Protocol):
    """Where async code runs a database call: a worker thread by default; in the engine, its journal
    (`execution.journal.Journal`), which shares one commit among every queued call."""

    async def run(self, fn: Callable[[], T]) -> T: ...


class InThread:
    """The default `Runner`: each call on a worker thread, so a commit never stalls the event loop."""

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)


class Database(ABC):
    """A single connection guarded by a re-entrant lock (a check inside a transaction reads on it)."""

    dialect: ClassVar[str]
    #: column types per dialect, filled into DDL as {text} {int} {real}
    types: ClassVar[Mapping[str, str]]

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._batch_depth = 0  # > 0 while a batch's transaction is open (on the thread holding `lock`)

    @abstractmethod
    def _run(self, sql: str, args: Sequence[Any]) -> tuple[list[Row], int]: ...

    @abstractmethod
    def _begin(self, lock: str | None) -> None: ...

    @abstractmethod
    def now(self) -> float:
        """Seconds since the epoch by the database's clock (shared by every machine using it)."""

    @abstractmethod
    def columns(self, table: str) -> set[str]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the ledger lives, for messages (never a password)."""

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self.lock:
            return self._run(sql, args)[0]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed."""
        with self.lock:
            return self._run(sql, args)[1]

    def ddl(self, template: str) -> str:
        return template.format(**self.types)

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        """A write transaction; writers naming the same `lock` run one at a time everywhere.

        Inside a `batch` it is part of the batch's transaction (the lock is then held until the batch commits)."""
        with self.lock:
            if self._batch_depth:
                self._lock_in_transaction(lock)
                yield
                return
            self._begin(lock)
            try:
                yield
            except BaseException:
                self._run("ROLLBACK", ())
                raise
            self._run("COMMIT", ())

    @contextmanager
    def batch(self) -> Iterator[Callable[[], AbstractContextManager[None]]]:
        """One transaction for many operations (group commit), yielding a factory of savepoints, one per
        operation, so an operation that raises is undone alone while its neighbours commit."""
        with self.lock:
            self._begin(None)
            self._batch_depth += 1
            try:
                yield self._savepoint
            except BaseException:
                self._run("ROLLBACK", ())
                raise
            finally:
                self._batch_depth -= 1
            self._run("COMMIT", ())

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._run("SAVEPOINT op", ())
        try:
            yield
        except BaseException:
            self._run("ROLLBACK TO SAVEPOINT op", ())
            self._run("RELEASE SAVEPOINT op", ())
            raise
        self._run("RELEASE SAVEPOINT op", ())

    @abstractmethod
    def _lock_in_transaction(self, lock: str | None) -> None:
        """Takes `lock` inside the open transaction, until it ends."""


class SqliteDatabase(Database):
    dialect: ClassVar[str] = "sqlite"
    types: ClassVar[Mapping[str, str]] = {"text": "TEXT", "int": "INTEGER", "real": "REAL"}

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        self._wal()
        self._db.execute("PRAGMA synchronous=FULL")

    def _wal(self) -> None:
        """WAL is persistent in the file: asked first, set once. Setting it while another connection is using
        the file (two runs opening a new ledger at once) fails at once with "database is locked" — SQLite does
        not wait on its busy timeout there — so it is asked again until the other is done (30 s at most)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                if str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _run(self, sql: str, args: Sequence[Any]) -> tuple[list[Row], int]:
        cur = self._db.execute(sql, tuple(args))
        return cur.fetchall(), cur.rowcount

    def _begin(self, lock: str | None) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # the file's one write lock: every lock name at once

    def _lock_in_transaction(self, lock: str | None) -> None:
        return None  # the open transaction already holds the file's write lock, which covers every name

    def now(self) -> float:
        return float(self.query("SELECT (julianday('now') - 2440587.5) * 86400.0")[0][0])

    def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self.query(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        self._db.close()

    def describe(self) -> str:
        return str(self.path)


class PostgresDatabase(Database):
    dialect: ClassVar[str] = "postgresql"
    types: ClassVar[Mapping[str, str]] = {"text": "TEXT", "int": "BIGINT", "real": "DOUBLE PRECISION"}

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg2

        self.url = url
        try:
            self._db = psycopg2.connect(url, connect_timeout=30, application_name="wan_pipeline ledger")
        except psycopg2.Error as err:
            # psycopg2's message names host and port, never the password of the URL
            raise ConfigError(f"cannot connect to the ledger database {self.describe()}: {err}".strip()) from None
        self._db.autocommit = True  # transactions are explicit (`transaction`), reads see the latest commit
        with self.transaction("wan_pipeline:schema"):
            self._run(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}", ())
        self._run(f"SET search_path TO {PG_SCHEMA}", ())

    def _run(self, sql: str, args: Sequence[Any]) -> tuple[list[Row], int]:
        with self._db.cursor() as cur:
            # no arguments: no %-interpolation either (psycopg2 skips it only for None)
            cur.execute(sql.replace("?", "%s"), tuple(args) if args else None)
            rows = cur.fetchall() if cur.description is not None else []
            return [tuple(r) for r in rows], cur.rowcount

    def _begin(self, lock: str | None) -> None:
        self._run("BEGIN", ())
        try:
            self._lock_in_transaction(lock)
        except BaseException:
            self._run("ROLLBACK", ())
            raise

    def _lock_in_transaction(self, lock: str | None) -> None:
        if lock is not None:  # held until the transaction ends
            self._run("SELECT pg_advisory_xact_lock(hashtext(?))", (lock,))

    def now(self) -> float:
        return float(self.query("SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0][0])

    def columns(self, table: str) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema=? AND table_name=?",
            (PG_SCHEMA, table),
        )
        return {str(r[0]) for r in rows}

    def close(self) -> None:
        self._db.close()

    def describe(self) -> str:
        return redact_url(self.url)


class Result:
    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return list(self._rows)


class Statements:
    """A DB-API-like `execute` on the open transaction, for code written against a sqlite3 connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return Result(self._db.query(sql, args))


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in POSTGRES_SCHEMES
