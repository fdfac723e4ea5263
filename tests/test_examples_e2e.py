"""Every provider end to end through the real CLI and a real Dagster instance on the emulator.

Images: each provider's example spec as shipped. Video: a small text-to-video dataset per provider.
Checked: exit 0, every planned output stored, every file decodes with the size/duration lineage
records, SHA-256 matches lineage, and lineage has one succeeded row per file with the right mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_dataset
from e2e_helpers import copy_examples, media_files, pycache_dir, read_lineage, run_cli, sha256_file

from wan_pipeline.outputs.media import inspect_media
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.catalog import find_model

IMAGE_EXAMPLES = ["evolink", "reapi", "runware", "dashscope"]
VIDEO_DATASETS = {
    "rivya": ("wan-2-7-video", {"resolution": "720p", "duration": 5}),
    "evolink": ("wan2.7-text-to-video", {"resolution": "720p", "duration": 2}),
    "reapi": ("wan2.7-video", {"resolution": "720p", "duration": 2}),
    "runware": ("alibaba:wan@2.7", {"resolution": "720p", "duration": 2}),
    "dashscope": ("wan2.7-t2v", {"resolution": "720p", "duration": 2}),
}


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pycache_dir(tmp_path_factory)


def generate_and_check(spec_path: Path, tmp_path: Path, pycache: Path) -> None:
    from e2e_helpers import cli_env

    env = cli_env(tmp_path / "dagster_home", pycache)
    result = run_cli("generate", str(spec_path), env=env, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    plan = build_plan(load_spec(spec_path))
    files = media_files(spec_path)
    lineage = read_lineage(spec_path)
    succeeded = lineage[lineage["status"] == "succeeded"]
    assert len(succeeded) == len(files) >= len(plan.tasks)
    assert set(succeeded["identity"]) == {t.identity for t in plan.tasks}
    assert set(succeeded["mode"]) == {t.mode.value for t in plan.tasks}
    by_uri = {row.media_uri: row for row in succeeded.itertuples()}
    for path in files:
        row = by_uri[str(path)]
        data = path.read_bytes()
        assert sha256_file(path) == row.media_sha256
        info = inspect_media(data, _no_expectation())
        assert (info.width, info.height) == (row.width, row.height)
        if row.mime_type.startswith("video/"):
            assert info.duration_s == pytest.approx(row.duration_s)
            assert row.fps and row.duration_s and row.duration_s > 1
    assert "new submissions:  " in result.stdout


def _no_expectation():  # type: ignore[no-untyped-def]
    from wan_pipeline.outputs.media import Expectation

    return Expectation("any")


@pytest.mark.parametrize("example", IMAGE_EXAMPLES)
def test_provider_image_example_generates_end_to_end(example: str, tmp_path: Path, pycache: Path) -> None:
    copy_examples(tmp_path)
    generate_and_check(tmp_path / "examples" / f"{example}.yaml", tmp_path, pycache)


@pytest.mark.parametrize("provider", sorted(VIDEO_DATASETS))
def test_provider_text_to_video_generates_end_to_end(provider: str, tmp_path: Path, pycache: Path) -> None:
    model, params = VIDEO_DATASETS[provider]
    rows = ["kite,A red kite over dunes at golden hour", '"rain","A paper boat on a rain-soaked street, slow dolly"']
    info = find_model(provider, model)
    assert info is not None
    if "aspect_ratio" in info.supports:  # reAPI's video model documents no aspect ratio
        text = "prompt_id,prompt,aspect_ratio\n" + "\n".join(f"{r},{a}" for r, a in zip(rows, ("16:9", "9:16"),
                                                                                           strict=True))
    else:
        text = "prompt_id,prompt\n" + "\n".join(rows)
    (tmp_path / "prompts.csv").write_text(text + "\n", encoding="utf-8")
    spec = write_dataset(tmp_path, None, table="prompts.csv", spec_file="video.yaml", name=f"{provider}_t2v",
                         provider=provider, model=model, endpoint="emulator", seed=7, params=params, storage="./out")
    generate_and_check(spec, tmp_path, pycache)
    lineage = read_lineage(spec)
    assert set(lineage["mime_type"]) == {"video/mp4"}
    assert set(lineage["mode"]) == {"text_to_video"}
