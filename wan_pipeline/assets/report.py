"""report and export: the gallery page after lineage, and the dataset in Hugging Face and WebDataset form.

Both read the lineage Parquet the lineage asset wrote, so they show exactly what lineage recorded.
"""

import io
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from wan_pipeline.assets.automation import REFRESH
from wan_pipeline.assets.keys import key
from wan_pipeline.assets.metadata import unknown_usd
from wan_pipeline.execution.endpoints import thumbnails_path
from wan_pipeline.execution.memory import release_free_memory
from wan_pipeline.outputs.export import DEFAULT_SHARD_SIZE, ExportFormat, export_dataset
from wan_pipeline.outputs.gallery import GALLERY_COLUMNS, write_gallery
from wan_pipeline.outputs.storage import Storage, open_storage
from wan_pipeline.planning.spec import DatasetSpec, SpecSource
from wan_pipeline.resources.storage import StorageResource

if TYPE_CHECKING:  # Arrow is imported where it is read (see assets/lineage.py)
    import pyarrow as pa

EXPORT_DIR = "export"


def read_lineage(store: Storage, columns: list[str] | None = None) -> "pa.Table":
    """The lineage table the lineage asset wrote (its schema metadata included, for the dataset card), or only
    its `columns`."""
    import pyarrow.parquet as pq

    from wan_pipeline.outputs.lineage import LINEAGE_PATH

    return pq.read_table(io.BytesIO(store.get(LINEAGE_PATH)), columns=columns)


def read_lineage_rows(store: Storage, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows (of `columns` only, when given: a dataset of many outputs need not load its request bodies)."""
    return list(read_lineage(store, columns).to_pylist())


def build_report_asset(spec: DatasetSpec, source: SpecSource) -> dg.AssetsDefinition:
    @dg.asset(
        key=key(spec, "report"),
        deps=[key(spec, "lineage")],
        group_name=spec.name,
        kinds={"html"},
        automation_condition=REFRESH,
        description="A self-contained HTML gallery: every output's thumbnail, prompt, seed, mode, cost, status, "
        "task id; failures with reasons; totals; filters by status and mode.",
    )
    def report(storage: StorageResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        current = source.load()
        store = storage.for_spec(current)
        rows = read_lineage_rows(store, GALLERY_COLUMNS)
        summary = write_gallery(rows, current.name, store, thumbnails_path(current))
        release_free_memory()  # the thumbnails decoded (execution/memory.py)
        return dg.MaterializeResult(
            metadata={
                "gallery": dg.MetadataValue.path(summary.uri),
                "outputs": summary.outputs,
                "failed": summary.failed,
                "pending": summary.pending,
                "credits_final": summary.credits,
                "usd": summary.usd if summary.usd is not None else unknown_usd(summary.usd_unknown_rows),
            }
        )

    return report


class ExportConfig(dg.Config):
    formats: list[str] = Field(default=["hf", "webdataset"], description="hf and/or webdataset")
    shard_size: int = Field(default=DEFAULT_SHARD_SIZE, description="WebDataset samples per tar shard")


def build_export_asset(spec: DatasetSpec, source: SpecSource) -> dg.AssetsDefinition:
    @dg.asset(
        key=key(spec, "export"),
        deps=[key(spec, "lineage")],
        group_name=spec.name,
        kinds={"huggingface", "webdataset"},
        description=f"The stored outputs as a Hugging Face image/video folder and WebDataset shards, under "
        f"<storage>/{EXPORT_DIR}/ (launched by hand: it copies every file).",
    )
    def export(config: ExportConfig, storage: StorageResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        from wan_pipeline.outputs.card import dataset_card

        current = source.load()
        store = storage.for_spec(current)
        table = read_lineage(store)
        rows, card = table.to_pylist(), dataset_card(table)
        metadata: dict[str, Any] = {}
        for fmt in config.formats:
            dest = open_storage(f"{store.root}/{EXPORT_DIR}/{fmt}", storage.s3_client() if current.is_s3 else None)
            result = export_dataset(rows, store, dest, _format(fmt), config.shard_size, card=card)
            metadata[f"{fmt}_path"] = dg.MetadataValue.path(result.location)
            metadata[f"{fmt}_files"] = len(result.files)
            metadata["samples"] = result.samples
        return dg.MaterializeResult(metadata=metadata)

    return export


def _format(name: str) -> ExportFormat:
    if name == "hf":
        return "hf"
    if name == "webdataset":
        return "webdataset"
    raise dg.Failure(description=f"unknown export format {name!r}: use hf or webdataset", allow_retries=False)
