"""execution/delivery.py: Deliverer downloads each result of a finished task, verifies it, stores it under its stable
name and records it; cut-short downloads are fetched again; a stored attempt is checked against storage."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from conftest import Rig, RigFactory
from PIL import Image

from wan_pipeline import errors as e
from wan_pipeline.execution.delivery import Deliverer
from wan_pipeline.execution.outcome import Halt
from wan_pipeline.execution.polling import Poller
from wan_pipeline.money.ledger import STORED, SUBMITTED, SUCCEEDED, Attempt
from wan_pipeline.outputs.layout import media_relpath
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import TaskSnapshot, TaskStatus

Events = list[tuple[str, str, str]]


async def finished(r: Rig, task: PlannedTask) -> tuple[Attempt, TaskSnapshot]:
    """The task created, polled to success and recorded, as the engine has it before delivery."""
    call = r.record(task)
    created = r.provider.accepted(await r.caller().send(call, submission=(task.identity, 1)))
    r.ledger.update(task.identity, 1, state=SUBMITTED, task_id=created.task_id)
    attempt = r.ledger.latest(task.identity)
    assert attempt is not None
    snap = await Poller(r.provider, r.journal_ledger, r.caller(), r.settings, Halt()).until_terminal(task, attempt)
    assert snap is not None and snap.status == TaskStatus.SUCCEEDED
    latest = r.ledger.latest(task.identity)
    assert latest is not None and latest.state == SUCCEEDED
    return latest, snap


def deliverer(r: Rig, events: Events | None = None, **settings: int) -> Deliverer:
    sink = events if events is not None else []
    return Deliverer(r.wire, r.storage, r.journal_ledger, r.caller(**settings).settings, random.Random(0),
                     lambda kind, task, detail: sink.append((kind, task.prompt_id, detail)))  # fmt: skip


async def test_results_are_verified_stored_and_recorded(rig: RigFactory) -> None:
    r = rig()
    task = r.tasks[0]
    attempt, snap = await finished(r, task)
    (out,) = await deliverer(r).store(task, attempt, snap)
    path = Path(out.media_uri)
    assert path == Path(r.storage.root) / media_relpath(task, 0, "image/png")
    data = path.read_bytes()
    assert (out.bytes, out.media_sha256, out.mime_type) == (len(data), hashlib.sha256(data).hexdigest(), "image/png")
    with Image.open(path) as img:
        assert img.size == (out.width, out.height) == (1024, 1024)
    assert r.ledger.outputs(task.identity, 1) == [out]
    stored = r.ledger.latest(task.identity)
    assert stored is not None and stored.state == STORED


async def test_a_signed_result_url_is_recorded_without_its_query(rig: RigFactory) -> None:
    # DashScope result URLs carry OSS signatures in the query: credentials, never recorded
    r = rig(provider="dashscope", model="wan2.7-image")
    task = r.tasks[0]
    attempt, snap = await finished(r, task)
    assert all("?" in url for url in snap.output_urls)
    outputs = await deliverer(r).store(task, attempt, snap)
    assert [o.source_url for o in outputs] == [url.split("?")[0] for url in snap.output_urls]


async def test_a_download_cut_short_is_fetched_again(rig: RigFactory) -> None:
    r = rig()
    task = r.tasks[0]
    attempt, snap = await finished(r, task)
    r.faults(truncate=2)
    events: Events = []
    (out,) = await deliverer(r, events).store(task, attempt, snap)
    assert [kind for kind, _, _ in events] == ["download_retry", "download_retry"]
    assert Path(out.media_uri).stat().st_size == out.bytes


async def test_when_every_download_is_cut_short_nothing_is_recorded_as_stored(rig: RigFactory) -> None:
    r = rig()
    task = r.tasks[0]
    attempt, snap = await finished(r, task)
    r.faults(truncate=10)
    with pytest.raises((e.Transient, e.MediaInvalid)):
        await deliverer(r, download_retries=2).store(task, attempt, snap)
    assert r.state.report()["faults_injected"] == {"truncate": 3}  # the first fetch and two more
    assert r.ledger.outputs(task.identity, 1) == []
    latest = r.ledger.latest(task.identity)
    assert latest is not None and latest.state == SUCCEEDED  # delivered again by the next run, not bought again


async def test_still_stored_checks_every_recorded_file_and_its_size(rig: RigFactory) -> None:
    r = rig()
    task = r.tasks[0]
    attempt, snap = await finished(r, task)
    d = deliverer(r)
    outputs = await d.store(task, attempt, snap)
    assert await d.still_stored(task, outputs)
    path = Path(outputs[0].media_uri)
    path.write_bytes(path.read_bytes()[:-1])
    assert not await d.still_stored(task, outputs)
    path.unlink()
    assert not await d.still_stored(task, outputs)
    assert not await d.still_stored(task, [])
