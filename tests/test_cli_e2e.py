"""The `wan-pipeline` console script end to end (DESIGN §7, §8), on a copy of examples/ with the
in-process emulator: exit codes, files that decode and match lineage, credits that match what the
emulator charged, idempotent re-runs, and invalid input that spends nothing."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from e2e_helpers import (
    cli_env,
    copy_examples,
    emulator_state_file,
    media_files,
    pycache_dir,
    read_emulator_state,
    read_lineage,
    run_cli,
    sha256_file,
    storage_root,
)
from PIL import Image

from wan_pipeline.assets.dagster_compat import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from wan_pipeline.outputs.lineage import CONTRACT_COLUMNS


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


@pytest.fixture
def env(tmp_path: Path, pycache: Path) -> dict[str, str]:
    return cli_env(tmp_path / "dagster_home", pycache)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return copy_examples(tmp_path)


def _ok(proc: object) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"  # type: ignore[attr-defined]


def _generate_runs(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(first, last) partition of every generate run in the instance, oldest first; each must have succeeded."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(job_name="demo_generate_job"), ascending=True)
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        return [(r.dagster_run.tags[PARTITION_RANGE_START_TAG], r.dagster_run.tags[PARTITION_RANGE_END_TAG])
                for r in records]


def _emulator_net(spec: Path) -> float:
    state = read_emulator_state(emulator_state_file(spec))
    return float(state["charged"] - state["refunded"])


def test_demo_generate_is_complete_verified_and_idempotent(
    demo: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path

    proc = run_cli("validate", str(demo), env=env, cwd=cwd)
    _ok(proc)
    assert "12 prompt(s), 24 output(s) on rivya/wan-2-7-image" in proc.stdout
    assert re.search(r"text_to_image\s+24\b", proc.stdout), proc.stdout
    proc = run_cli("validate", str(demo), "--json", env=env, cwd=cwd)
    _ok(proc)
    assert json.loads(proc.stdout)["outputs_by_mode"] == {"text_to_image": 24}

    proc = run_cli("estimate", str(demo), env=env, cwd=cwd)
    _ok(proc)
    assert re.search(r"full dataset:\s+120(\.0)? credits", proc.stdout), proc.stdout
    assert re.search(r"still to make:\s+24 output\(s\), about 120 credits", proc.stdout), proc.stdout
    assert "budget: max_credits 200 -> fits" in proc.stdout
    proc = run_cli("estimate", str(demo), "--json", env=env, cwd=cwd)
    _ok(proc)
    report = json.loads(proc.stdout)
    assert (report["todo"]["outputs"], report["todo"]["credits"], report["budget_verdict"]) == (24, 120, "fits")
    assert not emulator_state_file(demo).exists()  # estimating spends nothing

    # --only: exactly that prompt's two variants.
    proc = run_cli("generate", str(demo), "--only", "fox_dawn", env=env, cwd=cwd)
    _ok(proc)
    files = media_files(demo)
    assert len(files) == 2
    assert {f.parent.name for f in files} == {"fox_dawn"}
    assert re.search(r"outputs stored:\s+2/2", proc.stdout)
    assert re.search(r"new submissions:\s+2\n", proc.stdout)
    assert len(read_emulator_state(emulator_state_file(demo))["tasks"]) == 2
    assert (tmp_path / "dagster_home" / "dagster.yaml").is_file()  # the CLI made its instance

    # Everything else.
    proc = run_cli("generate", str(demo), env=env, cwd=cwd)
    _ok(proc)
    assert re.search(r"outputs stored:\s+24/24", proc.stdout)
    assert re.search(r"new submissions:\s+22\n", proc.stdout)
    assert re.search(r"spend \(final or held, whole dataset\): 120 credits\n", proc.stdout)
    # The runs are a backfill's: the missing partitions as contiguous ranges under the backfill policy,
    # each materializing every partition of its range.
    assert _generate_runs(tmp_path / "dagster_home", monkeypatch) == [("fox_dawn", "fox_dawn"), ("tea_house", "bakery")]

    frame = read_lineage(demo)
    files = media_files(demo)
    assert len(frame) == len(files) == 24
    assert set(CONTRACT_COLUMNS) <= set(frame.columns)
    assert set(frame["status"]) == {"succeeded"}
    assert set(frame["dataset"]) == {"demo"}
    assert frame["prompt_id"].nunique() == 12
    assert sorted(frame["variant"].unique()) == [0, 1]
    assert set(frame["mode"]) == {"text_to_image"}
    assert frame["task_id"].nunique() == 24
    assert frame["fingerprint"].notna().all() and frame["seed"].notna().all()
    assert (frame["partition_key"] == frame["prompt_id"]).all()
    assert str(frame["submitted_at"].dt.tz) == "UTC"
    assert {Path(u).resolve() for u in frame["media_uri"]} == {f.resolve() for f in files}
    for row in frame.itertuples():
        path = Path(row.media_uri)
        assert sha256_file(path) == row.media_sha256
        assert path.stat().st_size == row.bytes
        with Image.open(path) as img:
            img.load()
            assert (img.width, img.height) == (row.width, row.height)
            assert Image.MIME[img.format] == row.mime_type
    # The product row fixes seed 1234: variant 0 uses it, variant 1 steps from it; the others are derived.
    product = frame[frame["prompt_id"] == "product"].sort_values("variant")
    assert list(product["seed"]) == [1234, 1235]
    assert set(frame[frame["prompt_id"] != "product"]["seed_source"]) == {"derived"}
    # API keys never reach lineage; the emulator's local token is not a secret but is not recorded either.
    assert not frame["request_json"].str.contains("Bearer|emulator-local-token").any()

    tasks = read_emulator_state(emulator_state_file(demo))["tasks"]
    assert len(tasks) == 24
    assert sorted(t["id"] for t in tasks.values()) == sorted(frame["task_id"])
    assert frame["credits_final"].sum() == pytest.approx(_emulator_net(demo)) == 120.0

    # A second run buys nothing.
    proc = run_cli("generate", str(demo), env=env, cwd=cwd)
    _ok(proc)
    assert re.search(r"new submissions:\s+0\n", proc.stdout)
    assert "nothing to generate" in proc.stderr
    assert len(read_emulator_state(emulator_state_file(demo))["tasks"]) == 24
    assert _emulator_net(demo) == 120.0
    assert len(read_lineage(demo)) == 24

    proc = run_cli("lineage", str(demo), env=env, cwd=cwd)
    _ok(proc)
    assert "(24 row(s))" in proc.stdout
    assert re.search(r"succeeded\s+24\b", proc.stdout), proc.stdout
    assert "prompts: 12, files: 24, bytes: " in proc.stdout
    assert "credits final: 120\n" in proc.stdout
    total_bytes = int(re.search(r"bytes: (\d+)", proc.stdout).group(1))  # type: ignore[union-attr]
    assert total_bytes == sum(f.stat().st_size for f in files)
    proc = run_cli("lineage", str(demo), "--full", "--json", env=env, cwd=cwd)  # rebuilt from scratch: the same
    _ok(proc)
    report = json.loads(proc.stdout)
    assert report["bytes"] == total_bytes
    assert (report["rows"], report["rows_by_status"], len(report["records"])) == (24, {"succeeded": 24}, 24)

    proc = run_cli("estimate", str(demo), env=env, cwd=cwd)
    _ok(proc)
    assert re.search(r"still to make:\s+0 output\(s\), about 0 credits", proc.stdout), proc.stdout
    assert "committed so far (ledger): 120 credits" in proc.stdout


def _break_table(spec: Path) -> Path:
    table = spec.parent / "prompts.csv"
    with table.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[2]["aspect_ratio"] = "7:5"  # data row 3 = line 4 (panorama)
    rows[4]["prompt"] = "   "  # data row 5 = line 6 (portrait)
    with table.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def test_invalid_table_is_exit_2_everywhere_and_spends_nothing(demo: Path, env: dict[str, str], tmp_path: Path) -> None:
    table = _break_table(demo)
    for command in ("validate", "estimate", "generate"):
        proc = run_cli(command, str(demo), env=env, cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        problems = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
        assert len(problems) == 2, (command, proc.stderr)
        assert any(str(table) in p and "line 4" in p and "column 'aspect_ratio'" in p and "7:5" in p
                   for p in problems), proc.stderr
        assert any(str(table) in p and "line 6" in p and "column 'prompt'" in p for p in problems), proc.stderr
        assert "nothing was submitted" in proc.stderr
    assert not emulator_state_file(demo).exists()
    assert not storage_root(demo).exists()  # no ledger, no media, no lineage
    assert not (tmp_path / "dagster_home").exists()  # not even a Dagster run


def test_real_host_without_key_is_a_configuration_error(demo: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = yaml.safe_load(demo.read_text(encoding="utf-8"))
    del spec["endpoint"]
    demo.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert "RIVYA_API_KEY" not in env and "RIVYA_BASE_URL" not in env

    proc = run_cli("generate", str(demo), env=env, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "RIVYA_API_KEY" in proc.stderr
    assert "https://rivya.ai" in proc.stderr
    assert not emulator_state_file(demo).exists()
    assert not (storage_root(demo) / "_state" / "ledger.sqlite").exists()
    assert not (tmp_path / "dagster_home").exists()

    # Naming an unknown prompt is invalid input, before anything runs.
    spec["endpoint"] = "emulator"
    demo.write_text(yaml.safe_dump(spec), encoding="utf-8")
    proc = run_cli("generate", str(demo), "--only", "no_such_prompt", env=env, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "no_such_prompt" in proc.stderr and "column 'prompt_id'" in proc.stderr
    assert not emulator_state_file(demo).exists()


def test_failed_outputs_are_exit_1_listed_and_not_bought_again(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "prompts.csv").write_text("prompt_id,prompt\nfirst,A red kite\nsecond,A blue kite\n", encoding="utf-8")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "kites", "prompts": "prompts.csv", "provider": "rivya",
                                    "model": "wan-2-7-image", "endpoint": "emulator", "variants": 1,
                                    "params": {"resolution": "1K"}, "storage": "./out"}), encoding="utf-8")
    faulty = {**env, "WAN_PIPELINE_MAX_CONCURRENCY": "1",  # the first task created is `first`'s
              "WAN_PIPELINE_EMULATOR": '{"queue_s": 0, "process_s": 0.05, "faults": {"reject_content": {"next": 1}}}'}

    proc = run_cli("generate", str(spec), env=faulty, cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert re.search(r"outputs stored:\s+1/2", proc.stdout)
    assert re.search(r"new submissions:\s+2\n", proc.stdout)
    assert re.search(r"not done \(1\):\n\s+- first v0: failed — ContentRejected: content_policy_violation", proc.stdout)
    assert "second" not in proc.stdout.split("not done")[1]
    assert 'File "' not in proc.stderr and "Traceback" not in proc.stderr  # an expected outcome: no stack trace
    state_file = emulator_state_file(spec)
    assert len(read_emulator_state(state_file)["tasks"]) == 2
    assert len(media_files(spec)) == 1
    frame = read_lineage(spec)
    assert sorted(zip(frame["prompt_id"], frame["status"], strict=True)) == [("first", "failed"),
                                                                             ("second", "succeeded")]
    assert frame["credits_final"].sum() == _emulator_net(spec) == 5.0

    # Content rejection is permanent: a re-run (faults or not) buys nothing and still reports it.
    proc = run_cli("generate", str(spec), env=env, cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert re.search(r"new submissions:\s+0\n", proc.stdout)
    assert "- first v0: failed" in proc.stdout

    # --json: one document on stdout for scripts, same exit code; --verbose adds Dagster's log with the trace.
    proc = run_cli("generate", str(spec), "--json", "--verbose", env=env, cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert (report["exit_code"], report["stored"], report["outputs"], report["new_submissions"]) == (1, 1, 2, 0)
    assert [(o["prompt_id"], o["state"]) for o in report["not_done"]] == [("first", "failed")]
    assert 'File "' in proc.stderr
    assert len(read_emulator_state(state_file)["tasks"]) == 2
    assert _emulator_net(spec) == 5.0
