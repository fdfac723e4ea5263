"""Shared helpers: golden fixtures, a dataset spec + prompt table written to a temporary directory, and
the real servers some tests need (PostgreSQL, SeaweedFS S3; started on 127.0.0.1, see servers.py)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from servers import PostgresCluster, ensure_bucket, postgres_cluster, seaweedfs

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV whose header is the union of the rows' keys, in first-seen order; missing cells are empty."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


SpecWriter = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path) -> SpecWriter:
    """write_spec(rows, table="prompts.csv", **spec_fields) -> path of spec.yaml in tmp_path.

    `rows` (list of dicts) is written as the CSV prompt table unless it is None (the table is then left
    to the test, e.g. a Parquet file). Spec fields default to a small valid rivya/wan-2-7-image spec.
    """

    def _write(rows: list[dict[str, Any]] | None, table: str = "prompts.csv", **fields: Any) -> Path:
        spec: dict[str, Any] = {
            "name": "demo",
            "prompts": table,
            "provider": "rivya",
            "model": "wan-2-7-image",
            "variants": 1,
            "seed": 20261121,
            "params": {"aspect_ratio": "16:9", "resolution": "2K"},
        }
        spec.update(fields)
        if rows is not None:
            write_csv(tmp_path / table, rows)
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        return path

    return _write


# -- a small generated dataset, shared by the gallery, export and browser tests ----------------------


@dataclass(frozen=True)
class GeneratedDataset:
    spec_path: Path
    storage: Path
    dagster_home: Path  # the instance that recorded the runs (the browser test opens the UI on it)
    outputs: int  # stored files
    failed: int  # failed attempts (one rejected by the emulator's content filter)
    modes: frozenset[str]


GENERATED_ROWS = [
    {"prompt_id": "fox", "prompt": "A red fox crossing a frosted meadow at dawn, soft rim light"},
    {"prompt_id": "tea_house", "prompt": "一座雨中的江南茶馆，青瓦白墙，灯笼倒映在石板路上"},
    {"prompt_id": "harbor_night", "prompt": "The same harbor at night, lanterns on the water",
     "reference_images": "harbor.png"},
]


@pytest.fixture(scope="session")
def generated_dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """Three prompts x two variants through the real Dagster jobs on the emulator; the first task created
    is rejected (content policy), so the dataset holds 5 outputs, 1 failure and two modes. Lineage and the
    report (gallery) are materialized."""
    import dagster as dg
    from e2e_helpers import EXAMPLES, FAST_ENGINE

    from wan_pipeline.assets.dataset import generate_job_name, lineage_job_name, prompt_table_job_name
    from wan_pipeline.definitions import build_definitions

    folder = tmp_path_factory.mktemp("generated")
    shutil.copy(EXAMPLES / "media" / "harbor.png", folder / "harbor.png")
    write_csv(folder / "prompts.csv", GENERATED_ROWS)
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "shots", "prompts": "prompts.csv", "provider": "rivya", "model": "wan-2-7-image",
        "endpoint": "emulator", "variants": 2, "seed": 5, "params": {"aspect_ratio": "16:9", "resolution": "1K"},
        "storage": "out",
    }), encoding="utf-8")
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.from_config(str(home)) as instance:
        for name in list(os.environ):
            if name.startswith(("WAN_PIPELINE_", "RIVYA_")):
                mp.delenv(name)
        for name, value in FAST_ENGINE.items():
            mp.setenv(name, value)
        faults = {"reject_content": {"next": 1}}
        mp.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05, "faults": faults}))
        mp.setenv("WAN_PIPELINE_GENERATION_ATTEMPTS", "1")
        mp.setenv("WAN_PIPELINE_MAX_CONCURRENCY", "1")  # the first task created is fox/v0
        defs = build_definitions([spec_path])
        from wan_pipeline.planning.spec import load_spec

        spec = load_spec(spec_path)
        assert defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance).success
        # One run over the three partitions (the fault applies to the first task the emulator sees).
        from wan_pipeline.assets.dagster_compat import range_tags

        run = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
            instance=instance, tags=range_tags("fox", "harbor_night"), raise_on_error=False)
        assert not run.success  # one partition failed, the others are materialized
        assert defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance).success
    return GeneratedDataset(spec_path, folder / "out", home, outputs=5, failed=1,
                            modes=frozenset({"text_to_image", "image_edit"}))
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the whole session (each test takes its own database)."""
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """The URL of a fresh, empty database on the session's cluster."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS S3 endpoint (real signature checking) with the test bucket created."""
    with seaweedfs(tmp_path_factory.mktemp("weed")) as endpoint:
        ensure_bucket(endpoint)
        yield endpoint
