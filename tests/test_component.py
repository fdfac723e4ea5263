"""The WanDataset component, as a new user adds it to an existing Dagster project.

A fresh project made by `create-dagster` (installed into this test's venv, offline), `dg scaffold defs
wan_pipeline.WanDataset my_dataset`, a prompt table and a spec on the emulator; then `dg list defs`
shows the group and `dg launch` materializes a partition. Plus the two ways of writing the spec.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import write_csv
from e2e_helpers import FAST_EMULATOR, FAST_ENGINE, clean_environ

from wan_pipeline import WanDataset
from wan_pipeline.errors import InvalidInput

BIN = Path(sys.executable).parent
PROMPTS = [
    {"prompt_id": "harbor", "prompt": "A fishing harbor at dawn, gulls over the boats"},
    {"prompt_id": "glacier", "prompt": "A blue glacier tongue meeting a grey sea"},
]
SPEC = {
    "name": "my_dataset",
    "prompts": "prompts.csv",
    "provider": "rivya",
    "model": "wan-2-7-image",
    "endpoint": "emulator",
    "variants": 2,
    "seed": 7,
    "params": {"aspect_ratio": "1:1", "resolution": "1K"},
    "storage": "out",
}


def _env(dagster_home: Path) -> dict[str, str]:
    env = clean_environ()
    env.update(FAST_ENGINE)
    env.update(
        WAN_PIPELINE_EMULATOR=FAST_EMULATOR,
        DAGSTER_HOME=str(dagster_home),
        DAGSTER_DG_UPDATE_CHECK_ENABLED="0",  # `create-dagster` would ask PyPI for a newer version of itself
        PATH=f"{BIN}:{env.get('PATH', '')}",  # `dg` runs the project's code in this venv
    )
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_fresh_create_dagster_project_adds_a_dataset(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = _env(home)
    _run([str(BIN / "create-dagster"), "project", "--no-uv-sync", "newproj"], tmp_path, env)
    project = tmp_path / "newproj"
    # The new project's package is found through PYTHONPATH: nothing is installed, nothing downloaded.
    env["PYTHONPATH"] = str(project / "src")
    _run([str(BIN / "dg"), "scaffold", "defs", "wan_pipeline.WanDataset", "my_dataset"], project, env)
    folder = project / "src" / "newproj" / "defs" / "my_dataset"
    scaffolded = yaml.safe_load((folder / "defs.yaml").read_text(encoding="utf-8"))
    assert scaffolded["type"] == "wan_pipeline.WanDataset"
    assert scaffolded["attributes"]["spec"]["endpoint"] == "emulator"  # scaffolding never spends money

    # The user's own table and spec: a spec file beside defs.yaml, named by path.
    write_csv(folder / "prompts.csv", PROMPTS)
    (folder / "dataset.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    (folder / "defs.yaml").write_text(
        yaml.safe_dump({"type": "wan_pipeline.WanDataset", "attributes": {"spec": "dataset.yaml"}}),
        encoding="utf-8",
    )

    listed = json.loads(_run([str(BIN / "dg"), "list", "defs", "--json"], project, env))
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert {"my_dataset/prompt_table", "my_dataset/generations", "my_dataset/media",
            "my_dataset/lineage"} <= set(assets)
    assert {a["group_name"] for a in assets.values()} == {"my_dataset"}
    assert "my_dataset/lineage:outputs_exist_and_decode" in {c["key"] for c in listed["asset_checks"]}

    _run([str(BIN / "dg"), "launch", "--assets", "my_dataset/prompt_table"], project, env)
    _run([str(BIN / "dg"), "launch", "--assets", "my_dataset/generations,my_dataset/media",
          "--partition", "glacier"], project, env)

    media = sorted((folder / "out" / "media").rglob("*.png"))
    assert len(media) == 2 and all("glacier" in str(p) for p in media)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        done = instance.get_materialized_partitions(dg.AssetKey(["my_dataset", "media"]))
    assert done == {"glacier"}


def test_inline_spec_and_spec_file_build_the_same_group(tmp_path: Path) -> None:
    write_csv(tmp_path / "prompts.csv", PROMPTS)
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    inline = WanDataset(spec=SPEC).build_dataset_defs(tmp_path, "defs.yaml")
    by_file = WanDataset(spec="dataset.yaml").build_dataset_defs(tmp_path, "defs.yaml")
    for defs in (inline, by_file):
        keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
        assert {"my_dataset/prompt_table", "my_dataset/media", "my_dataset/lineage"} <= keys
        dg.Definitions.validate_loadable(defs)
    # Two datasets in one code location share the resource objects (Definitions.merge requires it).
    other = WanDataset(spec={**SPEC, "name": "second"}).build_dataset_defs(tmp_path, "defs.yaml")
    merged = dg.Definitions.merge(inline, other)
    assert {"my_dataset", "second"} <= {k.path[0] for k in merged.resolve_asset_graph().get_all_asset_keys()}


def test_inline_spec_errors_name_the_defs_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        WanDataset(spec={**SPEC, "provider": "nowhere", "variants": 0}).build_dataset_defs(tmp_path, "defs.yaml")
    text = str(err.value)
    assert "defs.yaml" in text and "provider" in text and "variants" in text
