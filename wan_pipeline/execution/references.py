"""Reference media on their way to the host: its upload API where it has one, else a presigned S3 URL.

A presigned URL is a credential (signature, access-key id, a session token, 24 h of read access): the request
is built and recorded (ledger, lineage `request_json`) with the `s3://` URI the URL signs, and `signed` swaps
in a fresh signature just before each send, so a resend after a day still works and no secret is stored.

Every local reference file is also kept in the dataset's storage (`references/<sha256><ext>`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wan_pipeline import errors as e
from wan_pipeline.execution.calls import Caller
from wan_pipeline.outputs.layout import reference_relpath
from wan_pipeline.outputs.storage import Storage
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import HttpCall, Provider, Reference


class ReferencePreparer:
    def __init__(self, provider: Provider, storage: Storage, calls: Caller) -> None:
        self.provider = provider
        self.storage = storage
        self.calls = calls

    async def prepare(self, task: PlannedTask) -> tuple[Reference, ...]:
        """Every reference of the task with a URL (or upload id) the host can use."""
        out: list[Reference] = []
        for ref in task.references:
            if ref.url is not None or ref.path is None:
                out.append(ref)
                continue
            data = ref.path.read_bytes()
            self._keep(ref, data)
            if ref.kind in self.provider.upload_kinds:
                call = self.provider.upload(task.model, ref, data)
                if call is not None:
                    out.append(await self.upload(replace(ref, data=data), call))
                    continue
            out.append(self._presigned(task, ref, data))
        return tuple(out)

    def _keep(self, ref: Reference, data: bytes) -> str:
        """The dataset keeps its own copy of every local reference file (by content), so a replay of its
        lineage finds it even after the original is moved or edited; stored once, however many use it."""
        relpath = reference_relpath(ref.sha256, ref.mime_type)
        if self.storage.size(relpath) != len(data):
            self.storage.put(relpath, data, ref.mime_type or "application/octet-stream")
        return relpath

    def _presigned(self, task: PlannedTask, ref: Reference, data: bytes) -> Reference:
        presign = getattr(self.storage, "presign", None)
        if presign is None:
            raise e.ConfigError(
                f"{task.provider} takes reference media only as public HTTPS URLs and has no upload API; "
                f"'{ref.source}' is a local file: set `storage: s3://bucket/prefix` so it can be served from "
                "a presigned URL, or give an https:// URL in the table"
            )
        return replace(ref, url=self.storage.uri(self._keep(ref, data)))  # signed at send time (`signed`)

    def signed(self, call: HttpCall) -> HttpCall:
        """The call as it goes on the wire: every `s3://` URI of this storage replaced by a fresh presigned URL."""
        presign = getattr(self.storage, "presign", None)
        if presign is None or call.json_body is None:
            return call
        prefix = self.storage.root.rstrip("/") + "/"

        def sign(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(prefix):
                return presign(value[len(prefix):])
            if isinstance(value, list):
                return [sign(v) for v in value]
            if isinstance(value, dict):
                return {k: sign(v) for k, v in value.items()}
            return value

        return replace(call, json_body=sign(call.json_body))

    async def upload(self, ref: Reference, call: HttpCall, max_steps: int = 4) -> Reference:
        """Run an upload, one step or several (each step's answer may name the next call)."""
        for _ in range(max_steps):
            result = self.provider.uploaded(ref, await self.calls.send(call))
            if isinstance(result, Reference):
                return replace(result, data=None)
            ref, call = result
        raise e.Transient(code="upload_failed", message=f"upload of '{ref.source}' did not finish in {max_steps} steps")
