"""Shared helpers: golden fixtures, and a dataset spec + prompt table written to a temporary directory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

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
