"""WanDataset: a Dagster component that turns one dataset spec into its asset group, checks, jobs and sensor.

Configured by a ``defs.yaml`` (``dg scaffold defs wan_pipeline.WanDataset NAME`` writes one), either with a
path to a spec file or with the spec's fields inline; relative paths resolve against the ``defs.yaml``'s
folder. This package's own code location (``definitions.py``) builds its groups through it too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import Field

from wan_pipeline.assets.dataset import dataset_definitions
from wan_pipeline.planning.spec import SpecSource
from wan_pipeline.resources.environment import resources_from_env

_HEADER = """\
# A Wan 2.7 dataset (wan-pipeline). `spec` holds the spec's fields inline, or a path to a spec YAML.
# endpoint: emulator is the in-process provider emulator: nothing is bought. To go live, delete that line
# and set the provider's API key variable (RIVYA_API_KEY for rivya); keep a budget.
"""
_SAMPLE_PROMPTS = """prompt_id,prompt
lighthouse,"A lighthouse on a basalt cliff at dusk, waves below"
orchard,"An apple orchard in spring, morning mist between the rows"
"""


class WanDatasetScaffolder(dg.Scaffolder):
    """Writes a defs.yaml with an inline spec served by the emulator, and a two-row prompt table to edit."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        folder = request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9_]", "_", folder.name.lower()) or "dataset"
        spec: dict[str, Any] = {
            "name": name,
            "prompts": "prompts.csv",
            "provider": "rivya",
            "model": "wan-2-7-image",
            "endpoint": "emulator",
            "variants": 1,
            "seed": 1,
            "params": {"aspect_ratio": "16:9", "resolution": "1K"},
            "budget": {"max_credits": 50},
            # Media, lineage, the gallery and the ledger land outside the source tree.
            "storage": os.path.relpath((request.project_root or folder) / "wan_output" / name, folder),
        }
        text = _HEADER + yaml.safe_dump({"type": request.type_name, "attributes": {"spec": spec}}, sort_keys=False)
        (folder / "defs.yaml").write_text(text, encoding="utf-8")
        prompts = folder / "prompts.csv"
        if not prompts.exists():
            prompts.write_text(_SAMPLE_PROMPTS, encoding="utf-8")


@dg.scaffold_with(WanDatasetScaffolder)
class WanDataset(dg.Component, dg.Resolvable, dg.Model):
    """A reproducible Wan 2.7 image or video dataset: prompt table → generations → media → lineage → report.

    ``spec`` is a spec YAML file or the spec's fields inline; relative paths resolve against the folder of
    this ``defs.yaml``.
    """

    spec: str | dict[str, Any] = Field(
        description=(
            "A path to a dataset spec YAML, or the spec's fields inline (name, prompts, provider, model, endpoint,"
            " variants, seed, params, budget, storage)."
        )
    )

    def spec_source(self, base_dir: Path, label: str) -> SpecSource:
        if isinstance(self.spec, str):
            return SpecSource.from_file(base_dir / self.spec)
        return SpecSource(inline=self.spec, base_dir=base_dir, label=label)

    def build_dataset_defs(self, base_dir: Path, label: str) -> dg.Definitions:
        """The dataset's definitions with the resources they need, for any code location."""
        assets = dataset_definitions(self.spec_source(base_dir, label))
        return dg.Definitions.merge(assets, dg.Definitions(resources=resources_from_env()))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.build_dataset_defs(context.path, str(context.path / "defs.yaml"))
