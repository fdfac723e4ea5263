"""execution/references.py: ReferencePreparer gives every reference a URL the host can use — through the host's own
upload API where it declares one (one step or several), else a presigned URL from storage — and refuses a local
file it cannot serve before anything is sent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Rig, RigFactory, png_bytes

from wan_pipeline import errors as e
from wan_pipeline.execution.references import ReferencePreparer
from wan_pipeline.outputs.layout import reference_relpath
from wan_pipeline.outputs.storage import LocalStorage

EDIT = [{"prompt_id": "edit", "prompt": "Make it night", "reference_images": '["ref.png"]'}]
EVOLINK = {"provider": "evolink", "model": "wan-2.7-image"}
#: planning lets a URL-only host take a local file only when storage can presign it (S3)
PRESIGNED = {**EVOLINK, "storage": "s3://bucket/datasets"}


class ServedStorage(LocalStorage):
    """Local storage that can hand out URLs for its files, as S3 storage presigns them."""

    def presign(self, relpath: str) -> str:
        return f"http://127.0.0.1:9/{relpath}?X-Amz-Signature=test"


@pytest.fixture
def ref_png(e2e_env: Path) -> Path:
    path = e2e_env / "ref.png"
    path.write_bytes(png_bytes(size=(96, 64)))
    return path


def preparer(r: Rig, storage: LocalStorage | None = None) -> ReferencePreparer:
    return ReferencePreparer(r.provider, storage or r.storage, r.caller())


async def test_url_references_pass_through_untouched(rig: RigFactory) -> None:
    r = rig([{"prompt_id": "edit", "prompt": "Make it night",
              "reference_images": '["https://example.com/a.png"]'}], **EVOLINK)  # fmt: skip
    (task,) = r.tasks
    assert await preparer(r).prepare(task) == task.references
    assert r.state.files == {}


async def test_a_local_file_goes_through_the_hosts_upload_api(rig: RigFactory, ref_png: Path) -> None:
    r = rig(EDIT)  # rivya: Files API
    (task,) = r.tasks
    (ref,) = await preparer(r).prepare(task)
    (uploaded,) = r.state.files.values()
    assert ref.url == uploaded["url"] and ref.data is None
    assert (uploaded["size_bytes"], uploaded["mime_type"]) == (ref_png.stat().st_size, "image/png")
    assert (uploaded["width"], uploaded["height"]) == (96, 64)
    assert ref.sha256 == task.references[0].sha256


async def test_a_multi_step_upload_follows_each_answer_to_the_next_call(rig: RigFactory, ref_png: Path) -> None:
    # DashScope: an upload policy, then a POST to its storage host, then an oss:// URL
    r = rig(EDIT, provider="dashscope", model="wan2.7-image")
    (task,) = r.tasks
    (ref,) = await preparer(r).prepare(task)
    assert ref.url is not None and ref.url.startswith("oss://")
    assert len(r.state.files) == 1


async def test_an_upload_that_does_not_finish_is_a_transient_failure(rig: RigFactory, ref_png: Path) -> None:
    r = rig(EDIT, provider="dashscope", model="wan2.7-image")
    (task,) = r.tasks
    ref = task.references[0]
    data = ref_png.read_bytes()
    call = r.provider.upload(task.model, ref, data)
    assert call is not None
    with pytest.raises(e.Transient, match="did not finish in 1 steps"):
        await preparer(r).upload(replace(ref, data=data), call, max_steps=1)


async def test_a_host_without_upload_api_gets_a_presigned_url_signed_at_send_time(
    rig: RigFactory, ref_png: Path
) -> None:
    # recorded as the storage URI (no credential in the ledger); every send swaps in a fresh signature
    r = rig(EDIT, **PRESIGNED)
    (task,) = r.tasks
    storage = ServedStorage(r.storage.root)
    prep = preparer(r, storage)
    (ref,) = await prep.prepare(task)
    relpath = reference_relpath(task.references[0].sha256, "image/png")
    assert ref.url == storage.uri(relpath)
    assert storage.path(relpath).read_bytes() == ref_png.read_bytes()  # stored by content, then served
    call = r.provider.submit(task.request((ref,)), task.idempotency_key(1))
    assert storage.presign(relpath) not in call.body_json()
    sent = prep.signed(call)
    assert storage.presign(relpath) in sent.body_json() and storage.uri(relpath) not in sent.body_json()
    assert r.state.files == {}


async def test_a_local_file_a_host_cannot_receive_is_refused_before_sending(rig: RigFactory, ref_png: Path) -> None:
    # planning refuses this for a local-storage spec; the engine still checks the storage it was given
    r = rig(EDIT, **PRESIGNED)
    (task,) = r.tasks
    with pytest.raises(e.ConfigError, match=r"'ref\.png' is a local file: set `storage: s3://"):
        await preparer(r).prepare(task)
    assert r.state.report()["submit_requests"] == 0 and r.state.files == {}
