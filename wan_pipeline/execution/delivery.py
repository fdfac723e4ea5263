"""Delivery of a finished task: download each result, verify it decodes as asked, store it, record it."""

from __future__ import annotations

import asyncio
import random

from wan_pipeline import errors as e
from wan_pipeline.execution.journal import AsyncLedger
from wan_pipeline.execution.outcome import EventSink
from wan_pipeline.execution.pacing import backoff_delay
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.ledger import STORED, Attempt, StoredOutput, utcnow
from wan_pipeline.outputs.expectation import expectation
from wan_pipeline.outputs.layout import media_relpath
from wan_pipeline.outputs.media import Expectation, MediaInfo, inspect_media
from wan_pipeline.outputs.storage import Storage
from wan_pipeline.outputs.verified import note_verified
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import TaskSnapshot


class Deliverer:
    def __init__(
        self,
        wire: Wire,
        storage: Storage,
        ledger: AsyncLedger,
        settings: EngineSettings,
        rng: random.Random,
        on_event: EventSink,
    ) -> None:
        self.wire = wire
        self.storage = storage
        self.ledger = ledger
        self.settings = settings
        self.rng = rng
        self.on_event = on_event

    async def still_stored(self, task: PlannedTask, outputs: list[StoredOutput]) -> bool:
        """Every recorded file of a stored attempt is still in storage, at its recorded size."""

        def check() -> bool:  # a stat or an S3 HEAD per file: off the loop
            return bool(outputs) and all(
                self.storage.size(media_relpath(task, o.output_index, o.mime_type)) == o.bytes for o in outputs
            )

        return await asyncio.to_thread(check)

    async def store(self, task: PlannedTask, attempt: Attempt, snap: TaskSnapshot) -> list[StoredOutput]:
        expect = expectation(task)
        stored: list[StoredOutput] = []
        for index, url in enumerate(snap.output_urls):
            data, info = await self._download_verified(task, url, expect)
            # fsync'd writes (disk) and boto3 (S3) block: off the loop that polls
            stored.append(await asyncio.to_thread(self._put, task, attempt, index, url, data, info))
        # the files first, then their records and the attempt's final state, in one transaction
        await self.ledger.store(stored, task.identity, attempt.attempt, state=STORED)
        return stored

    def _put(
        self, task: PlannedTask, attempt: Attempt, index: int, url: str, data: bytes, info: MediaInfo
    ) -> StoredOutput:
        rel = media_relpath(task, index, info.mime_type)
        out = _stored_output(task, attempt, index, url, self.storage.put(rel, data, info.mime_type), info)
        note_verified(self.storage, rel, out)  # hashed and decoded before: the audit need not read it again
        return out

    async def _download_verified(self, task: PlannedTask, url: str, expect: Expectation) -> tuple[bytes, MediaInfo]:
        retry = 0
        while True:
            try:
                data = await self.wire.download(url)
                # decoding every frame and hashing is CPU work: a thread, so polls are never late for it
                return data, await asyncio.to_thread(inspect_media, data, expect)
            except (e.Transient, e.MediaInvalid) as err:
                if retry >= self.settings.download_retries:
                    raise
                self.on_event("download_retry", task, str(err))
                await asyncio.sleep(
                    backoff_delay(retry, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)
                )
                retry += 1


def _stored_output(
    task: PlannedTask, attempt: Attempt, index: int, url: str, uri: str, info: MediaInfo
) -> StoredOutput:
    return StoredOutput(
        identity=task.identity,
        attempt=attempt.attempt,
        output_index=index,
        source_url=url.split("?")[0],  # never the query: signed URLs carry credentials
        media_uri=uri,
        media_sha256=info.sha256,
        mime_type=info.mime_type,
        bytes=info.bytes,
        width=info.width,
        height=info.height,
        duration_s=info.duration_s,
        fps=info.fps,
        warnings="; ".join(info.warnings) or None,
        stored_at=utcnow(),
    )
