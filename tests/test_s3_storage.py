"""S3 storage against a real S3-compatible server (SeaweedFS, with signature checking) on 127.0.0.1.

Covers what a URL-only host needs: local reference files go to the bucket and the provider receives a
presigned URL that really serves those bytes; media and lineage land in the bucket too.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path

import boto3
import httpx
import pyarrow.parquet as pq
import pytest
from conftest import write_dataset
from PIL import Image
from servers import S3_ACCESS, S3_BUCKET, S3_SECRET

from wan_pipeline.errors import InvalidInput, StorageUnavailable
from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.references import ReferencePreparer
from wan_pipeline.execution.session import open_ledger, open_session
from wan_pipeline.outputs.audit import audit_outputs
from wan_pipeline.outputs.lineage import LINEAGE_PATH, write_lineage
from wan_pipeline.outputs.storage import LocalStorage, S3Storage, Storage, open_storage
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import HttpCall
from wan_pipeline.providers.registry import get_provider

ACCESS, SECRET, BUCKET = S3_ACCESS, S3_SECRET, S3_BUCKET


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("WAN_PIPELINE_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("WAN_PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05}))
    return s3_endpoint


def png(seed: int, size: tuple[int, int] = (256, 192)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (seed % 256, 90, 160)).save(out, format="PNG")
    return out.getvalue()


def test_s3_storage_round_trip_and_presigned_url_serves_the_bytes(s3_env: str) -> None:
    storage = open_storage(f"s3://{BUCKET}/roundtrip")
    assert isinstance(storage, S3Storage)
    data = png(1)
    uri = storage.put("media/a/file.png", data, "image/png")
    assert uri == f"s3://{BUCKET}/roundtrip/media/a/file.png"
    assert storage.get("media/a/file.png") == data
    assert storage.size("media/a/file.png") == len(data)
    assert storage.size("media/a/absent.png") is None
    stamp = storage.stamps("media/")
    assert list(stamp) == ["media/a/file.png"]  # one listing, relative to the storage's prefix
    assert storage.stamp("media/a/file.png") == stamp["media/a/file.png"]  # one file's, as the listing has it
    assert storage.stamp("media/a/absent.png") is None
    storage.put("media/a/file.png", png(2), "image/png")
    assert storage.stamps("media/")["media/a/file.png"] != stamp["media/a/file.png"]  # new content, new ETag
    storage.put("media/a/file.png", data, "image/png")

    url = storage.presign("media/a/file.png")
    assert url.startswith(f"{s3_env}/{BUCKET}/roundtrip/media/a/file.png?") and "Signature" in url
    assert httpx.get(url).content == data
    # The server checks signatures: a tampered one is refused.
    tampered = url.replace("Signature=", "Signature=0")
    assert httpx.get(tampered).status_code == 403


def write_reapi_dataset(root: Path, storage: str) -> Path:
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "room.png").write_bytes(png(7, (640, 480)))
    rows = [{"prompt_id": "plain", "prompt": "A lighthouse at dusk", "reference_images": ""},
            {"prompt_id": "edit", "prompt": "Make the room blue, keep the window", "reference_images": "refs/room.png"}]
    return write_dataset(root, rows, table="prompts.csv", spec_file="spec.yaml", name="s3_reapi", provider="reapi",
                         model="wan2.7-image", endpoint="emulator", seed=5, params={"resolution": "1K"},
                         storage=storage)


def test_url_only_host_gets_local_reference_as_presigned_s3_url_and_outputs_land_in_s3(
    s3_env: str, tmp_path: Path
) -> None:
    spec = load_spec(write_reapi_dataset(tmp_path, f"s3://{BUCKET}/datasets/s3_reapi"))
    plan = build_plan(spec)
    settings = EngineSettings(poll_initial_s=0.02, poll_max_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02)

    async def run() -> tuple[list[str], str]:
        async with open_session(spec, settings) as session:
            outcomes = await session.engine.run(list(plan.tasks))
            uri, _ = write_lineage(session.ledger, spec.name, session.storage)
            return [o.status for o in outcomes], uri

    statuses, lineage_uri = asyncio.run(run())
    assert statuses == ["stored", "stored"]

    storage = open_storage(spec.storage_root)
    table = pq.read_table(io.BytesIO(storage.get(LINEAGE_PATH))).to_pylist()
    assert lineage_uri == f"s3://{BUCKET}/datasets/s3_reapi/{LINEAGE_PATH}"
    assert {r["prompt_id"]: r["status"] for r in table} == {"plain": "succeeded", "edit": "succeeded"}
    for row in table:
        key = row["media_uri"].removeprefix(f"s3://{BUCKET}/datasets/s3_reapi/")
        data = storage.get(key)
        assert hashlib.sha256(data).hexdigest() == row["media_sha256"]
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert (img.width, img.height) == (row["width"], row["height"])

    # The file audit reads no object this process stored (each was hashed and decoded as it was stored, and its
    # stamp — size and ETag, from a HEAD — is the listing's), then only what changed (its ETag), and finds it.
    with open_ledger(spec) as ledger:
        first, second = (audit_outputs(ledger, spec.name, storage) for _ in range(2))
        key = table[0]["media_uri"].removeprefix(f"s3://{BUCKET}/datasets/s3_reapi/")
        storage.put(key, png(99), "image/png")
        third = audit_outputs(ledger, spec.name, storage)
    assert (first.read, second.read, third.read) == (0, 0, 1)
    assert first.problems == second.problems == [] and third.problems == [f"{table[0]['media_uri']}: SHA-256 differs "
                                                                          "from lineage"]  # fmt: skip

    # Lineage and the ledger record the s3:// URI the presigned URL signs, never the signature itself.
    edit = next(r for r in table if r["prompt_id"] == "edit")
    (uri,) = json.loads(edit["request_json"])["image_urls"]
    assert uri.startswith(f"s3://{BUCKET}/datasets/s3_reapi/references/")
    with open_ledger(spec) as ledger:
        recorded = " ".join(f"{a.request_json} {a.call_json}" for a in ledger.all_attempts(spec.name))
    for secret in ("Signature", "X-Amz", "AWSAccessKeyId", ACCESS):
        assert secret not in recorded and secret not in edit["request_json"]
    # What went on the wire is signed afresh from that URI, and serves the file.
    storage = open_storage(spec.storage_root)
    preparer = ReferencePreparer(get_provider("reapi"), storage, None)  # type: ignore[arg-type]
    call = HttpCall("POST", "/x", json_body={"image_urls": [uri], "n": 1})
    wire = preparer.signed(call)
    (url,) = wire.json_body["image_urls"]
    assert url.startswith(f"{s3_env}/{BUCKET}/datasets/s3_reapi/references/") and "Signature" in url
    assert httpx.get(url).content == (tmp_path / "refs" / "room.png").read_bytes()
    assert call.json_body == {"image_urls": [uri], "n": 1}  # the recorded call is unchanged


def test_local_reference_for_url_only_host_with_local_storage_is_refused_before_spending(tmp_path: Path) -> None:
    spec = load_spec(write_reapi_dataset(tmp_path, "./out"))
    with pytest.raises(InvalidInput) as info:
        build_plan(spec)
    (problem,) = info.value.problems
    assert (problem.row, problem.column) == (3, "reference_images")  # line 3 of prompts.csv
    assert "set `storage: s3://bucket/prefix`" in problem.reason
    assert not (tmp_path / "out").exists()


def test_a_failed_check_is_not_a_missing_file(s3_env: str) -> None:
    storage = open_storage(f"s3://{BUCKET}/checks")
    assert isinstance(storage, S3Storage)
    storage.put("media/a/file.png", png(2), "image/png")
    assert storage.size("media/a/absent.png") is None  # "not found": a definite answer
    bad = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1", aws_access_key_id=ACCESS,
                       aws_secret_access_key="not-the-secret")
    with pytest.raises(StorageUnavailable) as info:
        S3Storage(f"s3://{BUCKET}/checks", bad).size("media/a/file.png")
    assert "could not check" in info.value.message and "not-the-secret" not in str(info.value)


def test_stored_outputs_are_not_fetched_or_bought_again_when_storage_cannot_answer(
    s3_env: str, tmp_path: Path
) -> None:
    spec = load_spec(write_reapi_dataset(tmp_path, f"s3://{BUCKET}/datasets/recheck"))
    plan = build_plan(spec)
    settings = EngineSettings(poll_initial_s=0.02, poll_max_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02)
    bad = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1", aws_access_key_id=ACCESS,
                       aws_secret_access_key="not-the-secret")

    async def run(storage: Storage | None) -> list[str]:
        async with open_session(spec, settings, storage=storage) as session:
            outcomes = await session.engine.run(list(plan.tasks))
            return [o.status + ":" + (o.error.code if o.error else "") for o in outcomes]

    assert asyncio.run(run(None)) == ["stored:", "stored:"]
    with open_ledger(spec) as ledger:
        before = [(a.identity, a.attempt, a.state, a.submit_calls) for a in ledger.all_attempts(spec.name)]
    # The storage refuses every check: the outputs are neither downloaded again nor re-bought.
    assert asyncio.run(run(S3Storage(spec.storage_root, bad))) == ["failed:storage_unavailable"] * 2
    with open_ledger(spec) as ledger:
        after = [(a.identity, a.attempt, a.state, a.submit_calls) for a in ledger.all_attempts(spec.name)]
    assert after == before and all(state == "stored" for _, _, state, _ in after)
    assert asyncio.run(run(None)) == ["stored:", "stored:"]


def test_local_storage_tells_missing_from_unreadable(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert storage.size("media/a/absent.png") is None
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "file").write_bytes(b"x")
    assert storage.size("media/file/under-a-file.png") is None  # a file where a folder would be: surely absent
    loop = tmp_path / "media" / "loop.png"
    loop.symlink_to(loop)  # stat fails with ELOOP: the storage cannot say
    with pytest.raises(StorageUnavailable, match="could not check"):
        storage.size("media/loop.png")


def test_local_stamp_of_one_file_is_the_listing_s(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("media/a/file.png", b"x" * 10, "image/png")
    assert storage.stamp("media/a/file.png") == storage.stamps("media/")["media/a/file.png"]
    assert storage.stamp("media/a/absent.png") is None
