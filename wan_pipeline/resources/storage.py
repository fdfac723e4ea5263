"""Storage resource: local disk by default; S3 (and S3-compatible stores) through dagster-aws."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from wan_pipeline.outputs.storage import Storage, open_storage, s3_client
from wan_pipeline.planning.spec import DatasetSpec


class StorageResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    s3_endpoint_url: str | None = Field(default=None, description="for S3-compatible stores; None = AWS")
    s3_region: str | None = Field(default=None)

    def s3_client(self) -> Any:
        # Credentials come from the standard AWS environment/profile chain, never from this config.
        return s3_client(self.s3_endpoint_url, self.s3_region)

    def for_spec(self, spec: DatasetSpec) -> Storage:
        return open_storage(spec.storage_root, self.s3_client() if spec.is_s3 else None)
