"""The whole promise through the real CLI: a dataset generated against an emulator served over HTTP,
replayed from its lineage file alone into a fresh directory, generated again against a fresh emulator
process: the create bodies both received are identical, and every row's code_version names this checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import write_dataset
from e2e_helpers import ROOT, cli_env, emulator_process, pycache_dir, run_cli, storage_root

from wan_pipeline import __version__

API_KEY = "sk-replay-test"


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


def _dataset(root: Path) -> Path:
    """Two variants per prompt; derived and row seeds, parameters per row, a metadata column."""
    rows = [
        {"prompt_id": "lighthouse", "prompt": "A lighthouse in fog, long exposure", "aspect_ratio": "16:9",
         "shot": "wide"},
        {"prompt_id": "ramen", "prompt": "A bowl of ramen, steam, \"overhead\" view", "seed": "1234",
         "shot": "close"},
        {"prompt_id": "crane", "prompt": "一只纸鹤，柔和的窗光", "aspect_ratio": "1:1", "watermark": "false"},
    ]
    return write_dataset(root, rows, table="prompts.csv", spec_file="spec.yaml", name="kept", variants=2, seed=99,
                         params={"resolution": "1K"}, storage="./out")


def _generate(spec: Path, env: dict[str, str], cwd: Path, log: Path) -> dict[str, Any]:
    """`generate` against a fresh emulator process; returns that emulator's report."""
    with emulator_process("--api-key", API_KEY, "--queue-s", "0", "--process-s", "0.05", env=env, cwd=cwd,
                          log=log) as emu:
        run_env = {**env, "RIVYA_BASE_URL": emu.base_url, "RIVYA_API_KEY": API_KEY}
        done = run_cli("generate", str(spec), env=run_env, cwd=cwd, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        return emu.report()


def _json(*args: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = run_cli(*args, "--json", env=env, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def test_replay_from_lineage_alone_sends_identical_bodies_to_a_fresh_host(tmp_path: Path, pycache: Path) -> None:
    env = cli_env(tmp_path / "dagster_home", pycache)
    spec = _dataset(tmp_path / "original")
    first = _generate(spec, env, tmp_path, tmp_path / "emu1.log")
    lineage = storage_root(spec) / "lineage" / "lineage.parquet"
    assert (lineage.parent / "DATASET.md").is_file()

    colleague = tmp_path / "colleague"
    colleague.mkdir()
    alone = Path(shutil.copy(lineage, colleague / "lineage.parquet"))
    replayed = _json("replay", str(alone), "--out", str(tmp_path / "replayed"), env=env, cwd=colleague)
    assert replayed["outputs"] == replayed["planned"] == 6 and replayed["notes"] == []

    digests = {_json("validate", p, env=env, cwd=tmp_path)["plan_digest"] for p in (str(spec), replayed["spec"])}
    assert len(digests) == 1 and digests == {replayed["plan_digest"]}

    second = _generate(Path(replayed["spec"]), env, tmp_path, tmp_path / "emu2.log")
    assert first["tasks_created"] == second["tasks_created"] == 6
    assert second["create_bodies_by_sha256"] == first["create_bodies_by_sha256"]
    assert second["requests_by_idempotency_key"] == first["requests_by_idempotency_key"]

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    rows = pq.read_table(lineage).to_pylist()
    assert {r["code_version"].removesuffix(".dirty") for r in rows} == {f"{__version__}+g{head}"}
