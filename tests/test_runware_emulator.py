"""The emulator speaks Runware's REST API as seed 004 and the Runware sheet describe it (DESIGN §10),
and the adapter, the engine and lineage work against it end to end."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from conftest import emulator_client, load_fixture, png_bytes, write_dataset
from PIL import Image

from wan_pipeline.emulator.app import IN_PROCESS_BASE
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.session import open_session
from wan_pipeline.execution.wire import Wire
from wan_pipeline.outputs.lineage import lineage_table
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import GenerationRequest, Reference, TaskStatus
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.runware import PROVIDER as RUNWARE

KEY = {"Authorization": "Bearer test-key"}
pytestmark = pytest.mark.emulator("runware", KEY)
INITIAL = 100_000
IMAGE = "alibaba:wan@2.7-image"
VIDEO = "alibaba:wan@2.7"


def new_uuid() -> str:
    return str(uuid.uuid4())


def image_task(**fields: Any) -> dict[str, Any]:
    task = {"taskType": "imageInference", "taskUUID": new_uuid(), "model": IMAGE, "positivePrompt": "a red fox",
            "width": 1024, "height": 1024, "seed": 7, "deliveryMethod": "async", "includeCost": True}
    task.update(fields)
    return {k: v for k, v in task.items() if v is not None}


def video_task(**fields: Any) -> dict[str, Any]:
    task = {"taskType": "videoInference", "taskUUID": new_uuid(), "model": VIDEO, "positivePrompt": "a paper boat",
            "width": 1280, "height": 720, "resolution": "720p", "duration": 2, "deliveryMethod": "async",
            "includeCost": True}
    task.update(fields)
    return {k: v for k, v in task.items() if v is not None}






async def post(client: httpx.AsyncClient, *tasks: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1", json=list(tasks))


async def get_response(client: httpx.AsyncClient, task_uuid: str) -> httpx.Response:
    return await post(client, {"taskType": "getResponse", "taskUUID": task_uuid})


async def wait_done(client: httpx.AsyncClient, task_uuid: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = (await get_response(client, task_uuid)).json()["data"]
        if all(i["status"] in ("success", "error") for i in items):
            return list(items)
        assert asyncio.get_running_loop().time() < deadline, "task still processing"
        await asyncio.sleep(0.02)


async def report(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/_emulator/report")).json())


async def set_faults(client: httpx.AsyncClient, **faults: Any) -> None:
    assert (await client.post("/_emulator/faults", json=faults)).status_code == 200


def assert_errors(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The sheet's envelope: {"errors": [{code, message, parameter?, taskType, taskUUID?, documentation}]}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("data", []) == []
    (err,) = body["errors"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert set(err) <= {"code", "message", "parameter", "taskType", "taskUUID", "documentation"}
    return dict(err)


# -- auth -----------------------------------------------------------------------------------------


async def test_missing_key_is_401_missing_api_key(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    err = assert_errors(await post(client, image_task()), 401, "missingApiKey")
    assert (err["parameter"], err["taskType"]) == ("apiKey", "authentication")
    assert (await report(client))["tasks_created"] == 0


async def test_wrong_key_is_401_invalid_api_key_with_the_sheets_message() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, api_keys=["right-key"]))
    async with emulator_client(state, "runware", KEY) as client:
        err = assert_errors(await post(client, image_task()), 401, "invalidApiKey")
        assert err == load_fixture("runware/sheet_error_invalid_api_key.json")["errors"][0]
        ok = await client.post("/v1", json=[image_task()], headers={"Authorization": "Bearer right-key"})
        assert ok.status_code == 200


async def test_authentication_element_first_in_the_array_authenticates() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, api_keys=["right-key"]))
    async with emulator_client(state, "runware", {}) as client:
        task = image_task()
        ok = await post(client, {"taskType": "authentication", "apiKey": "right-key"}, task)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]}
        assert_errors(await post(client, {"taskType": "authentication", "apiKey": "nope"}, image_task()),
                      401, "invalidApiKey")


# -- strict validation ----------------------------------------------------------------------------

PALETTE = [{"hex": "#1E2A39", "ratio": "34%"}, {"hex": "#C6A15B", "ratio": "26%"},
           {"hex": "#E8E1D6", "ratio": "22%"}, {"hex": "#2F6B5F", "ratio": "18%"}]


@pytest.mark.parametrize(
    ("task", "code", "parameter"),
    [
        (image_task(width=700), "invalidWidth", "width"),
        (image_task(height=1030), "invalidHeight", "height"),
        (image_task(width=4096, model="alibaba:wan@2.7-image-pro"), "invalidWidth", "width"),
        (image_task(width=None), "missingWidth", "width"),
        (image_task(positivePrompt=None), "missingPositivePrompt", "positivePrompt"),
        (image_task(positivePrompt="x" * 3001), "invalidPositivePromptLength", "positivePrompt"),
        (image_task(seed=-1), "invalidSeed", "seed"),
        (image_task(seed=2147483648), "invalidSeed", "seed"),
        (image_task(taskUUID="not-a-uuid"), "invalidTaskUUID", "taskUUID"),
        (image_task(taskUUID=str(uuid.uuid1())), "invalidTaskUUID", "taskUUID"),
        (image_task(taskUUID=None), "missingTaskUUID", "taskUUID"),
        (image_task(safety={"checkContent": True, "mode": "thorough"}), "invalidSafety", "safety"),
        (image_task(style="vivid"), "unknownParameter", "style"),
        (image_task(model="alibaba:wan@2.6-image"), "unknownModel", "model"),
        (image_task(model=VIDEO), "invalidModel", "model"),
        (image_task(numberResults=21), "invalidNumberResults", "numberResults"),
        (image_task(outputFormat="GIF"), "invalidOutputFormat", "outputFormat"),
        (image_task(outputQuality=10), "invalidOutputQuality", "outputQuality"),
        (image_task(deliveryMethod="stream"), "invalidDeliveryMethod", "deliveryMethod"),
        (image_task(ttl=30), "invalidTtl", "ttl"),
        (image_task(settings={"colorPalette": PALETTE[:2]}), "invalidColorPalette", "settings.colorPalette"),
        (image_task(settings={"colorPalette": [*PALETTE[:3], {"hex": "#000000", "ratio": "8%"}]}),
         "invalidColorPalette", "settings.colorPalette"),
        (image_task(settings={"thinking": "yes"}), "invalidThinking", "settings.thinking"),
        (image_task(settings={"watermark": False}), "unknownParameter", "settings.watermark"),
        (image_task(settings={"editRegions": [[[1, 1, 5, 5]]]}), "invalidEditRegions", "settings.editRegions"),
        (image_task(settings={"editRegions": [[{"x1": 1, "y1": 1, "x2": 5, "y2": 5}]]},
                    inputs={"referenceImages": ["https://x/a.jpg"]}), "invalidEditRegions", "settings.editRegions"),
        (image_task(inputs={"referenceImages": [f"https://x/{i}.jpg" for i in range(10)]}),
         "invalidReferenceImages", "inputs.referenceImages"),
        (image_task(inputs={"referenceImages": [str(uuid.uuid4())]}), "invalidReferenceImages",
         "inputs.referenceImages[0]"),
        (image_task(inputs={"referenceImages": ["data:image/png;base64,bm90IGFuIGltYWdl"]}),
         "invalidReferenceImages", "inputs.referenceImages[0]"),
        (image_task(inputs={"frameImages": []}), "unknownParameter", "inputs.frameImages"),
        (video_task(width=1024, height=1024), "invalidWidth", "width"),
        (video_task(resolution="1080p"), "invalidResolution", "resolution"),
        (video_task(duration=16), "invalidDuration", "duration"),
        (video_task(duration=12, width=None, height=None, inputs={"video": "https://x/v.mp4"}), "invalidDuration",
         "duration"),
        (video_task(inputs={"frameImages": [{"image": "https://x/a.jpg", "frame": "first"}]}),
         "incompatibleParameters", "width"),
        (video_task(width=None, height=None, inputs={"frameImages": ["https://x/a.jpg"],
                                                     "referenceImages": ["https://x/b.jpg"]}),
         "incompatibleParameters", "inputs.frameImages"),
        (video_task(settings={"shotType": "multi"}), "incompatibleParameters", "settings.shotType"),
        (video_task(outputFormat="WEBM"), "unsupportedOutputFormat", "outputFormat"),
        (video_task(outputType="dataURI"), "invalidOutputType", "outputType"),
        (video_task(width=None, height=None), "missingWidth", "width"),
        (video_task(positivePrompt=None), "missingPositivePrompt", "positivePrompt"),
        (video_task(model=IMAGE), "invalidModel", "model"),
    ],
)
async def test_invalid_task_is_400_with_the_parameter_and_charges_nothing(
    client: httpx.AsyncClient, task: dict[str, Any], code: str, parameter: str
) -> None:
    err = assert_errors(await post(client, task), 400, code)
    assert err["parameter"] == parameter
    assert err["taskType"] == task["taskType"]
    assert err["documentation"].startswith("https://runware.ai/docs/")
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"], rep["balance"]) == (0, 0, INITIAL)


async def test_body_must_be_a_json_array_of_tasks(client: httpx.AsyncClient) -> None:
    assert_errors(await client.post("/v1", json=image_task()), 400, "invalidRequestBody")
    assert_errors(await client.post("/v1", content=b"[not json", headers={"Content-Type": "application/json"}),
                  400, "invalidRequestBody")
    assert_errors(await post(client, {"taskType": "modelSearch", "taskUUID": new_uuid()}), 400, "unsupportedTaskType")


@pytest.mark.parametrize("name", ["glasshouse", "basalt", "kites", "carnival"])
async def test_each_seed_004_example_is_accepted(client: httpx.AsyncClient, name: str) -> None:
    task = load_fixture(f"runware/seed004_{name}_request.json")
    response = await post(client, task)
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]  # sync is the default delivery: the finished result
    expected = load_fixture(f"runware/seed004_{name}_result.json")
    assert set(item) == set(expected) - {"cost"}  # the seed's request sends no includeCost
    assert (item["taskUUID"], item["seed"]) == (expected["taskUUID"], expected["seed"])


async def test_safety_is_accepted_as_seed_004_documents_it(client: httpx.AsyncClient) -> None:
    # The sheet's community note says Alibaba models refuse `safety`; the seed lists it: the seed wins.
    assert (await post(client, image_task(safety={"checkContent": True, "mode": "fast"}))).status_code == 200


async def test_region_edit_with_the_sheets_boxes_is_accepted(client: httpx.AsyncClient) -> None:
    task = image_task(settings=load_fixture("runware/sheet_region_edit_settings.json")["settings"],
                      inputs={"referenceImages": ["https://x/a.jpg"]})
    assert (await post(client, task)).status_code == 200


# -- task life cycle ------------------------------------------------------------------------------


async def test_async_task_acks_then_processing_then_success_with_url_seed_and_cost() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "runware", KEY) as client:
        task = image_task()
        ack = await post(client, task)
        assert ack.status_code == 200
        assert ack.json() == {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]}
        head = {"taskType": "imageInference", "taskUUID": task["taskUUID"]}
        assert (await get_response(client, task["taskUUID"])).json() == {"data": [{**head, "status": "processing"}]}
        state.tasks[task["taskUUID"]].created_at -= 90  # past the queue: still processing
        assert (await get_response(client, task["taskUUID"])).json()["data"][0]["status"] == "processing"
        state.tasks[task["taskUUID"]].created_at -= 60
        (item,) = (await get_response(client, task["taskUUID"])).json()["data"]
        assert set(item) == {"taskType", "taskUUID", "status", "imageUUID", "imageURL", "seed", "cost"}
        assert (item["status"], item["seed"], item["cost"]) == ("success", 7, 0.03)
        assert item["imageURL"] == f"{IN_PROCESS_BASE}/_media/{task['taskUUID']}/0.jpg"
        assert uuid.UUID(item["imageUUID"]).version == 4


async def test_sync_delivery_holds_the_request_and_answers_the_sheets_sync_shape(client: httpx.AsyncClient) -> None:
    task = image_task(deliveryMethod="sync")
    (item,) = (await post(client, task)).json()["data"]
    assert set(item) == set(load_fixture("runware/sheet_sync_response.json")["data"][0])
    assert (item["cost"], item["seed"]) == (0.03, 7)


async def test_without_include_cost_no_cost_is_reported(client: httpx.AsyncClient) -> None:
    task = image_task(includeCost=None)
    await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    assert "cost" not in item


async def test_unknown_task_uuid_is_404_task_failed_or_not_found(client: httpx.AsyncClient) -> None:
    uid = new_uuid()
    err = assert_errors(await get_response(client, uid), 404, "taskFailedOrNotFound")
    assert (err["taskType"], err["taskUUID"]) == ("getResponse", uid)


async def test_a_reused_task_uuid_is_refused_and_billed_once(client: httpx.AsyncClient) -> None:
    task = image_task()
    assert (await post(client, task)).status_code == 200
    err = assert_errors(await post(client, task), 400, "conflictTaskUUID")
    assert err["taskUUID"] == task["taskUUID"]
    assert_errors(await post(client, {**task, "seed": 8}), 400, "conflictTaskUUID")
    rep = await report(client)
    assert rep["tasks_created"] == 1
    assert rep["requests_by_idempotency_key"] == {task["taskUUID"]: 3}
    assert rep["credits_charged"] == pytest.approx(0.03)


async def test_number_results_gives_that_many_items_with_their_own_seeds_and_costs(client: httpx.AsyncClient) -> None:
    task = image_task(numberResults=3, model="alibaba:wan@2.7-image-pro", settings={"sequential": True})
    await post(client, task)
    items = await wait_done(client, task["taskUUID"])
    assert [i["seed"] for i in items] == [7, 8, 9]
    assert [i["cost"] for i in items] == [0.075] * 3
    assert len({i["imageURL"] for i in items}) == 3
    assert (await report(client))["credits_charged"] == pytest.approx(0.225)


@pytest.mark.parametrize(("fmt", "pil"), [(None, "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP")])
async def test_result_image_decodes_at_the_requested_size_and_format(
    client: httpx.AsyncClient, fmt: str | None, pil: str
) -> None:
    task = image_task(width=1360, height=768, outputFormat=fmt)
    await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    media = await client.get(item["imageURL"])
    assert media.status_code == 200
    image = Image.open(io.BytesIO(media.content))
    image.load()
    assert (image.format, image.size) == (pil, (1360, 768))


async def test_base64_output_type_carries_the_image_inline(client: httpx.AsyncClient) -> None:
    task = image_task(outputType="base64Data", width=768, height=768)
    await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    assert "imageURL" not in item
    assert Image.open(io.BytesIO(base64.b64decode(item["imageBase64Data"]))).size == (768, 768)


async def test_text_to_video_is_a_real_mp4_at_size_duration_and_30_fps(client: httpx.AsyncClient) -> None:
    task = video_task()
    assert (await post(client, task)).json() == {"data": [{"taskType": "videoInference",
                                                           "taskUUID": task["taskUUID"]}]}
    (item,) = await wait_done(client, task["taskUUID"])
    assert set(item) == set(load_fixture("runware/sheet_video_success.json")["data"][0])
    assert item["cost"] == pytest.approx(0.2)  # sheet: 2 s @720p = $0.20
    media = await client.get(item["videoURL"])
    assert media.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(media.content), mode="r") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        assert float(stream.average_rate or 0) == 30.0
    assert frames == 60


async def test_image_upload_gives_a_uuid_usable_as_reference_and_frame(client: httpx.AsyncClient) -> None:
    upload = {"taskType": "imageUpload", "taskUUID": new_uuid(),
              "image": "data:image/png;base64," + base64.b64encode(png_bytes(size=(90, 160))).decode()}
    response = await post(client, upload)
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]
    assert set(item) == set(load_fixture("runware/sheet_upload_response.json")["data"][0])
    image_uuid = item["imageUUID"]
    assert (await post(client, image_task(inputs={"referenceImages": [image_uuid]}))).status_code == 200
    # image-to-video: no size given, the output follows the first frame (9:16 → 720x1280)
    task = video_task(width=None, height=None, inputs={"frameImages": [{"image": image_uuid, "frame": "first"}]})
    assert (await post(client, task)).status_code == 200, "frameImages with an uploaded UUID"
    (done,) = await wait_done(client, task["taskUUID"])
    with av.open(io.BytesIO((await client.get(done["videoURL"])).content), mode="r") as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.width, ctx.height) == (720, 1280)
    # the upload's taskUUID is used too
    assert_errors(await post(client, upload), 400, "conflictTaskUUID")


async def test_video_edit_is_billed_on_input_and_output_seconds(client: httpx.AsyncClient) -> None:
    task = video_task(width=None, height=None, duration=3, inputs={"video": "https://x/in.mp4"})
    await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    assert item["cost"] == pytest.approx(0.6)


async def test_a_batch_scopes_errors_to_their_task(client: httpx.AsyncClient) -> None:
    good, bad = image_task(), image_task(width=1)
    response = await post(client, good, bad)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == [{"taskType": "imageInference", "taskUUID": good["taskUUID"]}]
    assert [(x["code"], x["taskUUID"]) for x in body["errors"]] == [("invalidWidth", bad["taskUUID"])]


async def test_insufficient_balance_is_402_and_creates_nothing(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_emulator/config", json={"balance": 0.02})).status_code == 200
    err = assert_errors(await post(client, image_task()), 402, "insufficientCredits")
    assert "0.03" in err["message"]
    assert (await report(client))["tasks_created"] == 0


# -- fault injection ------------------------------------------------------------------------------


async def test_rate_limit_fault_is_429_with_retry_after_then_clears(client: httpx.AsyncClient) -> None:
    await set_faults(client, rate_limit={"next": 1}, retry_after_s=3)
    task = image_task()
    limited = await post(client, task)
    assert_errors(limited, 429, "rateLimitExceeded")
    assert limited.headers["Retry-After"] == "3"
    assert (await post(client, task)).status_code == 200  # nothing was created: the same taskUUID is free
    rep = await report(client)
    assert (rep["tasks_created"], rep["faults_injected"]) == (1, {"rate_limit": 1})


async def test_server_error_fault_is_503_on_create_and_poll(client: httpx.AsyncClient) -> None:
    task = image_task()
    await post(client, task)
    await set_faults(client, server_error={"next": 2})
    assert_errors(await post(client, image_task()), 503, "serverUnavailable")
    assert_errors(await get_response(client, task["taskUUID"]), 503, "serverUnavailable")
    assert (await get_response(client, task["taskUUID"])).status_code == 200
    assert (await report(client))["tasks_created"] == 1


async def test_drop_fault_loses_the_answer_but_the_task_exists_and_is_found_by_get_response(
    client: httpx.AsyncClient,
) -> None:
    await set_faults(client, drop={"next": 1})
    task = image_task()
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    assert item["status"] == "success"
    assert_errors(await post(client, task), 400, "conflictTaskUUID")  # a blind re-send buys nothing
    assert (await report(client))["credits_charged"] == pytest.approx(0.03)


@pytest.mark.parametrize(("fault", "code"), [("fail_task", "inferenceError"),
                                             ("reject_content", "contentPolicyViolation")])
async def test_failed_task_is_an_error_item_and_is_refunded(client: httpx.AsyncClient, fault: str, code: str) -> None:
    await set_faults(client, **{fault: {"next": 1}})
    task = image_task()
    await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    assert item == {"taskType": "imageInference", "taskUUID": task["taskUUID"], "status": "error",
                    "error": {"code": code, "message": item["error"]["message"]}}
    await get_response(client, task["taskUUID"])  # polling again refunds nothing more
    rep = await report(client)
    assert (rep["credits_charged"], rep["credits_refunded"], rep["balance"]) == (0.03, 0.03, INITIAL)
    assert (await client.get(f"/_media/{task['taskUUID']}/0.jpg")).status_code == 404


async def test_truncate_fault_delivers_less_than_content_length(client: httpx.AsyncClient) -> None:
    task = image_task()
    await post(client, task)
    (item,) = await wait_done(client, task["taskUUID"])
    full = (await client.get(item["imageURL"])).content
    await set_faults(client, truncate={"next": 1})
    cut = await client.get(item["imageURL"])
    assert int(cut.headers["content-length"]) == len(full) and cut.content == full[: len(full) // 2]


# -- the adapter against the emulator ---------------------------------------------------------------


async def test_adapter_submit_accepted_poll_state_round_trip(state: EmulatorState) -> None:
    body = load_fixture("runware/seed004_kites_request.json")
    params = NeutralParams(width=1024, height=1024, seed=37913, thinking=True,
                           color_palette=body["settings"]["colorPalette"], regions=body["settings"]["editRegions"],
                           reference_images=body["inputs"]["referenceImages"])
    refs = tuple(Reference(kind="image", source=u, url=u) for u in body["inputs"]["referenceImages"])
    request = GenerationRequest(IMAGE, body["positivePrompt"], params, refs)
    async with emulator_client(state, "runware", {}) as client:
        wire = Wire(client, IN_PROCESS_BASE, RUNWARE.auth_headers("k"))
        call = RUNWARE.submit(request, "wanp-kites-1")
        accepted = RUNWARE.accepted(await wire.send(call))
        assert (accepted.status, accepted.task_id) == (TaskStatus.PENDING,
                                                       RUNWARE.presubmit_task_id(request, "wanp-kites-1"))
        for _ in range(200):
            snap = RUNWARE.state(await wire.send(RUNWARE.poll(accepted.task_id)))
            if snap.status is not TaskStatus.PENDING:
                break
            await asyncio.sleep(0.02)
        assert snap.status is TaskStatus.SUCCEEDED
        assert (snap.cost_usd, snap.provider_seed, len(snap.output_urls)) == (0.03, 37913, 1)
        data = await wire.download(snap.output_urls[0])
        assert Image.open(io.BytesIO(data)).size == (1024, 1024)
        # re-sending the same call is refused as a conflict, and the adapter says so
        again = await wire.send(call)
        assert type(RUNWARE.error(again)).__name__ == "IdempotencyConflict"
        # polling a taskUUID the host never saw is a rejection: the engine then re-sends its recorded call
        unknown = await wire.send(RUNWARE.poll(str(uuid.uuid4())))
        assert unknown.status == 404
        assert type(RUNWARE.error(unknown)).__name__ == "RejectedByProvider"


async def test_adapter_upload_round_trip_feeds_reference_images(state: EmulatorState, tmp_path: Path) -> None:
    path = tmp_path / "ref.png"
    path.write_bytes(png_bytes(size=(64, 64)))
    ref = Reference(kind="image", source="ref.png", path=path, mime_type="image/png")
    async with emulator_client(state, "runware", {}) as client:
        wire = Wire(client, IN_PROCESS_BASE, RUNWARE.auth_headers("k"))
        call = RUNWARE.upload(IMAGE, ref, path.read_bytes())
        assert call is not None
        done = RUNWARE.uploaded(ref, await wire.send(call))
        request = GenerationRequest(IMAGE, "edit", NeutralParams(seed=1, reference_images=["ref.png"]), (done,))
        reply = await wire.send(RUNWARE.submit(request, "wanp-upload-1"))
        assert reply.status == 200, reply.body
        assert RUNWARE.accepted(reply).status is TaskStatus.PENDING


async def test_adapter_reads_the_emulators_failures_and_errors(client: httpx.AsyncClient) -> None:
    await set_faults(client, reject_content={"next": 1})
    request = GenerationRequest(IMAGE, "p", NeutralParams(seed=1))
    call = RUNWARE.submit(request, "wanp-x")
    response = await client.post("/v1", json=call.json_body)
    task_uuid = RUNWARE.presubmit_task_id(request, "wanp-x")
    await wait_done(client, task_uuid)
    poll = await client.post("/v1", json=RUNWARE.poll(task_uuid).json_body)
    from wan_pipeline.providers.base import HttpReply

    snap = RUNWARE.state(HttpReply(poll.status_code, dict(poll.headers), poll.content))
    assert (snap.status, type(snap.error).__name__) == (TaskStatus.FAILED, "ContentRejected")
    bad = await client.post("/v1", json=[image_task(width=1)])
    err = RUNWARE.error(HttpReply(bad.status_code, dict(bad.headers), bad.content))
    assert (type(err).__name__, err.code, err.details["parameter"]) == ("RejectedByProvider", "invalidWidth", "width")
    assert response.status_code == 200


# -- end to end: plan → engine → storage → lineage ------------------------------------------------


#: the spec fields every dataset of this module shares
EMULATED = {"provider": "runware", "endpoint": "emulator"}
ONE_K = {"aspect_ratio": "1:1", "resolution": "1K"}


def reference_png(directory: Path) -> None:
    """`ref.png` beside the specs, for rows whose reference_images name it."""
    (directory / "ref.png").write_bytes(png_bytes(size=(120, 90)))


FAST = EngineSettings(poll_initial_s=0.01, poll_max_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02,
                      submits_per_second=200)


async def run_spec(path: Path) -> tuple[Any, list[Any], list[dict[str, Any]], dict[str, Any]]:
    spec = load_spec(path)
    plan = build_plan(spec)
    async with open_session(spec, FAST) as session:
        outcomes = await session.engine.run(list(plan.tasks))
        rows = lineage_table(session.ledger, spec.name).to_pylist()
    from wan_pipeline.execution.endpoints import state_dir

    emu = EmulatorState(EmulatorConfig(state_path=str(state_dir(spec) / "emulator_state.json")))
    return plan, outcomes, rows, emu.report()


async def test_engine_end_to_end_image_model_stores_decodable_files_and_lineage(e2e_env: Path) -> None:
    reference_png(e2e_env)
    rows = [
        {"prompt_id": "fox", "prompt": "A red fox at dawn"},
        {"prompt_id": "wide", "prompt": "A wide desert", "aspect_ratio": "16:9"},
        {"prompt_id": "edit", "prompt": "Make it night", "reference_images": '["ref.png"]'},
        {"prompt_id": "kites", "prompt": "Kites in the marked sky", "reference_images": '["ref.png"]',
         "regions": "[[[10, 10, 60, 40]]]", "color_palette": json.dumps(PALETTE)},
    ]
    spec = write_dataset(e2e_env, rows, name="rw_images", model=IMAGE, params=ONE_K, budget={"max_usd": 5}, **EMULATED)
    plan, outcomes, lineage, rep = await run_spec(spec)

    assert [o.status for o in outcomes] == ["stored"] * 4, [str(o.error) for o in outcomes]
    sizes = {o.task.prompt_id: (o.outputs[0].width, o.outputs[0].height) for o in outcomes}
    assert sizes == {"fox": (1024, 1024), "wide": (1360, 768), "edit": (1024, 1024), "kites": (1024, 1024)}
    for o in outcomes:
        (out,) = o.outputs
        with Image.open(out.media_uri) as img:
            img.load()
            assert (img.format, img.size) == ("JPEG", (out.width, out.height))
    assert {r["prompt_id"]: r["mode"] for r in lineage} == {
        "fox": "text_to_image", "wide": "text_to_image", "edit": "image_edit", "kites": "region_edit"}
    for r in lineage:
        assert (r["status"], r["provider"], r["model"], r["cost_usd"], r["cost_source"]) == (
            "succeeded", "runware", IMAGE, 0.03, "reported")
        assert r["provider_seed"] == r["seed"]
        assert r["task_id"] == json.loads(r["request_json"])[0]["taskUUID"]
        assert r["credits_final"] is None
    # each output bought once, under the taskUUID recorded before sending; references went up by imageUpload
    assert rep["tasks_created"] == 4 and set(rep["tasks_by_idempotency_key"].values()) == {1}
    assert rep["credits_charged"] == pytest.approx(sum(r["cost_usd"] for r in lineage))
    edit = json.loads(next(r for r in lineage if r["prompt_id"] == "edit")["request_json"])[0]
    assert uuid.UUID(edit["inputs"]["referenceImages"][0]).version == 4
    assert plan.estimate().usd == pytest.approx(0.12)


async def test_engine_end_to_end_video_model(e2e_env: Path) -> None:
    reference_png(e2e_env)
    rows = [
        {"prompt_id": "boat", "prompt": "A paper boat drifting down a street"},
        {"prompt_id": "wake", "prompt": "The scene comes alive", "reference_images": '["ref.png"]'},
    ]
    spec = write_dataset(e2e_env, rows, name="rw_videos", model=VIDEO, params={"resolution": "720p", "duration": 2},
                         **EMULATED)
    _, outcomes, lineage, rep = await run_spec(spec)

    assert [o.status for o in outcomes] == ["stored"] * 2, [str(o.error) for o in outcomes]
    by_id = {o.task.prompt_id: o.outputs[0] for o in outcomes}
    assert (by_id["boat"].width, by_id["boat"].height, by_id["boat"].mime_type) == (1280, 720, "video/mp4")
    # image-to-video follows the 4:3 first frame: the nearest allowed 720p pair
    assert (by_id["wake"].width, by_id["wake"].height) == (1088, 832)
    for out in by_id.values():
        assert out.duration_s == pytest.approx(2.0) and out.fps == 30.0
    assert {r["prompt_id"]: (r["mode"], r["cost_usd"]) for r in lineage} == {
        "boat": ("text_to_video", pytest.approx(0.2)), "wake": ("image_to_video", pytest.approx(0.2))}
    assert rep["tasks_created"] == 2
    assert rep["credits_charged"] == pytest.approx(0.4)


async def test_rerun_submits_nothing_and_a_crash_before_the_answer_is_adopted_by_get_response(
    e2e_env: Path,
) -> None:
    spec_path = write_dataset(e2e_env, [{"prompt_id": "a", "prompt": "A lighthouse"}], name="rw_resume", model=IMAGE,
                              params=ONE_K, **EMULATED)
    spec = load_spec(spec_path)
    (task,) = build_plan(spec).tasks
    # Another process recorded the attempt (SUBMITTING, with its taskUUID) and sent it, then died.
    from wan_pipeline.emulator.app import in_process
    from wan_pipeline.execution.endpoints import emulator_config_for
    from wan_pipeline.execution.engine import TaskEngine
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.storage import open_storage

    emu_state, transport = in_process(emulator_config_for(spec), "runware")
    ledger = open_ledger(spec)
    engine = TaskEngine(RUNWARE, None, ledger, open_storage(spec.storage_root), spec.budget, FAST)  # type: ignore[arg-type]
    call = await engine.submitter._record_new(task, 1)  # recorded with its taskUUID, as before a send
    recorded = ledger.latest(task.identity)
    assert recorded is not None
    presubmitted = recorded.task_id
    ledger.close()
    async with httpx.AsyncClient(transport=transport) as client:
        sent = await Wire(client, IN_PROCESS_BASE, RUNWARE.auth_headers("k")).send(call)
        assert sent.status == 200
    assert presubmitted == call.json_body[0]["taskUUID"]

    _, outcomes, lineage, rep = await run_spec(spec_path)
    assert [o.status for o in outcomes] == ["stored"]
    assert rep["tasks_created"] == 1 and rep["requests_by_idempotency_key"] == {presubmitted: 1}
    assert lineage[0]["task_id"] == presubmitted
    # and a plain re-run buys nothing
    _, again, _, rep2 = await run_spec(spec_path)
    assert [o.submitted_now for o in again] == [0]
    assert rep2["tasks_created"] == 1
    assert emu_state.report()["tasks_created"] == 1  # the first process's view: one task, then nothing more


async def test_the_example_spec_runs_on_the_emulator(e2e_env: Path) -> None:
    import shutil

    shutil.copytree(Path(__file__).resolve().parent.parent / "examples", e2e_env / "examples")
    plan, outcomes, lineage, rep = await run_spec(e2e_env / "examples" / "runware.yaml")
    assert [o.status for o in outcomes] == ["stored"] * len(plan.tasks), [str(o.error) for o in outcomes]
    assert (e2e_env / "wan_output" / "runware" / "media").is_dir()
    modes = {r["prompt_id"]: r["mode"] for r in lineage}
    assert (modes["desert_kites"], modes["harbor_night"], modes["fox_dawn"]) == (
        "region_edit", "image_edit", "text_to_image")
    portrait = next(o for o in outcomes if o.task.prompt_id == "portrait").outputs[0]
    assert (portrait.width, portrait.height) == (1536, 2048)  # 3:4 at 2K, brought inside 2048
    assert rep["credits_charged"] == pytest.approx(0.03 * len(plan.tasks))
    assert sum(r["cost_usd"] for r in lineage) == pytest.approx(rep["credits_charged"])


# -- the engine against the emulator's faults ------------------------------------------------------


def emulate(monkeypatch: pytest.MonkeyPatch, **faults: Any) -> None:
    config: dict[str, Any] = {"queue_s": 0, "process_s": 0.05, "faults": {**faults, "retry_after_s": 0.01}}
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps(config))


def one_image_spec(directory: Path, name: str, prompts: int = 1) -> Path:
    rows = [{"prompt_id": f"p{i}", "prompt": f"A lighthouse number {i}"} for i in range(prompts)]
    return write_dataset(directory, rows, name=name, model=IMAGE, params=ONE_K, budget={"max_usd": 1}, **EMULATED)


@pytest.mark.parametrize("fault", ["rate_limit", "server_error"])
async def test_refused_creates_are_resent_with_the_same_task_uuid_and_bought_once(
    e2e_env: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    emulate(monkeypatch, **{fault: {"next": 2}})
    _, outcomes, lineage, rep = await run_spec(one_image_spec(e2e_env, f"rw_{fault}"))
    assert [o.status for o in outcomes] == ["stored"]
    (uid,) = rep["requests_by_idempotency_key"]
    assert rep["requests_by_idempotency_key"][uid] == 3 and rep["tasks_created"] == 1
    assert lineage[0]["task_id"] == uid and rep["credits_charged"] == pytest.approx(0.03)


async def test_failed_generation_is_resubmitted_under_a_new_task_uuid_with_the_same_seed(
    e2e_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulate(monkeypatch, fail_task={"next": 1})
    _, outcomes, lineage, rep = await run_spec(one_image_spec(e2e_env, "rw_fail"))
    assert [o.status for o in outcomes] == ["stored"]
    rows = sorted(lineage, key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"], r["error_code"]) for r in rows] == [
        (1, "failed", "inferenceError"), (2, "succeeded", None)]
    assert rows[0]["seed"] == rows[1]["seed"] and rows[0]["task_id"] != rows[1]["task_id"]
    assert (rep["tasks_created"], rep["credits_charged"], rep["credits_refunded"]) == (2, 0.06, 0.03)
    assert rows[1]["cost_usd"] == 0.03


async def test_content_rejection_is_permanent(e2e_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulate(monkeypatch, reject_content={"next": 1})
    _, outcomes, lineage, rep = await run_spec(one_image_spec(e2e_env, "rw_reject"))
    assert [o.status for o in outcomes] == ["failed"]
    assert type(outcomes[0].error).__name__ == "ContentRejected"
    assert [(r["status"], r["error_code"]) for r in lineage] == [("failed", "contentPolicyViolation")]
    assert rep["tasks_created"] == 1


async def test_truncated_download_is_fetched_again_without_buying_again(
    e2e_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulate(monkeypatch, truncate={"next": 1})
    _, outcomes, _, rep = await run_spec(one_image_spec(e2e_env, "rw_truncate"))
    assert [o.status for o in outcomes] == ["stored"]
    with Image.open(outcomes[0].outputs[0].media_uri) as img:
        img.load()  # the stored file is whole
    assert rep["tasks_created"] == 1  # (the report is reloaded from disk: injected faults are not persisted)


async def test_a_dropped_create_is_never_bought_twice(e2e_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulate(monkeypatch, drop={"next": 1})
    spec = one_image_spec(e2e_env, "rw_drop")
    await run_spec(spec)
    emulate(monkeypatch)
    _, _, _, rep = await run_spec(spec)
    # The re-sent taskUUID is refused (conflictTaskUUID): one task, billed once, whatever the engine did next.
    assert rep["tasks_created"] == 1
    assert rep["credits_charged"] == pytest.approx(0.03)


async def test_a_dropped_create_is_adopted_by_get_response(e2e_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulate(monkeypatch, drop={"next": 1})
    _, outcomes, _, rep = await run_spec(one_image_spec(e2e_env, "rw_adopt"))
    assert [o.status for o in outcomes] == ["stored"]
    assert rep["tasks_created"] == 1


async def test_sync_delivery_through_provider_params_finishes_at_submission(e2e_env: Path) -> None:
    rows = [{"prompt_id": "s", "prompt": "A quiet harbor"}]
    params = {"aspect_ratio": "1:1", "resolution": "1K", "provider_params": {"deliveryMethod": "sync"}}
    _, outcomes, lineage, rep = await run_spec(write_dataset(e2e_env, rows, name="rw_sync", model=IMAGE, params=params,
                                                             **EMULATED))
    assert [o.status for o in outcomes] == ["stored"]
    assert json.loads(lineage[0]["request_json"])[0]["deliveryMethod"] == "sync"
    assert (lineage[0]["cost_usd"], rep["tasks_created"]) == (0.03, 1)


async def test_engine_makes_reference_to_video_from_an_uploaded_image_and_a_size(e2e_env: Path) -> None:
    reference_png(e2e_env)
    rows = [{"prompt_id": "r2v", "prompt": "The character from image 1 walks through a market",
             "reference_images": '["ref.png"]', "aspect_ratio": "9:16"}]
    path = write_dataset(e2e_env, rows, name="rw_r2v", model=VIDEO, params={"resolution": "720p", "duration": 2},
                         **EMULATED)
    _, outcomes, lineage, rep = await run_spec(path)
    assert [o.status for o in outcomes] == ["stored"], [str(o.error) for o in outcomes]
    (row,) = lineage
    assert (row["mode"], row["mime_type"]) == ("reference_to_video", "video/mp4")
    assert (row["width"], row["height"]) == (720, 1280)
    (task,) = json.loads(row["request_json"])[-1:]
    assert set(task["inputs"]) == {"referenceImages"} and (task["width"], task["height"]) == (720, 1280)
    assert rep["tasks_created"] == 1
