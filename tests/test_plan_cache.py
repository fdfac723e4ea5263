"""A process plans identical inputs once; any change to the spec, the table or a reference file plans afresh."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import png_bytes

from wan_pipeline.planning import plan_cache
from wan_pipeline.planning.plan_cache import plan_for
from wan_pipeline.planning.spec import load_spec

SpecWriter = Callable[..., Path]


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    plan_cache.clear()


def _bump(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_identical_inputs_are_planned_once(write_spec: SpecWriter) -> None:
    path = write_spec([{"prompt_id": "a", "prompt": "A lighthouse"}])
    first = plan_for(load_spec(path))
    assert plan_for(load_spec(path)) is first


def test_an_edited_table_is_planned_again(write_spec: SpecWriter, tmp_path: Path) -> None:
    path = write_spec([{"prompt_id": "a", "prompt": "A lighthouse"}])
    first = plan_for(load_spec(path))
    (tmp_path / "prompts.csv").write_text("prompt_id,prompt\na,A lighthouse at dusk\n", encoding="utf-8")
    second = plan_for(load_spec(path))
    assert second is not first and second.tasks[0].prompt == "A lighthouse at dusk"


def test_an_edited_spec_is_planned_again(write_spec: SpecWriter) -> None:
    rows: list[dict[str, Any]] = [{"prompt_id": "a", "prompt": "A lighthouse"}]
    first = plan_for(load_spec(write_spec(rows)))
    second = plan_for(load_spec(write_spec(rows, seed=7)))
    assert second is not first and second.tasks[0].seed != first.tasks[0].seed


def test_a_changed_reference_file_is_planned_again(write_spec: SpecWriter, tmp_path: Path) -> None:
    (tmp_path / "ref.png").write_bytes(png_bytes((10, 20, 30)))
    path = write_spec([{"prompt_id": "a", "prompt": "Make it blue", "reference_images": "ref.png"}])
    first = plan_for(load_spec(path))
    (tmp_path / "ref.png").write_bytes(png_bytes((200, 20, 30)))
    _bump(tmp_path / "ref.png")
    second = plan_for(load_spec(path))
    assert second is not first
    assert second.tasks[0].fingerprint != first.tasks[0].fingerprint  # files count by content
