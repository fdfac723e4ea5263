"""The ledger contract, run against both backends: SQLite (embedded) and a real PostgreSQL on 127.0.0.1.

Same semantics on both: attempts and outputs round-trip, re-arming an attempt clears its error, the
money queries agree on what can have been billed, a failing budget check leaves nothing behind, budget
admission is atomic across processes, and migrations are versioned (an old SQLite ledger keeps working).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import PostgresCluster

from wan_pipeline.errors import ConfigError
from wan_pipeline.money.database import PG_SCHEMA, PostgresDatabase, redact_url
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, SUBMITTING, Attempt, Ledger, StoredOutput
from wan_pipeline.money.location import dagster_postgres_url, shared_ledger_url
from wan_pipeline.money.migrations import LATEST
from wan_pipeline.planning.spec import load_spec

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger location: a SQLite path, or a PostgreSQL URL of an empty database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database("ledger")


@pytest.fixture
def ledger(where: str) -> Iterator[Ledger]:
    with Ledger.open(where) as opened:
        yield opened


def attempt(identity: str = "id-1", n: int = 1, dataset: str = "ds", **fields: object) -> Attempt:
    values: dict[str, object] = dict(
        identity=identity, attempt=n, dataset=dataset, prompt_id=f"p-{identity}", variant=0, fingerprint="f" * 16,
        provider="dashscope", model="wan2.7-t2i", mode="text_to_image", prompt="a fox", params_json="{}",
        seed=7, seed_source="derived", extra_json="{}", idempotency_key=f"key-{identity}-{n}",
        request_json='{"input": 1}', state=SUBMITTING, call_json='{"method": "POST"}', credits_estimate=1.0,
        cost_usd=0.03,
    )
    values.update(fields)
    return Attempt(**values)  # type: ignore[arg-type]


def output(identity: str = "id-1", n: int = 1, index: int = 0, sha: str = "a" * 64) -> StoredOutput:
    return StoredOutput(identity, n, index, "http://h/x.png", f"s3://b/media/{identity}_{index}.png", sha,
                        "image/png", 1234, 64, 48, None, None, None, "2026-11-30T00:00:00.000Z")


def test_a_new_ledger_opened_while_another_connection_writes_it_still_opens(tmp_path: Path) -> None:
    """Range runs side by side open the dataset's ledger together, the first time too. Switching a new file to
    WAL while another connection is writing it fails at once with "database is locked" (SQLite does not wait
    on its busy timeout there), so it is asked again until the other is done."""
    path = tmp_path / "ledger.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE scratch (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO scratch VALUES (1)")
    done = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    done.start()
    try:
        Ledger.open(str(path)).close()
    finally:
        done.join()
        other.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_attempts_round_trip_and_updates(ledger: Ledger) -> None:
    ledger.begin_attempt(attempt())
    got = ledger.latest("id-1")
    assert got is not None and got.state == SUBMITTING and got.task_id is None and got.submit_calls == 0
    ledger.count_submit_call("id-1", 1)
    ledger.count_submit_call("id-1", 1)
    ledger.update("id-1", 1, state=SUBMITTED, task_id="task-9", credits_reserved=2.5, provider_seed=4294967295)
    got = ledger.latest("id-1")
    assert got is not None
    assert (got.state, got.task_id, got.submit_calls, got.credits_reserved) == (SUBMITTED, "task-9", 2, 2.5)
    assert got.provider_seed == 4294967295  # beyond 32 bits: PostgreSQL stores BIGINT
    assert got.seed == 7 and got.params_json == "{}" and got.call_json == '{"method": "POST"}'
    ledger.begin_attempt(attempt(n=2, state=SUBMITTING))
    assert [a.attempt for a in ledger.attempts("id-1")] == [1, 2]
    assert ledger.latest("id-1").attempt == 2  # type: ignore[union-attr]
    ledger.begin_attempt(attempt("id-2", dataset="other"))
    assert {a.identity for a in ledger.all_attempts("ds")} == {"id-1"}
    assert len(ledger.all_attempts()) == 3
    with pytest.raises(ValueError, match="not ledger columns"):
        ledger.update("id-1", 1, **{"state=1; DROP TABLE attempts; --": "x"})


def test_rearming_an_attempt_clears_its_error_and_keeps_its_counters(ledger: Ledger) -> None:
    ledger.begin_attempt(attempt())
    ledger.count_submit_call("id-1", 1)
    ledger.update("id-1", 1, state=FAILED, error_code="503", error_class="Transient", error_message="busy")
    ledger.begin_attempt(attempt(state=SUBMITTING, run_id="run-2"))
    again = ledger.attempts("id-1")
    assert len(again) == 1
    a = again[0]
    assert (a.state, a.error_code, a.error_class, a.error_message, a.run_id) == (SUBMITTING, None, None, None, "run-2")
    assert a.submit_calls == 1


def test_outputs_upsert_and_filter_by_dataset(ledger: Ledger) -> None:
    ledger.begin_attempt(attempt())
    ledger.begin_attempt(attempt("id-2", dataset="other"))
    ledger.record_output(output(sha="a" * 64))
    ledger.record_output(output(sha="b" * 64))  # the same output stored again replaces its row
    ledger.record_output(output(index=1))
    ledger.record_output(output("id-2"))
    ledger.update("id-1", 1, state=STORED)
    outs = ledger.outputs("id-1", 1)
    assert [(o.output_index, o.media_sha256[0]) for o in outs] == [(0, "b"), (1, "a")]
    assert outs[0].width == 64 and outs[0].bytes == 1234
    assert {o.identity for o in ledger.all_outputs("ds")} == {"id-1"}
    assert len(ledger.all_outputs()) == 3


def test_money_queries_count_what_may_have_been_billed(ledger: Ledger) -> None:
    ledger.begin_attempt(attempt("settled", credits_estimate=1.0))
    ledger.update("settled", 1, credits_final=0.5, state=STORED)
    ledger.begin_attempt(attempt("reserved"))
    ledger.update("reserved", 1, credits_reserved=2.0, state=SUBMITTED, task_id="t")
    ledger.begin_attempt(attempt("estimated", credits_estimate=3.0))
    ledger.begin_attempt(attempt("refused"))  # failed before any task: cannot have been billed
    ledger.update("refused", 1, state=FAILED, error_class="RejectedByProvider", error_code="400")
    ledger.begin_attempt(attempt("ambiguous", credits_estimate=4.0))  # the host may hold it
    ledger.update("ambiguous", 1, state=FAILED, error_class="Transient", error_code="503")
    ledger.begin_attempt(attempt("elsewhere", dataset="other", credits_estimate=100.0))
    assert ledger.committed_credits("ds") == pytest.approx(0.5 + 2.0 + 3.0 + 4.0)
    assert ledger.committed_usd("ds") == pytest.approx(0.03 * 4)
    assert ledger.committed_credits("nothing") == 0.0


def test_a_failing_check_leaves_nothing_behind(ledger: Ledger) -> None:
    def refuse() -> None:
        raise RuntimeError("over budget")

    with pytest.raises(RuntimeError, match="over budget"):
        ledger.begin_attempt(attempt(), check=refuse)
    assert ledger.latest("id-1") is None
    ledger.begin_attempt(attempt(), check=lambda: None)  # and the ledger is usable afterwards
    assert ledger.latest("id-1") is not None


ADMIT = textwrap.dedent('''
    import sys
    from wan_pipeline.money.ledger import Attempt, Ledger

    where, worker, tries, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    admitted = 0
    with Ledger.open(where) as ledger:
        for i in range(tries):
            def check() -> None:
                if ledger.committed_credits("ds") + 1.0 > budget:
                    raise RuntimeError("budget")
            a = Attempt(identity=f"{worker}-{i}", attempt=1, dataset="ds", prompt_id=f"{worker}-{i}", variant=0,
                        fingerprint="f", provider="p", model="m", mode="text_to_image", prompt="x", params_json="{}",
                        seed=1, seed_source="derived", extra_json="{}", idempotency_key="k", request_json="{}",
                        state="submitting", credits_estimate=1.0)
            try:
                ledger.begin_attempt(a, check=check)
                admitted += 1
            except RuntimeError:
                pass
    print(admitted)
''')


def test_budget_admission_is_atomic_across_processes(where: str, tmp_path: Path) -> None:
    """Four processes race to admit 15 one-credit attempts each under a 20-credit budget: exactly 20 pass."""
    Ledger.open(where).close()  # schema in place before the race
    script = tmp_path / "admit.py"
    script.write_text(ADMIT, encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, str(script), where, f"w{n}", "15", "20"], stdout=subprocess.PIPE,
                              text=True) for n in range(4)]
    counts = [int(p.communicate(timeout=300)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(counts) == 20
    with Ledger.open(where) as ledger:
        assert ledger.committed_credits("ds") == 20.0
        assert len(ledger.all_attempts("ds")) == 20


# -- migrations ---------------------------------------------------------------------------------------

PRE_VERSIONING = """
CREATE TABLE attempts (identity TEXT NOT NULL, attempt INTEGER NOT NULL, dataset TEXT NOT NULL,
    prompt_id TEXT NOT NULL, variant INTEGER NOT NULL, fingerprint TEXT NOT NULL, provider TEXT NOT NULL,
    model TEXT NOT NULL, mode TEXT NOT NULL, prompt TEXT NOT NULL, params_json TEXT NOT NULL, seed INTEGER NOT NULL,
    seed_source TEXT NOT NULL, extra_json TEXT NOT NULL, idempotency_key TEXT NOT NULL, request_json TEXT NOT NULL,
    state TEXT NOT NULL, task_id TEXT, error_code TEXT, error_class TEXT, error_message TEXT,
    credits_estimate REAL, credits_reserved REAL, credits_final REAL, cost_usd REAL, cost_source TEXT,
    provider_seed INTEGER, output_urls TEXT, submit_calls INTEGER NOT NULL DEFAULT 0, submitted_at TEXT,
    completed_at TEXT, run_id TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (identity, attempt));
CREATE TABLE outputs (identity TEXT NOT NULL, attempt INTEGER NOT NULL, output_index INTEGER NOT NULL,
    source_url TEXT, media_uri TEXT, media_sha256 TEXT, mime_type TEXT, bytes INTEGER, width INTEGER,
    height INTEGER, duration_s REAL, fps REAL, warnings TEXT, stored_at TEXT NOT NULL,
    PRIMARY KEY (identity, attempt, output_index));
INSERT INTO attempts (identity, attempt, dataset, prompt_id, variant, fingerprint, provider, model, mode, prompt,
    params_json, seed, seed_source, extra_json, idempotency_key, request_json, state, task_id, credits_final,
    updated_at) VALUES ('old', 1, 'ds', 'p', 0, 'f', 'rivya', 'm', 'text_to_image', 'x', '{}', 1, 'derived', '{}',
    'k', '{"a": 1}', 'stored', 'task-old', 2.0, '2026-01-01T00:00:00Z');
"""


def test_a_ledger_from_before_versioning_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.executescript(PRE_VERSIONING)  # written by a version without call_json and without ledger_schema
    db.close()
    with Ledger(path) as ledger:
        old = ledger.latest("old")
        assert old is not None and old.task_id == "task-old" and old.call_json is None
        assert ledger.committed_credits("ds") == 2.0
        ledger.begin_attempt(attempt("new"))
        assert ledger.latest("new").call_json == '{"method": "POST"}'  # type: ignore[union-attr]
    db = sqlite3.connect(path)
    versions = [v for (v,) in db.execute("SELECT version FROM ledger_schema ORDER BY version")]
    db.close()
    assert versions == list(range(1, LATEST + 1))
    with Ledger(path) as ledger:  # reopening applies nothing twice
        assert len(ledger.all_attempts()) == 2


def test_a_ledger_from_a_newer_version_is_refused(where: str) -> None:
    Ledger.open(where).close()
    with Ledger.open(where) as ledger:
        ledger.db.execute("INSERT INTO ledger_schema (version) VALUES (?)", (LATEST + 1,))
    with pytest.raises(ConfigError, match=f"schema version {LATEST + 1}, newer"):
        Ledger.open(where)


def test_postgres_ledger_keeps_to_its_own_schema(postgres: PostgresCluster) -> None:
    url = postgres.create_database("dagster")
    with Ledger.open(url) as ledger:
        ledger.begin_attempt(attempt())
        tables = {r[0] for r in ledger.db.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema=?", (PG_SCHEMA,))}
        public = ledger.db.query("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
    assert {"attempts", "outputs", "leases", "rate_gates", "ledger_schema"} <= tables
    assert public[0][0] == 0  # nothing lands beside Dagster's own tables


def test_an_unreachable_database_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        PostgresDatabase("postgresql://alice:s3cret-pw@127.0.0.1:1/nowhere")
    assert "s3cret-pw" not in str(info.value) and "alice:***@127.0.0.1:1" in str(info.value)
    assert redact_url("postgresql://u@h:5/d") == "postgresql://u@h:5/d"


# -- where the ledger lives ---------------------------------------------------------------------------


def test_ledger_location_env_then_dagster_instance_then_sqlite(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    assert shared_ledger_url({"DAGSTER_HOME": str(home)}) is None  # no dagster.yaml: SQLite
    (home / "dagster.yaml").write_text("storage:\n  sqlite:\n    base_dir: x\n")
    assert shared_ledger_url({"DAGSTER_HOME": str(home)}) is None
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      username: {env: PGU}\n      password: {env: PGP}\n"
        "      hostname: db.internal\n      db_name: dagster\n      port: 5433\n"
    )
    env = {"DAGSTER_HOME": str(home), "PGU": "dagster", "PGP": "p@ss/word"}
    assert shared_ledger_url(env) == "postgresql://dagster:p%40ss%2Fword@db.internal:5433/dagster"
    explicit = "postgresql://ledger@10.0.0.5:5432/ledger"
    assert shared_ledger_url({**env, "WAN_PIPELINE_LEDGER_URL": explicit}) == explicit
    with pytest.raises(ConfigError, match="PGP"):
        shared_ledger_url({"DAGSTER_HOME": str(home), "PGU": "dagster"})
    with pytest.raises(ConfigError, match="postgresql://"):
        shared_ledger_url({"WAN_PIPELINE_LEDGER_URL": "mysql://x"})
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text("run_storage:\n  module: dagster_postgres.run_storage\n  class: PostgresRunStorage\n"
                      "  config:\n    postgres_url: {env: DAGSTER_PG_URL}\n")
    assert dagster_postgres_url(legacy, {"DAGSTER_PG_URL": explicit}) == explicit


def test_open_ledger_follows_the_environment(
    postgres: PostgresCluster, write_spec: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wan_pipeline.execution.session import open_ledger

    spec = load_spec(write_spec([{"prompt_id": "a", "prompt": "a fox"}]))  # type: ignore[operator]
    monkeypatch.delenv("WAN_PIPELINE_LEDGER_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no_instance"))
    with open_ledger(spec) as local:
        assert local.db.dialect == "sqlite" and local.path is not None and local.path.name == "ledger.sqlite"
    url = postgres.create_database("instance")
    home = tmp_path / "pg_instance"
    home.mkdir()
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {url}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with open_ledger(spec) as shared:
        assert shared.db.dialect == "postgresql" and shared.describe() == url
    monkeypatch.setenv("WAN_PIPELINE_LEDGER_URL", postgres.create_database("explicit"))
    with open_ledger(spec) as explicit:
        assert explicit.describe() == shared_ledger_url() != url


def test_a_batch_commits_once_and_undoes_only_the_operation_that_failed(ledger: Ledger) -> None:
    """The engine's journal: many operations in one transaction, each in its own savepoint."""

    def refuse() -> None:
        raise RuntimeError("over budget")

    with ledger.batch() as savepoint:
        with savepoint():
            ledger.begin_attempt(attempt("kept"))
        with pytest.raises(RuntimeError), savepoint():
            ledger.begin_attempt(attempt("refused"), check=refuse)
        with savepoint():
            ledger.update("kept", 1, state=SUBMITTED, task_id="t-1")
    assert ledger.latest("refused") is None
    kept = ledger.latest("kept")
    assert kept is not None and (kept.state, kept.task_id) == (SUBMITTED, "t-1")
    with pytest.raises(RuntimeError), ledger.batch() as savepoint, savepoint():
        ledger.begin_attempt(attempt("gone"))
        raise RuntimeError("the whole batch fails")
    assert ledger.latest("gone") is None
