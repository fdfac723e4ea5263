"""`wan-pipeline report` and `wan-pipeline export`: thin commands over outputs/gallery.py and outputs/export.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import GeneratedDataset
from e2e_helpers import cli_env, pycache_dir, run_cli

from wan_pipeline.outputs.gallery import GALLERY_PATH


def test_report_prints_the_gallery_path(generated_dataset: GeneratedDataset, tmp_path: Path,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    env = cli_env(tmp_path / "home", pycache_dir(tmp_path_factory))
    done = run_cli("report", str(generated_dataset.spec_path), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = generated_dataset.storage / GALLERY_PATH
    assert done.stdout.strip().splitlines()[-1] == str(page)
    assert "5 output(s), 1 failed" in done.stdout

    as_json = run_cli("report", str(generated_dataset.spec_path), "--json", env=env, cwd=tmp_path)
    summary = json.loads(as_json.stdout)
    assert (summary["outputs"], summary["failed"], summary["uri"]) == (5, 1, str(page))


def test_export_both_formats(generated_dataset: GeneratedDataset, tmp_path: Path,
                             tmp_path_factory: pytest.TempPathFactory) -> None:
    env = cli_env(tmp_path / "home", pycache_dir(tmp_path_factory))
    spec = str(generated_dataset.spec_path)
    hf = run_cli("export", spec, "--format", "hf", "--out", str(tmp_path / "hf"), env=env, cwd=tmp_path)
    assert hf.returncode == 0, hf.stderr
    assert "5 sample(s) as hf" in hf.stdout
    assert len((tmp_path / "hf" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert "shots" in (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")  # the dataset card

    wds = run_cli("export", spec, "--format", "webdataset", "--out", str(tmp_path / "wds"), "--shard-size", "3",
                  "--json", env=env, cwd=tmp_path)
    assert wds.returncode == 0, wds.stderr
    assert json.loads(wds.stdout)["files"] == ["shard-000000.tar", "shard-000001.tar"]

    bad = run_cli("export", spec, "--format", "zip", "--out", str(tmp_path / "x"), env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "zip" in bad.stderr
