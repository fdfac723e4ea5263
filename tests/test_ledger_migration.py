"""A ledger written by an older version opens, gains the provenance columns, and keeps every attempt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wan_pipeline.money.ledger import Attempt, Ledger

#: the attempts table as the first ledgers wrote it (no call_json, no provenance columns)
OLD_SCHEMA = """
CREATE TABLE attempts (
    identity TEXT NOT NULL, attempt INTEGER NOT NULL, dataset TEXT NOT NULL, prompt_id TEXT NOT NULL,
    variant INTEGER NOT NULL, fingerprint TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
    mode TEXT NOT NULL, prompt TEXT NOT NULL, params_json TEXT NOT NULL, seed INTEGER NOT NULL,
    seed_source TEXT NOT NULL, extra_json TEXT NOT NULL, idempotency_key TEXT NOT NULL,
    request_json TEXT NOT NULL, state TEXT NOT NULL, task_id TEXT, error_code TEXT, error_class TEXT,
    error_message TEXT, credits_estimate REAL, credits_reserved REAL, credits_final REAL, cost_usd REAL,
    cost_source TEXT, provider_seed INTEGER, output_urls TEXT, submit_calls INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT, completed_at TEXT, run_id TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (identity, attempt)
);
INSERT INTO attempts (identity, attempt, dataset, prompt_id, variant, fingerprint, provider, model, mode, prompt,
    params_json, seed, seed_source, extra_json, idempotency_key, request_json, state, task_id, updated_at)
VALUES ('demo/a/0/f', 1, 'demo', 'a', 0, 'f', 'rivya', 'wan-2-7-image', 'text_to_image', 'a cat', '{"seed":5}',
    5, 'derived', '{}', 'wanp-k', '{}', 'submitted', 't1', '2026-01-01T00:00:00.000Z');
"""


def _attempt(identity: str) -> Attempt:
    return Attempt(
        identity=identity, attempt=1, dataset="demo", prompt_id="b", variant=0, fingerprint="g", provider="rivya",
        model="wan-2-7-image", mode="text_to_image", prompt="a dog", params_json='{"seed":6}', seed=6,
        seed_source="row", extra_json="{}", idempotency_key="wanp-k2", request_json="{}", state="submitting",
        spec_sha256="s" * 64, table_sha256="t" * 64, reference_sha256s="[]", master_seed=7,
        code_version="0.1.0+gabc",
    )


def test_an_old_ledger_gains_the_provenance_columns_and_keeps_its_attempts(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    with Ledger(path) as ledger:
        old = ledger.latest("demo/a/0/f")
        assert old is not None and old.task_id == "t1" and old.seed == 5
        assert (old.call_json, old.spec_sha256, old.table_sha256, old.code_version, old.master_seed) == (
            None, None, None, None, None,
        )
        ledger.begin_attempt(_attempt("demo/b/0/g"))
    with Ledger(path) as reopened:  # a second open migrates nothing twice
        new = reopened.latest("demo/b/0/g")
        assert new is not None
        assert (new.spec_sha256, new.table_sha256, new.reference_sha256s, new.master_seed, new.code_version) == (
            "s" * 64, "t" * 64, "[]", 7, "0.1.0+gabc",
        )
        assert len(reopened.all_attempts("demo")) == 2


def test_re_arming_an_attempt_keeps_the_provenance_it_was_first_written_with(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = _attempt("demo/b/0/g")
        ledger.begin_attempt(first)
        again = _attempt("demo/b/0/g")
        again.table_sha256 = "u" * 64
        again.code_version = "0.2.0"
        ledger.begin_attempt(again)
        kept = ledger.latest("demo/b/0/g")
        assert kept is not None and kept.table_sha256 == "t" * 64 and kept.code_version == "0.1.0+gabc"
