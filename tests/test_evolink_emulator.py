"""The emulator speaks EvoLink's Wan 2.7 task API as seed 002 and the EvoLink sheet describe it (DESIGN §10),
the adapter round-trips against it, and the engine runs a dataset end to end through it."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from conftest import emulator_client, write_dataset
from PIL import Image

from wan_pipeline import errors as e
from wan_pipeline.emulator.app import IN_PROCESS_BASE
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.session import open_session
from wan_pipeline.outputs.lineage import lineage_table
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import (
    GenerationRequest,
    HttpCall,
    HttpReply,
    Reference,
    TaskSnapshot,
    TaskStatus,
    Usage,
)
from wan_pipeline.providers.evolink import PRESET_SIZES
from wan_pipeline.providers.evolink import PROVIDER as EVOLINK
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.sizes import image_size, video_size

IMAGES = "/v1/images/generations"
VIDEOS = "/v1/videos/generations"
TASKS = "/v1/tasks"
KEY = {"Authorization": "Bearer test-key"}
pytestmark = pytest.mark.emulator("evolink", KEY)
INITIAL = 100_000
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def image_body(**fields: Any) -> dict[str, Any]:
    return {"model": "wan-2.7-image", "prompt": "A red fox at dawn", "n": 1, "size": "square_hd", "seed": 1, **fields}


def video_body(**fields: Any) -> dict[str, Any]:
    return {"model": "wan2.7-text-to-video", "prompt": "A kite over dunes", "quality": "720p", "duration": 2,
            "aspect_ratio": "16:9", "seed": 1, **fields}






async def create(client: httpx.AsyncClient, body: dict[str, Any] | None = None, path: str = IMAGES) -> httpx.Response:
    return await client.post(path, json=body or image_body())


async def wait_terminal(client: httpx.AsyncClient, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = (await client.get(f"{TASKS}/{task_id}")).json()
        if data["status"] in ("completed", "failed"):
            return dict(data)
        assert asyncio.get_running_loop().time() < deadline, f"task {task_id} stuck in {data['status']}"
        await asyncio.sleep(0.02)


async def report(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/_emulator/report")).json())


async def set_faults(client: httpx.AsyncClient, **faults: Any) -> None:
    r = await client.post("/_emulator/faults", json=faults)
    assert r.status_code == 200, r.text


def assert_error(response: httpx.Response, status: int, code: str | int, type_: str) -> dict[str, Any]:
    """EvoLink's envelope: {"error": {"code", "message", "type"[, "param"]}}; returns the error object."""
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"error"}
    err = data["error"]
    assert set(err) - {"param"} == {"code", "message", "type"}
    assert (err["code"], err["type"]) == (code, type_)
    assert isinstance(err["message"], str) and err["message"]
    return dict(err)


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", IMAGES), ("POST", VIDEOS),
                                              ("GET", f"{TASKS}/task-unified-1757165031-uyujaw3d")])
async def test_missing_bearer_is_401_unauthorized(client: httpx.AsyncClient, method: str, path: str) -> None:
    client.headers.pop("Authorization")
    response = await client.request(method, path, json=image_body() if method == "POST" else None)
    assert_error(response, 401, "unauthorized", "authentication_error")


async def test_credits_endpoint_answers_auth_errors_with_an_integer_code(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    assert_error(await client.get("/v1/credits"), 401, 401, "authentication_error")


async def test_wrong_key_is_refused_when_keys_are_configured() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, api_keys=["sk-evo-right"]))
    async with emulator_client(state, "evolink", KEY) as client:
        assert_error(await create(client), 401, "unauthorized", "authentication_error")
        ok = await client.post(IMAGES, json=image_body(), headers={"Authorization": "Bearer sk-evo-right"})
        assert ok.status_code == 200
        assert (await report(client))["tasks_created"] == 1


# -- strict validation ----------------------------------------------------------------------------

EDIT = {"image_urls": ["https://example.com/photo.jpg"]}


@pytest.mark.parametrize(
    ("path", "body", "param", "message"),
    [
        (IMAGES, image_body(style="vivid"), "style", "unknown parameter: style"),
        (IMAGES, image_body(model="wan2.7-image"), "model", "model must be one of wan-2.7-image, wan-2.7-image-pro"),
        (IMAGES, image_body(model="wan2.7-text-to-video"), "model", "is a video model"),
        (IMAGES, image_body(prompt="x" * 2001), "prompt", "prompt must be at most 2000 characters"),
        (IMAGES, image_body(prompt=" "), "prompt", "prompt must be a non-empty string"),
        (IMAGES, {k: v for k, v in image_body().items() if k != "prompt"}, "prompt", "prompt is required"),
        (IMAGES, image_body(n=6), "n", "n must be an integer between 1 and 5"),
        (IMAGES, image_body(n=5, **EDIT), "n", "n must be an integer between 1 and 4"),
        (IMAGES, image_body(n=0), "n", "n must be an integer between 1 and 5"),
        (IMAGES, image_body(image_urls=[]), "image_urls", "image_urls must be a list of 1 to 4 URLs"),
        (IMAGES, image_body(image_urls=["https://e/a.png"] * 5), "image_urls", "1 to 4 URLs"),
        (IMAGES, image_body(image_urls=["http://e/a.png"]), "image_urls[0]", "public https:// URL"),
        (IMAGES, image_body(size="landscape_21_9"), "size", "size must be one of square_hd"),
        (IMAGES, image_body(size={"width": 512, "height": 512}), "size", "between 768*768 and 2048*2048"),
        (IMAGES, image_body(size={"width": 2880, "height": 352}), "size", "within 1:8 and 8:1"),
        (IMAGES, image_body(size={"width": 1024}), "size", "exactly width and height"),
        (IMAGES, image_body(size={"width": "1024", "height": 1024}), "size", "positive integers"),
        (IMAGES, image_body(negative_prompt="n" * 501), "negative_prompt", "at most 500 characters"),
        (IMAGES, image_body(seed=-1), "seed", "seed must be an integer between 0 and 2147483647"),
        (IMAGES, image_body(seed=2147483648), "seed", "between 0 and 2147483647"),
        (IMAGES, image_body(seed="1"), "seed", "between 0 and 2147483647"),
        (IMAGES, image_body(enable_safety_checker="yes"), "enable_safety_checker", "must be a boolean"),
        (IMAGES, image_body(enable_prompt_expansion=True), "enable_prompt_expansion",
         "only available in image editing"),
        (IMAGES, image_body(callback_url="http://hook"), "callback_url", "public https:// URL"),
        (VIDEOS, video_body(model="wan-2.7-image"), "model", "is an image model"),
        (VIDEOS, video_body(model="wan2.7-t2v"), "model", "model must be one of wan2.7-text-to-video"),
        (VIDEOS, video_body(size="1280*720"), "size", "unknown parameter: size"),
        (VIDEOS, video_body(resolution="720p"), "resolution", "unknown parameter: resolution"),
        (VIDEOS, video_body(quality="4k"), "quality", "quality must be one of 720p, 1080p"),
        (VIDEOS, video_body(seed=0), "seed", "seed must be an integer between 1 and 2147483647"),
        (VIDEOS, video_body(duration=16), "duration", "duration must be an integer between 2 and 15"),
        (VIDEOS, video_body(duration=5.5), "duration", "between 2 and 15"),
        (VIDEOS, video_body(aspect_ratio="21:9"), "aspect_ratio", "aspect_ratio must be one of 16:9"),
        (VIDEOS, video_body(prompt_extend="true"), "prompt_extend", "must be a boolean"),
        (VIDEOS, video_body(audio_urls=["https://e/a.mp3", "https://e/b.mp3"]), "audio_urls", "exactly 1"),
        (VIDEOS, {"model": "wan2.7-text-to-video"}, "prompt", "prompt is required"),
        (VIDEOS, {"model": "wan2.7-image-to-video", "aspect_ratio": "16:9", "image_start": "https://e/a.png"},
         "aspect_ratio", "unknown parameter: aspect_ratio"),
        (VIDEOS, {"model": "wan2.7-image-to-video", "image_end": "https://e/b.png"}, "image_start",
         "unsupported input combination"),
        (VIDEOS, {"model": "wan2.7-image-to-video", "video_urls": ["https://e/c.mp4"], "audio_urls": ["https://e/a.mp3"]},
         "image_start", "unsupported input combination"),
        (VIDEOS, {"model": "wan2.7-image-to-video", "image_start": "https://e/a.png",
                  "generation_mode": "video_continuation"}, "generation_mode", "does not match the inputs"),
        (VIDEOS, {"model": "wan2.7-reference-video", "prompt": "x"}, "image_urls", "at least one of image_urls"),
        (VIDEOS, {"model": "wan2.7-reference-video", "prompt": "x", "image_urls": ["https://e/a.png"] * 4,
                  "video_urls": ["https://e/v.mp4"] * 2}, "image_urls", "at most 5 items together"),
        (VIDEOS, {"model": "wan2.7-reference-video", "prompt": "x", "video_urls": ["https://e/v.mp4"], "duration": 11},
         "duration", "between 2 and 10"),
        (VIDEOS, {"model": "wan2.7-reference-video", "prompt": "x", "image_urls": ["https://e/a.png"],
                  "model_params": {"voice_bindings": {"video1": "https://e/v.mp3"}}}, "model_params.voice_bindings",
         "names no input"),
        (VIDEOS, {"model": "wan2.7-video-edit", "prompt": "x"}, "video_urls", "video_urls is required"),
        (VIDEOS, {"model": "wan2.7-video-edit", "video_urls": ["https://e/v.mp4"], "duration": 1}, "duration",
         "between 2 and 10"),
        (VIDEOS, {"model": "wan2.7-video-edit", "video_urls": ["https://e/v.mp4"],
                  "image_urls": ["https://e/a.png"] * 5}, "image_urls", "0 to 4 URLs"),
    ],
)
async def test_invalid_body_is_400_invalid_request_and_charges_nothing(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], param: str, message: str
) -> None:
    err = assert_error(await create(client, body, path), 400, "invalid_request", "invalid_request_error")
    assert err["param"] == param
    assert message in err["message"]
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"], rep["balance"]) == (0, 0, INITIAL)


async def test_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(IMAGES, content=b"{nope", headers={"Content-Type": "application/json"})
    err = assert_error(response, 400, "invalid_request", "invalid_request_error")
    assert (err["message"], err["param"]) == ("body is not valid JSON", "body")


async def test_overlong_video_prompt_is_truncated_not_refused(client: httpx.AsyncClient) -> None:
    assert (await create(client, video_body(prompt="x" * 6000), VIDEOS)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"model": "wan2.7-image-to-video", "image_start": "https://e/a.png"},
        {"model": "wan2.7-image-to-video", "image_start": "https://e/a.png", "audio_urls": ["https://e/a.mp3"]},
        {"model": "wan2.7-image-to-video", "image_start": "https://e/a.png", "image_end": "https://e/b.png",
         "generation_mode": "first_last_frame"},
        {"model": "wan2.7-image-to-video", "image_start": "https://e/a.png", "image_end": "https://e/b.png",
         "audio_urls": ["https://e/a.mp3"]},
        {"model": "wan2.7-image-to-video", "video_urls": ["https://e/c.mp4"], "duration": 8},
        {"model": "wan2.7-image-to-video", "video_urls": ["https://e/c.mp4"], "image_end": "https://e/b.png",
         "generation_mode": "video_continuation"},
        {"model": "wan2.7-video-edit", "video_urls": ["https://e/v.mp4"], "duration": 0},
    ],
)
async def test_the_documented_video_input_combinations_are_accepted(client: httpx.AsyncClient,
                                                                    body: dict[str, Any]) -> None:
    assert (await create(client, body, VIDEOS)).status_code == 200


async def test_the_sheet_video_examples_are_accepted(client: httpx.AsyncClient) -> None:
    from conftest import load_fixture

    for name in ("sheet_image_to_video_request.json", "sheet_reference_video_request.json"):
        assert (await create(client, load_fixture(f"evolink/{name}"), VIDEOS)).status_code == 200
    for name in ("sheet_image_edit_request.json", "seed002_image_edit_request.json",
                 "seed002_text_to_image_request.json"):
        assert (await create(client, load_fixture(f"evolink/{name}"), IMAGES)).status_code == 200


# -- task ids and the task endpoint ---------------------------------------------------------------


async def test_task_id_has_the_documented_format_and_other_formats_are_400(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    prefix, unix, suffix = task["id"].rsplit("-", 2)
    assert (prefix, unix, len(suffix)) == ("task-unified", str(task["created"]), 8)
    err = assert_error(await client.get(f"{TASKS}/task_123"), 400, "invalid_task_id", "invalid_request_error")
    assert err["param"] == "task_id"


async def test_unknown_task_is_404_task_not_found(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{TASKS}/task-unified-1757165031-uyujaw3d"), 404, "task_not_found",
                 "invalid_request_error")


# -- life cycle -----------------------------------------------------------------------------------


def age(state: EmulatorState, task_id: str, seconds: float) -> None:
    state.tasks[task_id].created_at -= seconds


async def test_image_task_goes_pending_processing_completed_with_the_seed_fields() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "evolink", KEY) as client:
        created = (await create(client)).json()
        # Seed 002's create response plus the sheet's `usage`: images are pre-charged on n.
        assert set(created) == {"created", "id", "model", "object", "progress", "status", "task_info", "type",
                                "usage"}
        assert created["usage"] == {"billing_rule": "per_image", "credits_reserved": 6, "user_group": "default"}
        assert (created["model"], created["object"], created["type"], created["status"], created["progress"]) == (
            "wan-2.7-image", "image.generation.task", "image", "pending", 0)
        assert created["task_info"]["can_cancel"] is True
        assert isinstance(created["task_info"]["estimated_time"], int)

        url = f"{TASKS}/{created['id']}"
        assert (await client.get(url)).json()["status"] == "pending"
        age(state, created["id"], 90)
        processing = (await client.get(url)).json()
        assert processing["status"] == "processing"
        assert 1 <= processing["progress"] <= 99
        assert processing["task_info"] == {"can_cancel": False}
        assert "results" not in processing and "usage" not in processing
        age(state, created["id"], 60)
        done = (await client.get(url)).json()
        assert (done["status"], done["progress"]) == ("completed", 100)
        assert done["results"] == [f"{IN_PROCESS_BASE}/_media/{created['id']}/0.png"]
        assert "error" not in done


async def test_video_create_carries_usage_with_the_price_as_credits(client: httpx.AsyncClient) -> None:
    created = (await create(client, video_body(duration=2, quality="720p"), VIDEOS)).json()
    assert (created["object"], created["type"]) == ("video.generation.task", "video")
    assert created["usage"] == {"billing_rule": "per_second", "credits_reserved": 0.172, "user_group": "default"}
    hd = (await create(client, video_body(duration=10, quality="1080p"), VIDEOS)).json()
    assert hd["usage"]["credits_reserved"] == 1.44
    polled = (await client.get(f"{TASKS}/{created['id']}")).json()
    assert "usage" not in polled  # our reading: polls do not repeat usage


async def test_reference_and_edit_bill_input_plus_output_seconds(client: httpx.AsyncClient) -> None:
    ref = {"model": "wan2.7-reference-video", "prompt": "x", "video_urls": ["https://e/v.mp4"], "duration": 2}
    assert (await create(client, ref, VIDEOS)).json()["usage"]["credits_reserved"] == round(0.086 * (5 + 2), 4)
    only_images = {"model": "wan2.7-reference-video", "prompt": "x", "image_urls": ["https://e/a.png"], "duration": 2}
    assert (await create(client, only_images, VIDEOS)).json()["usage"]["credits_reserved"] == 0.172
    edit = {"model": "wan2.7-video-edit", "video_urls": ["https://e/v.mp4"]}
    assert (await create(client, edit, VIDEOS)).json()["usage"]["credits_reserved"] == round(0.086 * 10, 4)


async def test_credits_endpoint_reports_balance_and_use(client: httpx.AsyncClient) -> None:
    from conftest import load_fixture

    await create(client, video_body(duration=10), VIDEOS)
    answer = (await client.get("/v1/credits")).json()
    shape = load_fixture("evolink/sheet_credits_response.json")
    assert set(answer) == set(shape) and set(answer["data"]) == set(shape["data"])
    assert answer["data"]["user"] == {"remaining_credits": INITIAL - 0.86, "used_credits": 0.86}


async def test_no_idempotency_every_post_is_a_new_task(client: httpx.AsyncClient) -> None:
    ids = {(await client.post(IMAGES, json=image_body(), headers={"Idempotency-Key": "same"})).json()["id"]
           for _ in range(3)}
    assert len(ids) == 3
    rep = await report(client)
    assert list(rep["tasks_by_body"].values()) == [3]
    assert rep["tasks_by_idempotency_key"] == {}


async def test_insufficient_balance_is_402_insufficient_quota() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, initial_credits=0.5))
    async with emulator_client(state, "evolink", KEY) as client:
        assert (await create(client, video_body(duration=5), VIDEOS)).status_code == 200  # 0.43
        err = assert_error(await create(client, video_body(duration=5), VIDEOS), 402, "insufficient_quota",
                           "insufficient_quota")
        assert err["message"] == "Insufficient quota. Please top up your account."
        assert (await report(client))["tasks_created"] == 1


async def test_zero_balance_refuses_images_too(client: httpx.AsyncClient) -> None:
    await client.post("/_emulator/config", json={"balance": 0})
    assert_error(await create(client), 402, "insufficient_quota", "insufficient_quota")


# -- media -----------------------------------------------------------------------------------------


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await client.get(url)
    assert response.status_code == 200
    return response


def decode_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "expected"),
    [("square_hd", (1024, 1024)), ("landscape_16_9", image_size("16:9", "1K")),
     ("portrait_4_3", image_size("3:4", "1K")), ("square", (768, 768)),
     ({"width": 1536, "height": 1024}, (1536, 1024)), ({"width": 2896, "height": 368}, (2896, 368))],
)
async def test_images_decode_at_the_size_the_request_implies(
    client: httpx.AsyncClient, size: Any, expected: tuple[int, int]
) -> None:
    task = (await create(client, image_body(size=size))).json()
    done = await wait_terminal(client, task["id"])
    media = await fetch(client, done["results"][0])
    assert media.headers["content-type"] == "image/png"
    image = decode_image(media.content)
    assert (image.format, image.size) == ("PNG", expected)
    if isinstance(size, str):
        assert PRESET_SIZES[size] == expected  # the adapter's reading of the preset, rendered as such


async def test_n_images_are_n_distinct_results(client: httpx.AsyncClient) -> None:
    task = (await create(client, image_body(n=3, size="landscape_4_3"))).json()
    done = await wait_terminal(client, task["id"])
    assert len(done["results"]) == 3
    blobs = [(await fetch(client, url)).content for url in done["results"]]
    assert len(set(blobs)) == 3
    assert {decode_image(b).size for b in blobs} == {image_size("4:3", "1K")}


async def test_video_is_a_real_mp4_of_the_asked_size_and_duration(client: httpx.AsyncClient) -> None:
    task = (await create(client, video_body(duration=2, aspect_ratio="9:16"), VIDEOS)).json()
    done = await wait_terminal(client, task["id"])
    media = await fetch(client, done["results"][0])
    assert media.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(media.content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        size = (stream.codec_context.width, stream.codec_context.height)
        fps = float(stream.average_rate)
    assert size == video_size("9:16", "720p") == (720, 1280)
    assert frames / fps == pytest.approx(2.0, abs=0.1)


async def test_media_of_a_pending_task_is_404() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "evolink", KEY) as client:
        task = (await create(client)).json()
        assert (await client.get(f"/_media/{task['id']}/0.png")).status_code == 404


# -- faults -----------------------------------------------------------------------------------------


async def test_rate_limit_fault_is_429_without_retry_after(client: httpx.AsyncClient) -> None:
    await set_faults(client, rate_limit={"next": 2})
    limited = await create(client)
    assert_error(limited, 429, "rate_limit_exceeded", "rate_limit_error")
    assert "retry-after" not in limited.headers  # EvoLink documents none
    assert_error(await client.get(f"{TASKS}/task-unified-1757165031-uyujaw3d"), 429, "rate_limit_exceeded",
                 "evo_api_error")
    assert (await create(client)).status_code == 200
    rep = await report(client)
    assert (rep["tasks_created"], rep["faults_injected"]) == (1, {"rate_limit": 2})


async def test_server_error_fault_is_500_internal_error(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    await set_faults(client, server_error={"next": 2})
    assert_error(await create(client), 500, "internal_error", "api_error")
    assert_error(await client.get(f"{TASKS}/{task['id']}"), 500, "internal_error", "api_error")
    assert (await report(client))["tasks_created"] == 1


async def test_fail_task_fault_fails_with_a_retry_later_code_and_refunds(client: httpx.AsyncClient) -> None:
    await set_faults(client, fail_task={"next": 1})
    task = (await create(client, video_body(duration=5), VIDEOS)).json()
    done = await wait_terminal(client, task["id"])
    assert (done["status"], done["progress"]) == ("failed", 0)
    assert done["error"]["code"] == "generation_failed_no_content"
    assert done["error"]["type"] == "task_error"
    assert "results" not in done
    rep = await report(client)
    assert (rep["credits_charged"], rep["credits_refunded"], rep["credits_net"]) == (0.43, 0.43, 0)
    snap = EVOLINK.state(HttpReply(200, {}, json.dumps(done).encode()))
    assert type(snap.error) is e.GenerationFailed


async def test_reject_content_fault_is_the_sheet_failed_task(client: httpx.AsyncClient) -> None:
    await set_faults(client, reject_content={"next": 1})
    task = (await create(client)).json()
    done = await wait_terminal(client, task["id"])
    assert done["error"] == {"code": "content_policy_violation", "type": "task_error",
                             "message": "Content policy violation.\nYour request was blocked by safety filters."}
    snap = EVOLINK.state(HttpReply(200, {}, json.dumps(done).encode()))
    assert (snap.status, type(snap.error), snap.credits_final) == (TaskStatus.FAILED, e.ContentRejected, 0.0)


async def test_drop_fault_loses_the_answer_but_the_task_exists(client: httpx.AsyncClient) -> None:
    await set_faults(client, drop={"next": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client)
    assert (await report(client))["tasks_created"] == 1


async def test_truncate_fault_delivers_less_than_content_length(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    done = await wait_terminal(client, task["id"])
    full = (await fetch(client, done["results"][0])).content
    await set_faults(client, truncate={"next": 1})
    cut = await client.get(done["results"][0])
    assert int(cut.headers["content-length"]) == len(full)
    assert cut.content == full[: len(full) // 2]


# -- the adapter against the emulator ----------------------------------------------------------------


async def send(client: httpx.AsyncClient, call: HttpCall) -> HttpReply:
    if call.json_body is None:
        response = await client.request(call.method, call.path, headers=call.headers)
    else:
        response = await client.request(call.method, call.path, headers={**call.headers,
                                        "Content-Type": "application/json"}, content=call.body_json().encode())
    return HttpReply(response.status_code, dict(response.headers), response.content)


async def round_trip(client: httpx.AsyncClient, request: GenerationRequest) -> tuple[TaskSnapshot, TaskSnapshot]:
    accepted = EVOLINK.accepted(await send(client, EVOLINK.submit(request, "wanp-key")))
    assert accepted.status is TaskStatus.PENDING
    while True:
        snap = EVOLINK.state(await send(client, EVOLINK.poll(accepted.task_id)))
        if snap.status is not TaskStatus.PENDING:
            return accepted, snap
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("params", "expected"),
    [(NeutralParams(seed=5), (1024, 1024)), (NeutralParams(aspect_ratio="16:9", resolution="1K", seed=5),
                                              image_size("16:9", "1K")),
     (NeutralParams(aspect_ratio="21:9", resolution="1K", seed=5), image_size("21:9", "1K")),
     (NeutralParams(aspect_ratio="16:9", resolution="2K", seed=5), (2720, 1520)),
     (NeutralParams(width=1280, height=800, seed=5), (1280, 800))],
)
async def test_adapter_round_trips_images_at_the_mapped_size(
    client: httpx.AsyncClient, params: NeutralParams, expected: tuple[int, int]
) -> None:
    request = GenerationRequest("wan-2.7-image-pro", "A lighthouse at dusk", params)
    accepted, done = await round_trip(client, request)
    assert accepted.credits_reserved == 15  # pre-charged on n (this emulated account's tariff)
    assert done.status is TaskStatus.SUCCEEDED
    assert len(done.output_urls) == 1
    assert decode_image((await fetch(client, done.output_urls[0])).content).size == expected


async def test_adapter_round_trips_an_edit_with_n_outputs(client: httpx.AsyncClient) -> None:
    url = "https://example.com/photo.jpg"
    params = NeutralParams(seed=5, n=2, prompt_extend=True, reference_images=[url])
    request = GenerationRequest("wan-2.7-image", "Make it night", params, (Reference("image", url, url=url),))
    accepted, done = await round_trip(client, request)
    assert done.status is TaskStatus.SUCCEEDED
    assert len(done.output_urls) == 2
    assert (accepted.credits_reserved, done.usage) == (12, Usage(images=2))  # final: per image produced


async def test_adapter_round_trips_a_video_with_its_reserved_credits(client: httpx.AsyncClient) -> None:
    params = NeutralParams(seed=5, duration=2, aspect_ratio="1:1", resolution="720p")
    accepted, done = await round_trip(client, GenerationRequest("wan2.7-text-to-video", "A kite", params))
    assert accepted.credits_reserved == 0.172
    assert done.status is TaskStatus.SUCCEEDED
    assert (done.credits_reserved, done.credits_final) == (None, None)
    with av.open(io.BytesIO((await fetch(client, done.output_urls[0])).content)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.width, ctx.height) == video_size("1:1", "720p")


async def test_adapter_classifies_the_emulator_errors(client: httpx.AsyncClient) -> None:
    bad = await send(client, HttpCall("POST", IMAGES, json_body=image_body(n=9)))
    assert type(EVOLINK.error(bad)) is e.RejectedByProvider
    await set_faults(client, rate_limit={"next": 1}, server_error={"next": 1})
    assert type(EVOLINK.error(await send(client, EVOLINK.poll("task-unified-1-abcdefgh")))) is e.RateLimited
    assert type(EVOLINK.error(await send(client, EVOLINK.poll("task-unified-1-abcdefgh")))) is e.Transient
    assert type(EVOLINK.error(await send(client, EVOLINK.poll("task-unified-1-abcdefgh")))) is e.RejectedByProvider
    await client.post("/_emulator/config", json={"balance": 0})
    assert type(EVOLINK.error(await send(client, HttpCall("POST", IMAGES, json_body=image_body())))) is \
        e.InsufficientCredits
    client.headers.pop("Authorization")
    assert type(EVOLINK.error(await send(client, EVOLINK.poll("task-unified-1-abcdefgh")))) is e.AuthenticationFailed


# -- end to end through the engine ---------------------------------------------------------------------

FAST = EngineSettings(poll_initial_s=0.01, poll_max_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02,
                      submits_per_second=1000.0)


#: the spec fields every dataset of this module shares
EMULATED = {"provider": "evolink", "endpoint": "emulator"}
LIGHTHOUSE = [{"prompt_id": "a", "prompt": "A lighthouse"}]


async def run_dataset(path: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    spec = load_spec(path)
    plan = build_plan(spec)
    async with open_session(spec, FAST) as session:
        outcomes = await session.engine.run(list(plan.tasks))
        rows = lineage_table(session.ledger, spec.name).to_pylist()
    return outcomes, rows


async def test_engine_generates_an_image_dataset_end_to_end(e2e_env: Path) -> None:
    rows = [
        {"prompt_id": "fox", "prompt": "A red fox at dawn", "aspect_ratio": "16:9"},
        {"prompt_id": "pano", "prompt": "A desert panorama", "aspect_ratio": "21:9", "n": "2"},
        {"prompt_id": "edit", "prompt": "Make it night", "reference_images": '["https://example.com/photo.jpg"]',
         "prompt_extend": "true", "note": "kept as metadata"},
    ]
    path = write_dataset(e2e_env, rows, name="evo_images", model="wan-2.7-image-pro", params={"resolution": "1K"},
                         **EMULATED)
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["stored"] * 3, [str(o.error) for o in outcomes]
    sizes = {}
    for outcome in outcomes:
        for out in outcome.outputs:
            data = Path(out.media_uri).read_bytes()
            assert decode_image(data).size == (out.width, out.height)
            assert out.warnings is None
            sizes.setdefault(outcome.task.prompt_id, []).append((out.width, out.height))
    assert sizes == {"fox": [image_size("16:9", "1K")], "pano": [image_size("21:9", "1K")] * 2,
                     "edit": [(1024, 1024)]}
    assert len(lineage) == 4
    assert {r["status"] for r in lineage} == {"succeeded"}
    assert {r["provider"] for r in lineage} == {"evolink"}
    by_id = {r["prompt_id"]: r for r in lineage}
    assert by_id["edit"]["mode"] == "image_edit" and by_id["fox"]["mode"] == "text_to_image"
    assert json.loads(by_id["fox"]["request_json"])["size"] == "landscape_16_9"
    assert json.loads(by_id["pano"]["request_json"])["size"] == dict(zip(("width", "height"),
                                                                         image_size("21:9", "1K"), strict=True))
    assert json.loads(by_id["edit"]["extra_json"]) == {"note": "kept as metadata"}
    for row in lineage:
        assert row["task_id"].startswith("task-unified-")
        # Wan 2.7 image on EvoLink: no documented price; the create answer's reservation is recorded, shared
        # by the task's outputs (this emulated account pre-charges 15 credits per requested pro image).
        assert (row["credits_reserved"], row["cost_usd"]) == (15.0, None)


async def test_engine_generates_a_video_dataset_with_its_cost(e2e_env: Path) -> None:
    rows = [{"prompt_id": "kite", "prompt": "A kite over dunes"},
            {"prompt_id": "boat", "prompt": "A paper boat on a stream", "aspect_ratio": "9:16"}]
    path = write_dataset(e2e_env, rows, name="evo_video", model="wan2.7-text-to-video", **EMULATED,
                         params={"duration": 2, "resolution": "720p"}, budget={"max_usd": 1})
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["stored", "stored"], [str(o.error) for o in outcomes]
    for outcome in outcomes:
        (out,) = outcome.outputs
        assert out.mime_type == "video/mp4"
        assert out.duration_s == pytest.approx(2.0, abs=0.1)
        assert out.warnings is None
    assert len(lineage) == 2
    by_id = {r["prompt_id"]: r for r in lineage}
    assert (by_id["kite"]["width"], by_id["kite"]["height"]) == video_size("16:9", "720p")
    assert (by_id["boat"]["width"], by_id["boat"]["height"]) == video_size("9:16", "720p")
    for row in lineage:
        assert row["mode"] == "text_to_video"
        assert row["credits_reserved"] == pytest.approx(0.172)  # usage.credits_reserved of the create answer
        assert row["cost_usd"] == pytest.approx(0.172)  # 2 s x $0.086, from the catalog
        assert row["cost_source"] == "documented"
        assert json.loads(row["request_json"])["quality"] == "720p"


async def test_engine_resubmits_a_failed_generation_and_lineage_keeps_both_attempts(
    e2e_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05,
                                                            "faults": {"fail_task": {"next": 1}}}))
    path = write_dataset(e2e_env, LIGHTHOUSE, name="evo_retry", model="wan-2.7-image", **EMULATED)
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["stored"]
    assert sorted((r["attempt"], r["status"], r["error_code"]) for r in lineage) == [
        (1, "failed", "generation_failed_no_content"), (2, "succeeded", None)]
    assert lineage[0]["seed"] == lineage[1]["seed"]


async def test_engine_stops_on_content_rejection(e2e_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05,
                                                            "faults": {"reject_content": {"next": 1}}}))
    path = write_dataset(e2e_env, LIGHTHOUSE, name="evo_reject", model="wan-2.7-image", **EMULATED)
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["failed"]
    assert type(outcomes[0].error) is e.ContentRejected
    assert [(r["status"], r["error_code"], r["credits_final"]) for r in lineage] == [
        ("failed", "content_policy_violation", 0.0)]


async def test_engine_never_resends_a_create_whose_answer_was_lost(
    e2e_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EvoLink has no idempotency key: a create whose answer was lost may have bought a task, so neither
    # this run nor the next sends it again (the user decides, e.g. with --resubmit-ambiguous).
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05,
                                                            "faults": {"drop": {"next": 1}}}))
    path = write_dataset(e2e_env, LIGHTHOUSE, name="evo_drop", model="wan-2.7-image", **EMULATED)
    state_file = e2e_env / "state" / "evo_drop" / "emulator_state.json"
    first, _ = await run_dataset(path)
    assert [o.status for o in first] == ["failed"]
    assert isinstance(first[0].error, e.Transient)
    again, lineage = await run_dataset(path)
    assert [o.status for o in again] == ["failed"]
    assert type(again[0].error) is e.AmbiguousSubmission
    emulated = json.loads(state_file.read_text(encoding="utf-8"))
    assert (len(emulated["tasks"]), emulated["submit_requests"]) == (1, 1)
    assert [(r["status"], r["task_id"]) for r in lineage] == [("failed", None)]


def test_example_spec_plans() -> None:
    plan = build_plan(load_spec(EXAMPLES / "evolink.yaml"))
    assert plan.spec.provider == "evolink"
    assert plan.tasks
    assert {t.mode.value for t in plan.tasks} <= {"text_to_image", "image_edit"}
