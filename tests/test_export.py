"""Exports (outputs/export.py) of a generated dataset, loaded back by the libraries ML users load them with:
Hugging Face `datasets` (imagefolder + metadata.jsonl) and `webdataset` (tar shards), offline."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import GeneratedDataset

from wan_pipeline.errors import WanPipelineError
from wan_pipeline.outputs.card import dataset_card
from wan_pipeline.outputs.export import export_hf, export_webdataset, sample_key
from wan_pipeline.outputs.storage import LocalStorage


def _rows(gen: GeneratedDataset) -> list[dict]:  # type: ignore[type-arg]
    return pq.read_table(gen.storage / "lineage" / "lineage.parquet").to_pylist()


def test_hf_imagefolder_loads_with_lineage_columns(generated_dataset: GeneratedDataset, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # the datasets cache stays in the test's dir
    table = pq.read_table(generated_dataset.storage / "lineage" / "lineage.parquet")
    rows = table.to_pylist()
    out = tmp_path / "hf"
    card = dataset_card(table)
    result = export_hf(rows, LocalStorage(generated_dataset.storage), LocalStorage(out), card=card)
    assert result.samples == generated_dataset.outputs
    assert (out / "README.md").read_text(encoding="utf-8") == card  # the dataset card, as the Hub shows it

    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 5
    for column in ("image", "prompt", "seed", "params", "fingerprint", "credits_final", "cost_usd", "sha256",
                   "task_id", "mode", "width", "height"):
        assert column in ds.column_names, column
    stored = {r["media_sha256"]: r for r in rows if r["status"] == "succeeded"}
    for item in ds:
        source = stored[item["sha256"]]
        assert (item["prompt"], item["seed"], item["fingerprint"]) == (
            source["prompt"], source["seed"], source["fingerprint"])
        assert json.loads(item["params"]) == json.loads(source["params_json"])
        assert item["image"].size == (source["width"], source["height"])
    # The exported files are the stored bytes.
    for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        assert hashlib.sha256((out / rec["file_name"]).read_bytes()).hexdigest() == rec["sha256"]


def test_webdataset_shards_pair_each_file_with_its_record(generated_dataset: GeneratedDataset, tmp_path: Path) -> None:
    rows = _rows(generated_dataset)
    out = tmp_path / "wds"
    result = export_webdataset(rows, LocalStorage(generated_dataset.storage), LocalStorage(out), shard_size=2)
    assert result.files == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]  # 5 samples, 2 per shard
    assert result.samples == 5

    samples = list(wds.WebDataset([str(out / f) for f in result.files], shardshuffle=False))
    assert len(samples) == 5
    expected = {sample_key(r): r for r in rows if r["status"] == "succeeded"}
    for sample in samples:
        record = json.loads(sample["json"])
        source = expected[sample["__key__"]]
        assert hashlib.sha256(sample["png"]).hexdigest() == record["sha256"] == source["media_sha256"]
        assert (record["prompt"], record["seed"], record["fingerprint"]) == (
            source["prompt"], source["seed"], source["fingerprint"])
        assert record["credits_final"] == source["credits_final"]

    # Deterministic: the same ledger gives the same shards, byte for byte.
    again = tmp_path / "wds2"
    export_webdataset(rows, LocalStorage(generated_dataset.storage), LocalStorage(again), shard_size=2)
    for name in result.files:
        assert (out / name).read_bytes() == (again / name).read_bytes()
    with tarfile.open(out / result.files[0]) as tar:
        assert all(m.mtime == 0 for m in tar.getmembers())


def test_bad_shard_size_is_refused(generated_dataset: GeneratedDataset, tmp_path: Path) -> None:
    with pytest.raises(WanPipelineError, match="shard size"):
        export_webdataset(_rows(generated_dataset), LocalStorage(generated_dataset.storage),
                          LocalStorage(tmp_path), shard_size=0)


def test_export_asset_writes_both_formats_under_the_storage(generated_dataset: GeneratedDataset,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from wan_pipeline.definitions import build_definitions

    monkeypatch.delenv("WAN_PIPELINE_SPECS", raising=False)
    defs = build_definitions([generated_dataset.spec_path])
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["shots", "export"])],
            run_config={"ops": {"shots__export": {"config": {"shard_size": 4}}}})
    assert result.success
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    assert mat.metadata["samples"].value == 5
    assert mat.metadata["webdataset_files"].value == 2
    export_dir = generated_dataset.storage / "export"
    assert (export_dir / "hf" / "metadata.jsonl").is_file() and (export_dir / "hf" / "README.md").is_file()
    assert sorted(p.name for p in (export_dir / "webdataset").iterdir()) == ["shard-000000.tar", "shard-000001.tar"]


def test_hf_videofolder_for_video_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Video outputs export the same way and load with "videofolder" (rows and columns; decoding a frame
    would need torchcodec, which ML users install with their training stack)."""
    from e2e_helpers import EXAMPLES

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    source = LocalStorage(tmp_path / "store")
    uri = source.put("media/clip/clip__v0__0__abc.mp4", (EXAMPLES / "media" / "clip.mp4").read_bytes(), "video/mp4")
    row = {"status": "succeeded", "prompt_id": "clip", "variant": 0, "output_index": 0, "prompt": "a clip",
           "mode": "text_to_video", "seed": 3, "fingerprint": "f" * 64, "params_json": '{"duration": 2}',
           "media_uri": uri, "media_sha256": hashlib.sha256(Path(uri).read_bytes()).hexdigest(),
           "mime_type": "video/mp4", "credits_final": 10.0}
    export_hf([row], source, LocalStorage(tmp_path / "hf"))
    ds = datasets.load_dataset("videofolder", data_dir=str(tmp_path / "hf"), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 1
    assert {"video", "prompt", "seed", "sha256", "params"} <= set(ds.column_names)
    assert ds.select_columns(["prompt", "seed", "sha256"])[0] == {
        "prompt": "a clip", "seed": 3, "sha256": row["media_sha256"]}
