"""What made an output, by content: the spec and table files, the reference files, the master seed, the code.

Fixed when a task is planned and written with its ledger attempt, so a lineage row still names the exact
inputs that made it after the spec or the table has been edited (`sha256sum spec.yaml` finds the file).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wan_pipeline.code_version import code_version
from wan_pipeline.planning.spec import DatasetSpec
from wan_pipeline.providers.base import Reference


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def spec_sha256(spec: DatasetSpec) -> str:
    """The spec file's bytes as loaded; a spec built in code hashes its canonical JSON instead."""
    if spec.source_sha256:
        return spec.source_sha256
    text = json.dumps(spec.model_dump(mode="json"), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Provenance:
    spec_sha256: str | None = None
    table_sha256: str | None = None
    master_seed: int | None = None
    code_version: str | None = None

    @staticmethod
    def of(spec: DatasetSpec) -> Provenance:
        return Provenance(
            spec_sha256=spec_sha256(spec),
            table_sha256=sha256_file(spec.prompts_path),
            master_seed=spec.seed,
            code_version=code_version(),
        )

    def attempt_columns(self, references: tuple[Reference, ...]) -> dict[str, Any]:
        """The ledger attempt's provenance columns (money.ledger.Attempt field names)."""
        return {
            "spec_sha256": self.spec_sha256,
            "table_sha256": self.table_sha256,
            # One entry per reference in request order; a URL reference has no file to hash (null).
            "reference_sha256s": json.dumps([r.sha256 for r in references], separators=(",", ":")),
            "master_seed": self.master_seed,
            "code_version": self.code_version,
        }
