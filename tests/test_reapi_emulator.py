"""The emulator speaks reAPI as seed 003 and the reAPI sheet describe it (DESIGN §10), and the adapter,
the engine and lineage work against it end to end."""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from conftest import emulator_client, write_dataset
from PIL import Image

from wan_pipeline import errors as e
from wan_pipeline.emulator.app import IN_PROCESS_BASE, in_process
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.reapi import EMULATED_USD_PER_IMAGE, EMULATED_USD_PER_SECOND
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState, EmuTask
from wan_pipeline.execution.engine import EngineSettings, TaskEngine
from wan_pipeline.execution.session import open_ledger, open_session
from wan_pipeline.execution.wire import Wire
from wan_pipeline.outputs.lineage import lineage_table
from wan_pipeline.outputs.storage import LocalStorage
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import GenerationRequest, HttpCall, HttpReply, Reference, TaskSnapshot, TaskStatus
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.reapi import PROVIDER as REAPI
from wan_pipeline.providers.sizes import image_size, video_size

IMAGES = "/api/v1/images/generations"
VIDEOS = "/api/v1/videos/generations"
TASKS = "/api/v1/tasks"
KEY = {"Authorization": "Bearer rk_live_test"}
pytestmark = pytest.mark.emulator("reapi", KEY)
INITIAL = 100_000
STD_CREDITS = round(EMULATED_USD_PER_IMAGE["wan2.7-image"] * 1000)
PRO_CREDITS = round(EMULATED_USD_PER_IMAGE["wan2.7-image-pro"] * 1000)
FAST_ENGINE = EngineSettings(poll_initial_s=0.01, poll_max_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02)


def image_body(prompt: str = "a red fox at dawn", **fields: Any) -> dict[str, Any]:
    return {"model": "wan2.7-image", "prompt": prompt, "size": "1:1", "resolution": "1K", "n": 1, "seed": 1, **fields}


def video_body(**fields: Any) -> dict[str, Any]:
    return {"model": "wan2.7-video", "prompt": "a paper boat on a rainy street", "resolution": "720P", "duration": 2,
            **fields}






async def create(client: httpx.AsyncClient, body: Any = None, path: str = IMAGES, key: str | None = None
                 ) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post(path, json=image_body() if body is None else body, headers=headers)


async def wait_terminal(client: httpx.AsyncClient, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        data: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if data["status"] in ("completed", "failed"):
            return data
        assert loop.time() < deadline, f"task {task_id} still {data['status']}"
        await asyncio.sleep(0.02)


async def report(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/_emulator/report")).json())


async def set_faults(client: httpx.AsyncClient, **faults: Any) -> None:
    r = await client.post("/_emulator/faults", json=faults)
    assert r.status_code == 200, r.text


def assert_error(response: httpx.Response, status: int, code: int) -> str:
    """The sheet's envelope, exactly: {"error": {"code": <int>, "message", "request_id"}}; returns the message."""
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"code", "message", "request_id"}
    assert data["error"]["code"] == code
    assert re.fullmatch(r"req_[0-9a-f-]{36}", data["error"]["request_id"])
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    return str(data["error"]["message"])


def decode_image(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


# -- auth -------------------------------------------------------------------------------------------------

ENDPOINTS = [("POST", IMAGES), ("POST", VIDEOS), ("GET", f"{TASKS}/task_x")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_missing_authorization_is_401_10001(client: httpx.AsyncClient, method: str, path: str) -> None:
    client.headers.pop("Authorization")
    assert_error(await client.request(method, path, json=image_body() if method == "POST" else None), 401, 10001)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_authorization_that_is_not_bearer_is_401_10002(client: httpx.AsyncClient, method: str, path: str) -> None:
    client.headers["Authorization"] = "Token rk_live_test"
    assert_error(await client.request(method, path, json=image_body() if method == "POST" else None), 401, 10002)


async def test_wrong_key_is_401_10003_when_keys_are_configured() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, api_keys=["rk_live_right"]))
    async with emulator_client(state, "reapi", KEY) as client:
        assert_error(await create(client), 401, 10003)
        ok = await client.post(IMAGES, json=image_body(), headers={"Authorization": "Bearer rk_live_right"})
        assert ok.status_code == 200
        assert (await report(client))["tasks_created"] == 1


# -- strict validation ---------------------------------------------------------------------------------------

PALETTE = [{"hex": "#C2D1E6", "ratio": "23.51%"}, {"hex": "#636574", "ratio": "50.00%"},
           {"hex": "#FFFFFF", "ratio": "26.49%"}]
DURATION_MESSAGE = "Invalid value for duration: must be an integer number of seconds in [2, 15]"
TWO_IMAGES = ["https://example.com/clock.webp", "https://example.com/desk.webp"]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ([1, 2], 20001, "Request body must be a JSON object."),
        ({"prompt": "x"}, 20002, "Missing required parameter: model"),
        (image_body(prompt=""), 20002, "Missing required parameter: prompt"),
        ({"model": "wan2.7-image", "size": "1:1"}, 20002, "Missing required parameter: prompt"),
        (image_body(model="wan2.7-video"), 20004, "Model 'wan2.7-video' is not supported on this endpoint."),
        (image_body(model="wan2.6-image"), 20004, "Model 'wan2.6-image' is not supported on this endpoint."),
        (image_body(prompt="x" * 5001), 20007, "Prompt exceeds the maximum length of 5000 characters."),
        (image_body(style="vivid"), 20003, "Unknown parameter: style"),
        (image_body(n=5), 20003, "Invalid value for n: must be an integer in [1, 4]"),
        (image_body(n=13, enable_sequential=True), 20003, "Invalid value for n: must be an integer in [1, 12]"),
        (image_body(n=0), 20003, "Invalid value for n: must be an integer in [1, 4]"),
        (image_body(n=True), 20003, "Invalid value for n: must be an integer in [1, 4]"),
        (image_body(seed=2147483648), 20003, "Invalid value for seed: must be an integer in [0, 2147483647]"),
        (image_body(seed="1"), 20003, "Invalid value for seed: must be an integer in [0, 2147483647]"),
        (image_body(watermark="false"), 20003, "Invalid value for watermark: must be a boolean"),
        (image_body(thinking_mode=1), 20003, "Invalid value for thinking_mode: must be a boolean"),
        (image_body(negative_prompt=["blur"]), 20003, "Invalid value for negative_prompt: must be a string"),
        (image_body(image_urls=["http://example.com/a.png"]), 20003,
         "image_urls[0]: media URLs must be public HTTPS URLs"),
        (image_body(image_urls=["data:image/png;base64,iVBORw0KGgo="]), 20003,
         "image_urls[0]: base64 / data: URIs are not accepted; use a public HTTPS URL"),
        (image_body(image_urls=[f"https://example.com/{i}.png" for i in range(10)]), 20003,
         "Invalid value for image_urls: must be an array of 1 to 9 URLs"),
        (image_body(image_urls=TWO_IMAGES, bbox_list=[[[1, 1, 9, 9]]], size=None), 20003,
         "Invalid value for bbox_list: must have one entry per image_urls item (2)"),
        (image_body(bbox_list=[[]]), 20003, "Invalid value for bbox_list: must have one entry per image_urls item (0)"),
        (image_body(image_urls=TWO_IMAGES[:1], bbox_list=[[[1, 1, 9, 9]] * 3]), 20003,
         "Invalid value for bbox_list[0]: a list of at most 2 boxes"),
        (image_body(image_urls=TWO_IMAGES[:1], bbox_list=[[[9, 1, 1, 9]]]), 20003,
         "Invalid box in bbox_list[0]: [x1, y1, x2, y2] integers with x1<x2, y1<y2"),
        (image_body(color_palette=PALETTE[:2]), 20003, "Invalid value for color_palette: 3 to 10 items"),
        (image_body(color_palette=[*PALETTE[:2], {"hex": "#FFFFFF", "ratio": "26.48%"}]), 20003,
         "color_palette ratios must sum to 100.00%, not 99.99%"),
        (image_body(color_palette=[{"hex": "white", "ratio": "100%"}, *PALETTE[1:]]), 20003,
         "Invalid value for color_palette[0].hex: must be #RRGGBB"),
        (image_body(color_palette=PALETTE, enable_sequential=True), 20003,
         "color_palette is not available with enable_sequential"),
        (image_body(size="5:4"), 20005, "size '5:4' is not supported by wan2.7-image"),
        (image_body(resolution="8K"), 20005, "resolution '8K' is not supported by wan2.7-image"),
        (image_body(resolution="4K", size="16:9"), 20005,
         "size 4K is not supported by wan2.7-image on the standard tier; the maximum is 2K"),
        (image_body(model="wan2.7-image-pro", resolution="4K", size=None, image_urls=TWO_IMAGES), 20005,
         "size 4K is not supported by wan2.7-image-pro in editing or group mode; the maximum is 2K"),
        (image_body(model="wan2.7-image-pro", resolution="4K", enable_sequential=True), 20005,
         "size 4K is not supported by wan2.7-image-pro in editing or group mode; the maximum is 2K"),
        (image_body(size="4096x4096", resolution=None), 20005,
         "size '4096x4096' is not supported by wan2.7-image in this mode"),
        (image_body(size="512x512", resolution=None), 20005,
         "size '512x512' is not supported by wan2.7-image in this mode"),
        (image_body(size="2K"), 20003,
         "size and resolution conflict: pair an aspect ratio in size with the gear in resolution"),
        (image_body(size="1024x1024"), 20003,
         "size and resolution conflict: pair an aspect ratio in size with the gear in resolution"),
    ],
)
async def test_invalid_image_body_is_400_with_the_sheet_code_and_charges_nothing(
    client: httpx.AsyncClient, body: Any, code: int, message: str
) -> None:
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if v is not None}
    assert assert_error(await create(client, body), 400, code) == message
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"], rep["balance"]) == (0, 0, INITIAL)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"prompt": "x"}, 20002, "Missing required parameter: model"),
        (video_body(prompt=" "), 20002, "Missing required parameter: prompt"),
        (video_body(model="wan2.7-image"), 20004, "Model 'wan2.7-image' is not supported on this endpoint."),
        (video_body(prompt="x" * 5001), 20007, "Prompt exceeds the maximum length of 5000 characters."),
        (video_body(resolution="4K"), 20005, "resolution '4K' is not supported by wan2.7-video (720P or 1080P)"),
        (video_body(duration=1), 20003, DURATION_MESSAGE),
        (video_body(duration=16), 20003, DURATION_MESSAGE),
        (video_body(duration="5"), 20003, DURATION_MESSAGE),
    ],
)
async def test_invalid_video_body_is_400_with_the_sheet_code(
    client: httpx.AsyncClient, body: Any, code: int, message: str
) -> None:
    assert assert_error(await create(client, body, VIDEOS), 400, code) == message
    assert (await report(client))["tasks_created"] == 0


async def test_body_that_is_not_json_is_400_20001(client: httpx.AsyncClient) -> None:
    response = await client.post(IMAGES, content=b"{not json", headers={"Content-Type": "application/json"})
    assert assert_error(response, 400, 20001) == "Request body must be a JSON object."


async def test_documented_edge_values_are_accepted(client: httpx.AsyncClient) -> None:
    accepted = [
        image_body(prompt="x" * 5000),
        image_body(resolution="2k"),  # case-insensitive (seed 003)
        image_body(n=12, enable_sequential=True, resolution="1K"),
        image_body(seed=0, watermark=True, negative_prompt="blurry", thinking_mode=False, color_palette=PALETTE),
        {"model": "wan2.7-image", "image_urls": TWO_IMAGES, "bbox_list": [[], [[989, 515, 1138, 681]]],
         "resolution": "1K"},  # editing: prompt optional
        image_body(image_urls=TWO_IMAGES[:1], thinking_mode=True, size=None),  # thinking ignored, not refused
        {"model": "wan2.7-image", "prompt": "x", "size": "1K"},  # a gear in size alone
        {"model": "wan2.7-image", "prompt": "x", "size": "768x1024"},
        video_body(seed=3, negative_prompt="x", prompt_extend=False),  # undocumented video knobs are tolerated
    ]
    for body in accepted:
        response = await create(client, body, VIDEOS if body["model"] == "wan2.7-video" else IMAGES)
        assert response.status_code == 200, (body, response.text)


async def test_unknown_task_is_404_40001(client: httpx.AsyncClient) -> None:
    assert assert_error(await client.get(f"{TASKS}/task_nope"), 404, 40001) == "Task not found."


async def test_a_task_of_another_protocol_is_not_found(state: EmulatorState, client: httpx.AsyncClient) -> None:
    state.tasks["task_other"] = EmuTask(
        id="task_other", protocol="rivya", model="wan-2-7-image", created_at=0, queue_s=0, process_s=0,
        outcome="succeeded", error_code=None, credits=5, outputs=[], idempotency_key=None, body_sha256="x",
        client_ref=None)
    assert_error(await client.get(f"{TASKS}/task_other"), 404, 40001)


# -- task life cycle -------------------------------------------------------------------------------------------


def age(state: EmulatorState, task_id: str, seconds: float) -> None:
    state.tasks[task_id].created_at -= seconds


async def test_task_is_processing_until_completed_with_the_envelopes_of_the_sheet() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "reapi", KEY) as client:
        created = (await create(client)).json()
        assert list(created) == ["id", "model", "status", "created_at"]  # seed 003's submit response
        assert re.fullmatch(r"task_[0-9a-f]{32}", created["id"])
        assert (created["model"], created["status"]) == ("wan2.7-image", "processing")
        assert isinstance(created["created_at"], int)

        url = f"{TASKS}/{created['id']}"
        queued = (await client.get(url)).json()  # the emulator's queue phase: reAPI only says processing
        assert queued == {**created, "output": None, "error": None}
        age(state, created["id"], 90)
        assert (await client.get(url)).json()["status"] == "processing"
        age(state, created["id"], 60)
        done = (await client.get(url)).json()
        media = f"{IN_PROCESS_BASE}/_media/{created['id']}/0.png"
        assert done == {**created, "created_at": done["created_at"], "status": "completed",  # aged by the test
                        "output": {"image_urls": [media]}, "error": None}
        assert decode_image((await client.get(media)).content) == image_size("1:1", "1K")


@pytest.mark.parametrize(
    ("fields", "count", "size"),
    [
        ({"size": "16:9", "resolution": "2K"}, 1, image_size("16:9", "2K")),
        ({"size": "3:2", "resolution": "1K", "n": 3}, 3, image_size("3:2", "1K")),
        ({"size": None, "resolution": None}, 1, image_size("1:1", "2K")),  # the defaults: 2K, square
        ({"size": "2:3", "resolution": None}, 1, image_size("2:3", "2K")),
        ({"size": "1K", "resolution": None}, 1, image_size("1:1", "1K")),
        ({"size": "768x1024", "resolution": None}, 1, (768, 1024)),
        ({"size": "9:16", "resolution": "1K", "n": 5, "enable_sequential": True}, 5, image_size("9:16", "1K")),
    ],
)
async def test_images_come_out_in_the_size_the_request_implies(
    client: httpx.AsyncClient, fields: dict[str, Any], count: int, size: tuple[int, int]
) -> None:
    body = {k: v for k, v in image_body(**fields).items() if v is not None}
    done = await wait_terminal(client, (await create(client, body)).json()["id"])
    urls = done["output"]["image_urls"]
    assert len(urls) == count
    images = [(await client.get(u)).content for u in urls]
    assert all(decode_image(data) == size for data in images)
    assert len({*images}) == count  # a series, not one picture repeated


async def test_an_edit_follows_the_aspect_of_the_last_input_image(client: httpx.AsyncClient) -> None:
    wide = await wait_terminal(client, (await create(client, image_body(size="16:9"))).json()["id"])
    tall = await wait_terminal(client, (await create(client, image_body(size="9:16"))).json()["id"])
    inputs = [wide["output"]["image_urls"][0], tall["output"]["image_urls"][0]]
    edit = {"model": "wan2.7-image", "prompt": "merge", "image_urls": inputs, "resolution": "1K"}
    done = await wait_terminal(client, (await create(client, edit)).json()["id"])
    width, height = decode_image((await client.get(done["output"]["image_urls"][0])).content)
    assert height > width and abs(width / height - 9 / 16) < 0.02
    # Another host's image cannot be looked at: square at the gear.
    external = {**edit, "image_urls": TWO_IMAGES}
    done = await wait_terminal(client, (await create(client, external)).json()["id"])
    assert decode_image((await client.get(done["output"]["image_urls"][0])).content) == image_size("1:1", "1K")


async def test_4k_pro_text_to_image_is_accepted_at_4k(state: EmulatorState, client: httpx.AsyncClient) -> None:
    body = image_body(model="wan2.7-image-pro", size="16:9", resolution="4K", thinking_mode=True)
    created = (await create(client, body)).json()
    out = state.tasks[created["id"]].outputs[0]
    assert (out["width"], out["height"]) == image_size("16:9", "4K")


async def test_video_is_a_real_mp4_of_the_asked_length(client: httpx.AsyncClient) -> None:
    created = (await create(client, video_body(), VIDEOS)).json()
    assert list(created) == ["id", "model", "status", "created_at"]
    done = await wait_terminal(client, created["id"])
    media = f"{IN_PROCESS_BASE}/_media/{created['id']}/0.mp4"
    assert done["output"] == {"video_urls": [media]}
    response = await client.get(media)
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == video_size("16:9", "720p")
        assert frames / float(stream.average_rate) == pytest.approx(2.0, abs=0.1)


# -- billing ------------------------------------------------------------------------------------------------------


async def test_credits_are_ceil_usd_times_count_times_1000_and_nothing_is_deduplicated(
    client: httpx.AsyncClient,
) -> None:
    await create(client, image_body(n=3), key="same-key")
    await create(client, image_body(n=3), key="same-key")  # the sheet: the header has no effect
    await create(client, image_body(model="wan2.7-image-pro"))
    await create(client, video_body(), VIDEOS)
    rep = await report(client)
    video_credits = round(EMULATED_USD_PER_SECOND["720P"] * 2 * 1000)
    assert rep["tasks_created"] == 4
    assert rep["tasks_by_idempotency_key"] == {"same-key": 2}
    assert rep["requests_by_idempotency_key"] == {"same-key": 2}
    assert rep["credits_charged"] == 2 * 3 * STD_CREDITS + PRO_CREDITS + video_credits
    assert rep["balance"] == INITIAL - rep["credits_charged"]


async def test_insufficient_credits_is_402_30001_and_creates_nothing(client: httpx.AsyncClient) -> None:
    await client.post("/_emulator/config", json={"balance": STD_CREDITS - 1})
    message = assert_error(await create(client), 402, 30001)
    assert f"needs {STD_CREDITS}" in message
    assert (await report(client))["tasks_created"] == 0


async def test_the_task_payload_reports_no_credits_or_cost(client: httpx.AsyncClient) -> None:
    done = await wait_terminal(client, (await create(client)).json()["id"])
    assert set(done) == {"id", "model", "status", "created_at", "output", "error"}


# -- faults -------------------------------------------------------------------------------------------------------


async def test_rate_limit_fault_is_429_50001_with_retry_after(client: httpx.AsyncClient) -> None:
    await set_faults(client, rate_limit={"next": 2}, retry_after_s=3)
    assert_error(await create(client), 429, 50001)
    task = await client.get(f"{TASKS}/task_x")
    assert_error(task, 429, 50001)
    assert task.headers["Retry-After"] == "3"
    assert (await create(client)).status_code == 200
    assert (await report(client))["tasks_created"] == 1


async def test_server_error_fault_is_500_60001_on_create_and_60099_on_poll(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    await set_faults(client, server_error={"next": 2})
    assert assert_error(await create(client), 500, 60001) == "Failed to persist task; credits refunded."
    assert_error(await client.get(f"{TASKS}/{task['id']}"), 500, 60099)
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"]) == (1, STD_CREDITS)


async def test_fail_task_fault_fails_with_60099_and_refunds(client: httpx.AsyncClient) -> None:
    await set_faults(client, fail_task={"next": 1})
    task = (await create(client)).json()
    done = await wait_terminal(client, task["id"])
    assert (done["status"], done["output"]) == ("failed", None)
    assert (done["error"]["code"], done["error"]["message"]) == (60099, "Generic internal error")
    assert done["error"]["request_id"].startswith("req_")
    await client.get(f"{TASKS}/{task['id']}")  # polling again refunds nothing more
    rep = await report(client)
    assert (rep["credits_charged"], rep["credits_refunded"], rep["balance"]) == (STD_CREDITS, STD_CREDITS, INITIAL)
    snap = REAPI.state(HttpReply(200, {}, json.dumps(done).encode()))
    assert type(snap.error) is e.GenerationFailed


async def test_reject_content_fault_is_a_moderation_failure(client: httpx.AsyncClient) -> None:
    await set_faults(client, reject_content={"next": 1})
    done = await wait_terminal(client, (await create(client)).json()["id"])
    assert done["status"] == "failed" and "inappropriate content" in done["error"]["message"]
    assert type(REAPI.state(HttpReply(200, {}, json.dumps(done).encode())).error) is e.ContentRejected


async def test_drop_fault_loses_the_answer_but_the_task_is_created_and_billed(client: httpx.AsyncClient) -> None:
    await set_faults(client, drop={"next": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, key="k-drop")
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"]) == (1, STD_CREDITS)


async def test_truncate_fault_delivers_less_than_content_length(client: httpx.AsyncClient) -> None:
    done = await wait_terminal(client, (await create(client)).json()["id"])
    url = done["output"]["image_urls"][0]
    full = (await client.get(url)).content
    await set_faults(client, truncate={"next": 1})
    cut = await client.get(url)
    assert int(cut.headers["content-length"]) == len(full) and cut.content == full[: len(full) // 2]


# -- the adapter against the emulator ---------------------------------------------------------------------------


async def send(client: httpx.AsyncClient, call: HttpCall) -> HttpReply:
    wire = Wire(client, IN_PROCESS_BASE, REAPI.auth_headers("rk_live_test"))
    return await wire.send(call)


async def round_trip(client: httpx.AsyncClient, request: GenerationRequest) -> TaskSnapshot:
    reply = await send(client, REAPI.submit(request, "wanp-roundtrip"))
    assert reply.status == 200, reply.body
    snap = REAPI.accepted(reply)
    assert snap.status is TaskStatus.PENDING
    while snap.status is TaskStatus.PENDING:
        await asyncio.sleep(0.02)
        snap = REAPI.state(await send(client, REAPI.poll(snap.task_id)))
    return snap


async def test_adapter_round_trip_for_the_seed_quick_example(client: httpx.AsyncClient) -> None:
    params = NeutralParams(aspect_ratio="16:9", resolution="2K", n=1)
    snap = await round_trip(client, GenerationRequest("wan2.7-image-pro", "a flower shop", params))
    assert snap.status is TaskStatus.SUCCEEDED and len(snap.output_urls) == 1
    assert decode_image((await client.get(snap.output_urls[0])).content) == image_size("16:9", "2K")


async def test_adapter_round_trip_for_a_group_region_edit_and_video(client: httpx.AsyncClient) -> None:
    group = await round_trip(client, GenerationRequest(
        "wan2.7-image", "a four-panel comic", NeutralParams(aspect_ratio="4:3", resolution="1K", n=4, sequential=True,
                                                             seed=5)))
    assert len(group.output_urls) == 4
    refs = tuple(Reference(kind="image", source=u, url=u) for u in group.output_urls[:2])
    edit_params = NeutralParams(resolution="1K", reference_images=list(group.output_urls[:2]),
                                regions=[[], [[10, 10, 200, 200]]], thinking=False)
    edit = await round_trip(client, GenerationRequest("wan2.7-image", "put it in the box", edit_params, refs))
    assert decode_image((await client.get(edit.output_urls[0])).content) == image_size("4:3", "1K")
    video = await round_trip(client, GenerationRequest("wan2.7-video", "a boat", NeutralParams(resolution="720p",
                                                                                                 duration=2)))
    assert video.output_urls[0].endswith(".mp4")


async def test_adapter_classifies_the_emulator_errors(client: httpx.AsyncClient) -> None:
    # The check refuses 4K on the standard tier; sent anyway (via provider_params), the host says 20005.
    sneaky = NeutralParams(resolution="2K", provider_params={"resolution": "4K"})
    reply = await send(client, REAPI.submit(GenerationRequest("wan2.7-image", "x", sneaky), "k"))
    err = REAPI.error(reply)
    assert (type(err), err.code, err.http_status) == (e.RejectedByProvider, "20005", 400)
    assert isinstance(err.details["request_id"], str)
    missing = REAPI.error(await send(client, REAPI.poll("task_missing")))
    assert (type(missing), missing.code) == (e.RejectedByProvider, "40001")
    await set_faults(client, rate_limit={"next": 1}, retry_after_s=2)
    limited = REAPI.error(await send(client, REAPI.poll("task_missing")))
    assert (type(limited), limited.retry_after_s) == (e.RateLimited, 2.0)


# -- end to end: spec -> plan -> engine -> storage -> lineage ---------------------------------------------------

IMAGE_ROWS = [
    {"prompt_id": "flower_shop", "prompt": "a flower shop with delicate windows", "aspect_ratio": "16:9",
     "resolution": "2K", "n": "1"},
    {"prompt_id": "pair", "prompt": "two views of a ceramic mug", "aspect_ratio": "1:1", "resolution": "1K", "n": "2"},
    {"prompt_id": "comic", "prompt": "a three-panel comic of a cat", "aspect_ratio": "3:2", "resolution": "1K",
     "n": "3", "sequential": "true"},
]
VIDEO_ROWS = [{"prompt_id": "boat", "prompt": "a paper boat drifting down a rain-soaked street", "resolution": "720p",
               "duration": "2"}]


#: the spec fields every dataset of this module shares
EMULATED = {"provider": "reapi", "endpoint": "emulator"}


async def test_engine_generates_images_and_video_end_to_end_with_lineage(e2e_env: Path) -> None:
    image_spec = load_spec(write_dataset(e2e_env / "img", IMAGE_ROWS, name="reapi_images", model="wan2.7-image-pro",
                                         params={"watermark": False}, **EMULATED))
    video_spec = load_spec(write_dataset(e2e_env / "vid", VIDEO_ROWS, name="reapi_video", model="wan2.7-video",
                                         **EMULATED))
    expected_sizes = {"flower_shop": image_size("16:9", "2K"), "pair": image_size("1:1", "1K"),
                      "comic": image_size("3:2", "1K"), "boat": video_size("16:9", "720p")}
    expected_modes = {"flower_shop": "text_to_image", "pair": "text_to_image", "comic": "group",
                      "boat": "text_to_video"}
    expected_outputs = {"flower_shop": 1, "pair": 2, "comic": 3, "boat": 1}

    for spec in (image_spec, video_spec):
        plan = build_plan(spec)
        assert all(t.estimate.credits is None and t.estimate.usd is None for t in plan.tasks)  # undocumented prices
        async with open_session(spec, FAST_ENGINE) as session:
            outcomes = await session.engine.run(list(plan.tasks))
            assert [o.status for o in outcomes] == ["stored"] * len(plan.tasks), [str(o.error) for o in outcomes]
            for outcome in outcomes:
                pid = outcome.task.prompt_id
                assert len(outcome.outputs) == expected_outputs[pid]
                for out in outcome.outputs:
                    data = Path(out.media_uri).read_bytes()
                    if pid == "boat":
                        with av.open(io.BytesIO(data)) as container:
                            stream = container.streams.video[0]
                            assert (stream.codec_context.width, stream.codec_context.height) == expected_sizes[pid]
                        assert out.duration_s == pytest.approx(2.0, abs=0.1)
                        assert out.mime_type == "video/mp4"
                    else:
                        assert decode_image(data) == expected_sizes[pid]
                    assert out.warnings is None
            table = lineage_table(session.ledger, spec.name).to_pylist()

        assert len(table) == sum(expected_outputs[t.prompt_id] for t in plan.tasks)
        for row in table:
            pid = row["prompt_id"]
            assert (row["status"], row["provider"], row["model"], row["mode"]) == (
                "succeeded", "reapi", spec.model, expected_modes[pid])
            assert (row["width"], row["height"]) == expected_sizes[pid]
            assert re.fullmatch(r"task_[0-9a-f]{32}", row["task_id"])
            # reAPI reports no usage or cost and the per-image / per-second rates are undocumented.
            assert (row["credits_reserved"], row["credits_final"], row["cost_usd"], row["cost_source"]) == (
                None, None, None, None)
            request = json.loads(row["request_json"])
            assert request["model"] == spec.model and "Authorization" not in row["request_json"]
            if pid != "boat":
                assert request["seed"] == row["seed"] and request["watermark"] is False
        if spec is image_spec:
            comic = [r for r in table if r["prompt_id"] == "comic"]
            assert sorted(r["output_index"] for r in comic) == [0, 1, 2]
            assert json.loads(comic[0]["request_json"])["enable_sequential"] is True
        else:
            assert json.loads(table[0]["request_json"]) == {"model": "wan2.7-video", "prompt": VIDEO_ROWS[0]["prompt"],
                                                            "resolution": "720P", "duration": 2}

    # What the emulator billed: one task per planned output, nothing twice.
    emu = json.loads((e2e_env / "state" / "reapi_images" / "emulator_state.json").read_text())
    assert len(emu["tasks"]) == 3
    assert emu["charged"] == PRO_CREDITS * (1 + 2 + 3)
    assert set(emu["requests_by_key"].values()) == {1}


async def test_an_engine_rerun_submits_nothing_again(e2e_env: Path) -> None:
    path = write_dataset(e2e_env / "img", IMAGE_ROWS[:2], name="reapi_rerun", model="wan2.7-image", **EMULATED)
    spec = load_spec(path)
    plan = build_plan(spec)
    for _ in range(2):
        async with open_session(spec, FAST_ENGINE) as session:
            outcomes = await session.engine.run(list(plan.tasks))
            assert [o.status for o in outcomes] == ["stored", "stored"]
    emu = json.loads((e2e_env / "state" / "reapi_rerun" / "emulator_state.json").read_text())
    assert (len(emu["tasks"]), emu["submit_requests"]) == (2, 2)


async def test_engine_does_not_resend_a_create_whose_answer_was_lost(e2e_env: Path) -> None:
    """reAPI has no deduplication, so a create that may have landed is never sent again automatically."""
    path = write_dataset(e2e_env / "img", IMAGE_ROWS[:1], name="reapi_drop", model="wan2.7-image", **EMULATED)
    spec = load_spec(path)
    plan = build_plan(spec)
    config = EmulatorConfig(queue_s=0, process_s=0.02, faults=FaultConfig(drop={"next": 1}))
    state, transport = in_process(config, "reapi")

    async def run_once() -> Any:
        ledger = open_ledger(spec)
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                engine = TaskEngine(REAPI, Wire(client, IN_PROCESS_BASE, REAPI.auth_headers("k")), ledger,
                                    LocalStorage(spec.storage_root), spec.budget, FAST_ENGINE, rng=random.Random(1))
                (outcome,) = await engine.run(list(plan.tasks))
                return outcome, ledger.attempts(plan.tasks[0].identity)
        finally:
            ledger.close()

    first, attempts = await run_once()
    assert first.status == "failed"
    assert isinstance(first.error, e.Transient) and first.error.code == "network_error"
    assert [a.task_id for a in attempts] == [None]  # possibly created: recorded without a task id
    second, _ = await run_once()
    assert second.status == "failed" and isinstance(second.error, e.AmbiguousSubmission)
    report = state.report()
    assert (report["tasks_created"], report["submit_requests"], report["credits_charged"]) == (1, 1, STD_CREDITS)
