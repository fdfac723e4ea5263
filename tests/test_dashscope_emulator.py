"""The emulator speaks DashScope (Model Studio) as providers/dashscope.md describes it (DESIGN §10)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from conftest import emulator_client, png_bytes, write_dataset
from PIL import Image

from wan_pipeline import errors as e
from wan_pipeline.emulator import app as emulator_app
from wan_pipeline.emulator.app import IN_PROCESS_BASE
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.session import open_session
from wan_pipeline.execution.wire import Wire
from wan_pipeline.outputs.lineage import lineage_table
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import GenerationRequest, HttpCall, HttpReply, Reference, TaskStatus, Usage
from wan_pipeline.providers.dashscope import PROVIDER as DASHSCOPE
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.sizes import image_size, video_size

IMAGE = "/api/v1/services/aigc/image-generation/generation"
IMAGE_SYNC = "/api/v1/services/aigc/multimodal-generation/generation"
VIDEO = "/api/v1/services/aigc/video-generation/video-synthesis"
TASKS = "/api/v1/tasks"
KEY = {"Authorization": "Bearer sk-test"}
pytestmark = pytest.mark.emulator("dashscope", KEY)
ASYNC = {"X-DashScope-Async": "enable"}
INITIAL = 100_000
FAST_ENGINE = EngineSettings(poll_initial_s=0.01, poll_max_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02)


def image_body(text: str = "a red fox at dawn", images: tuple[str, ...] = (), model: str = "wan2.7-image",
               **parameters: Any) -> dict[str, Any]:
    content: list[dict[str, str]] = [{"image": url} for url in images]
    content.append({"text": text})
    return {"model": model, "input": {"messages": [{"role": "user", "content": content}]},
            "parameters": {"size": "1K", "n": 1, "watermark": False, "seed": 1, **parameters}}


def video_body(model: str = "wan2.7-t2v", media: list[dict[str, str]] | None = None, prompt: str | None = "a kitten",
               **parameters: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {"prompt": prompt}
    if media is not None:
        inputs["media"] = media
    return {"model": model, "input": inputs,
            "parameters": {"resolution": "720P", "duration": 2, "seed": 1, **parameters}}


def data_uri(size: tuple[int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(size=size)).decode()






async def create(client: httpx.AsyncClient, body: Any = None, path: str = IMAGE,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(path, json=image_body() if body is None else body, headers={**ASYNC, **(headers or {})})


async def wait_terminal(client: httpx.AsyncClient, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = (await client.get(f"{TASKS}/{task_id}")).json()
        if data["output"]["task_status"] not in ("PENDING", "RUNNING"):
            return dict(data)
        assert asyncio.get_running_loop().time() < deadline, f"task still {data['output']['task_status']}"
        await asyncio.sleep(0.02)


async def run(client: httpx.AsyncClient, body: Any = None, path: str = IMAGE, **kw: Any) -> dict[str, Any]:
    created = await create(client, body, path, **kw)
    assert created.status_code == 200, created.text
    return await wait_terminal(client, created.json()["output"]["task_id"])


async def report(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/_emulator/report")).json())


async def set_faults(client: httpx.AsyncClient, **faults: Any) -> None:
    assert (await client.post("/_emulator/faults", json=faults)).status_code == 200


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """DashScope's envelope, exactly: {"request_id", "code", "message"}; returns the message."""
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"request_id", "code", "message"}
    assert data["code"] == code
    assert re.fullmatch(r"[0-9a-f-]{36}", data["request_id"])
    assert isinstance(data["message"], str) and data["message"]
    return str(data["message"])


def image_urls(task: dict[str, Any]) -> list[str]:
    return [item["image"] for choice in task["output"]["choices"] for item in choice["message"]["content"]]


async def png_size(client: httpx.AsyncClient, url: str) -> tuple[int, int]:
    response = await client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as img:
        img.load()
        return img.size


async def mp4_facts(client: httpx.AsyncClient, url: str) -> tuple[int, int, int]:
    response = await client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, sum(1 for _ in container.decode(stream))


# -- auth and headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", IMAGE), ("POST", IMAGE_SYNC), ("POST", VIDEO),
                                              ("GET", f"{TASKS}/x"), ("POST", f"{TASKS}/x/cancel"), ("GET", TASKS),
                                              ("GET", "/api/v1/uploads?action=getPolicy&model=wan2.7-image")])
async def test_missing_key_is_401_invalid_api_key(client: httpx.AsyncClient, method: str, path: str) -> None:
    client.headers.pop("Authorization")
    response = await client.request(method, path, json=image_body() if method == "POST" else None, headers=ASYNC)
    assert assert_error(response, 401, "InvalidApiKey") == "No API-key provided."


async def test_wrong_key_is_401_when_keys_are_configured() -> None:
    async with emulator_client(EmulatorState(EmulatorConfig(api_keys=["sk-right"])), "dashscope", KEY) as client:
        assert assert_error(await create(client), 401, "InvalidApiKey") == "Invalid API-key provided."
        ok = await create(client, headers={"Authorization": "Bearer sk-right"})
        assert ok.status_code == 200


@pytest.mark.parametrize(("path", "body"), [(IMAGE, image_body()), (VIDEO, video_body())])
async def test_async_endpoints_without_the_async_header_are_403(client: httpx.AsyncClient, path: str,
                                                                 body: dict[str, Any]) -> None:
    response = await client.post(path, json=body)
    assert assert_error(response, 403, "AccessDenied") == "current user api does not support synchronous calls"
    assert (await report(client))["tasks_created"] == 0


# -- strict validation ----------------------------------------------------------------------------

LONG_SIDE = data_uri((400, 300))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**image_body(), "extra": 1}, "body.extra is not a parameter of the image API"),
        ({"model": "wan2.7-image", "input": {"prompt": "x"}}, "input must be {\"messages\": [...]}"),
        ({"model": "wan2.7-image", "input": {"messages": {}}}, "input.messages must be a list"),
        ({"model": "wan2.7-image", "input": {"messages": [{"role": "user", "content": [{"text": "a"}]}] * 2}},
         "input.messages must hold exactly one user message (single-turn only)"),
        ({"model": "wan2.7-image", "input": {"messages": [{"role": "assistant", "content": [{"text": "a"}]}]}},
         "input.messages[0] must be {\"role\": \"user\", \"content\": [...]}"),
        (image_body(images=("ftp://x/a.png",)),
         "input.messages[0].content[0].image must be a public HTTP/HTTPS URL, a data URI or an oss:// temp file"),
        (image_body(images=tuple(f"https://x/{i}.png" for i in range(10))),
         "input.messages[0].content takes at most 9 images"),
        (image_body(text=" "), "text is required for text-to-image"),
        (image_body(style="vivid"), "parameters.style is not a parameter of wan2.7-image"),
        (image_body(n=5), "parameters.n must be an integer in [1, 4]"),
        (image_body(n=13, enable_sequential=True), "parameters.n must be an integer in [1, 12] with enable_sequential"),
        (image_body(size="4K"), "parameters.size 4K is only for wan2.7-image-pro text-to-image outside group mode"),
        (image_body(model="wan2.7-image-pro", size="4K", images=("https://x/a.png",)),
         "parameters.size 4K is only for wan2.7-image-pro text-to-image outside group mode"),
        (image_body(size="16:9"), "parameters.size must be 1K, 2K, 4K or \"W*H\""),
        (image_body(size="512*512"), "parameters.size 512*512: total pixels must be in [589824, 4194304]"),
        (image_body(size="2736*1536"), "parameters.size 2736*1536: total pixels must be in [589824, 4194304]"),
        (image_body(size="4000*400"), "parameters.size 4000*400: aspect ratio must be in [1:8, 8:1]"),
        (image_body(seed=-1), "parameters.seed must be an integer in [0, 2147483647]"),
        (image_body(seed="1"), "parameters.seed must be an integer in [0, 2147483647]"),
        (image_body(watermark="false"), "parameters.watermark must be a boolean"),
        (image_body(negative_prompt="x" * 501),
         "parameters.negative_prompt must be a string of at most 500 characters"),
        (image_body(color_palette=[{"hex": "#C2D1E6", "ratio": "23.51%"}, {"hex": "#636574", "ratio": "76.49%"}]),
         "parameters.color_palette must hold 3 to 10 colours"),
        (image_body(color_palette=[{"hex": "#000000", "ratio": "30.00%"}] * 3),
         "parameters.color_palette ratios must sum to 100.00%, not 90.00%"),
        (image_body(color_palette=[{"hex": "#000000", "ratio": "30%"}] * 3),
         "parameters.color_palette[0].ratio must be a percentage with 2 decimals, e.g. 25.00%"),
        (image_body(enable_sequential=True, color_palette=[{"hex": "#000000", "ratio": "50.00%"}] * 2),
         "parameters.color_palette is not available with enable_sequential"),
        (image_body(images=("https://x/a.png",), bbox_list=[]),
         "parameters.bbox_list must have one entry per input image (1)"),
        (image_body(images=("https://x/a.png",), bbox_list=[[[0, 0, 1, 1]] * 3]),
         "parameters.bbox_list[0] must be a list of at most 2 boxes"),
        (image_body(images=("https://x/a.png",), bbox_list=[[[5, 5, 1, 1]]]),
         "parameters.bbox_list[0] boxes must be [x1, y1, x2, y2] pixels with x1<x2, y1<y2"),
    ],
)
async def test_invalid_image_body_is_400_invalid_parameter_and_charges_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    assert assert_error(await create(client, body), 400, "InvalidParameter") == message
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"], rep["balance"]) == (0, 0, INITIAL)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (video_body(prompt=None), "input.prompt is required"),
        (video_body(prompt="x" * 5001), "input.prompt must be a string of at most 5000 characters"),
        ({**video_body(), "input": {"prompt": "x", "negative_prompt": "y" * 501}},
         "input.negative_prompt must be a string of at most 500 characters"),
        ({**video_body(), "input": {"prompt": "x", "style": "anime"}}, "input.style is not a parameter of wan2.7-t2v"),
        (video_body(resolution="480P"), "parameters.resolution must be 720P or 1080P"),
        (video_body(ratio="21:9"), "parameters.ratio must be one of 16:9, 9:16, 1:1, 4:3, 3:4"),
        (video_body(duration=16), "parameters.duration must be an integer in [2, 15]"),
        (video_body(duration=1), "parameters.duration must be an integer in [2, 15]"),
        (video_body(shot_type="multi"), "parameters.shot_type is not a parameter of wan2.7-t2v"),
        (video_body("wan2.7-i2v", ratio="16:9", media=[{"type": "first_frame", "url": "https://x/a.png"}]),
         "parameters.ratio is not a parameter of wan2.7-i2v"),
        (video_body("wan2.7-i2v"), "input.media is required"),
        (video_body("wan2.7-i2v", media=[{"type": "last_frame", "url": "https://x/a.png"}]),
         "input.media: wan2.7-i2v takes first_frame [+ last_frame] [+ driving_audio], or first_clip [+ last_frame]"),
        (video_body("wan2.7-i2v", media=[{"type": "first_frame", "url": "https://x/a.png"},
                                         {"type": "first_clip", "url": "https://x/c.mp4"}]),
         "input.media: wan2.7-i2v takes first_frame [+ last_frame] [+ driving_audio], or first_clip [+ last_frame]"),
        (video_body("wan2.7-i2v", media=[{"type": "reference_image", "url": "https://x/a.png"}]),
         "input.media[0].type must be one of first_frame, last_frame, driving_audio, first_clip for wan2.7-i2v"),
        (video_body("wan2.7-i2v", media=[{"type": "first_clip", "url": "data:video/mp4;base64,AAAA"}]),
         "input.media[0].url must be a public HTTP/HTTPS URL or an oss:// temp file"),
        (video_body("wan2.7-r2v", media=[{"type": "reference_image", "url": f"https://x/{i}"} for i in range(6)]),
         "input.media: wan2.7-r2v takes 1 to 5 reference images and videos combined"),
        (video_body("wan2.7-r2v", duration=12, media=[{"type": "reference_video", "url": "https://x/v.mp4"}]),
         "parameters.duration must be an integer in [2, 10] with a reference video"),
        (video_body("wan2.7-videoedit", media=[{"type": "reference_image", "url": "https://x/a.png"}]),
         "input.media: wan2.7-videoedit takes exactly one video and at most 3 reference images"),
        (video_body("wan2.7-videoedit", duration=11, media=[{"type": "video", "url": "https://x/v.mp4"}]),
         "parameters.duration must be 0 (keep the input length) or an integer in [2, 10]"),
        (video_body("wan2.7-videoedit", audio_setting="mute", media=[{"type": "video", "url": "https://x/v.mp4"}]),
         "parameters.audio_setting must be auto or origin"),
    ],
)
async def test_invalid_video_body_is_400_invalid_parameter(client: httpx.AsyncClient, body: dict[str, Any],
                                                           message: str) -> None:
    assert assert_error(await create(client, body, VIDEO), 400, "InvalidParameter") == message
    assert (await report(client))["tasks_created"] == 0


async def test_model_errors(client: httpx.AsyncClient) -> None:
    assert assert_error(await create(client, {**image_body(), "model": "wan2.7-turbo"}), 404, "ModelNotFound") == (
        "Model not exist: wan2.7-turbo")
    assert assert_error(await create(client, video_body(), IMAGE), 400, "InvalidParameter") == (
        "Model wan2.7-t2v is not supported by the image API")
    assert assert_error(await create(client, image_body(), VIDEO), 400, "InvalidParameter") == (
        "Model wan2.7-image is not supported by the video API")
    response = await client.post(IMAGE, content=b"{nope", headers={**ASYNC, "Content-Type": "application/json"})
    assert assert_error(response, 400, "InvalidParameter") == "body is not valid JSON"


async def test_over_long_image_text_is_truncated_not_refused(client: httpx.AsyncClient) -> None:
    assert (await create(client, image_body(text="x" * 6000))).status_code == 200


async def test_the_keys_the_official_sdk_adds_are_accepted(client: httpx.AsyncClient) -> None:
    assert (await create(client, image_body(is_async=True))).status_code == 200
    body = video_body()
    body["input"].update({"extend_prompt": True, "function": "video-synthesis"})
    assert (await create(client, body, VIDEO)).status_code == 200


# -- life cycle -----------------------------------------------------------------------------------


def age(state: EmulatorState, task_id: str, seconds: float) -> None:
    state.tasks[task_id].created_at -= seconds


async def test_image_task_goes_pending_running_succeeded_with_the_sheet_shapes() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "dashscope", KEY) as client:
        created = (await create(client)).json()
        assert set(created) == {"output", "request_id"}
        assert set(created["output"]) == {"task_status", "task_id"}
        assert created["output"]["task_status"] == "PENDING"
        task_id = created["output"]["task_id"]
        url = f"{TASKS}/{task_id}"

        pending = (await client.get(url)).json()
        assert set(pending["output"]) == {"task_id", "task_status", "submit_time"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", pending["output"]["submit_time"])
        age(state, task_id, 60.5)
        running = (await client.get(url)).json()
        assert running["output"]["task_status"] == "RUNNING"
        assert set(running["output"]) == {"task_id", "task_status", "submit_time", "scheduled_time"}
        age(state, task_id, 60)
        done = (await client.get(url)).json()
        assert set(done) == {"request_id", "output", "usage"}
        assert set(done["output"]) == {"task_id", "task_status", "submit_time", "scheduled_time", "end_time",
                                       "finished", "choices"}
        assert (done["output"]["task_status"], done["output"]["finished"]) == ("SUCCEEDED", True)
        [choice] = done["output"]["choices"]
        assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
        [item] = choice["message"]["content"]
        assert item["type"] == "image"
        assert re.fullmatch(rf"{IN_PROCESS_BASE}/_media/{task_id}/0\.png\?Expires=\d+&OSSAccessKeyId=emulated"
                            r"&Signature=[0-9a-f]+", item["image"])
        assert done["usage"]["size"] == "1024*1024" and done["usage"]["image_count"] == 1
        assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]


async def test_video_task_succeeds_with_video_url_prompts_and_usage(client: httpx.AsyncClient) -> None:
    done = await run(client, video_body(ratio="9:16", prompt_extend=True), VIDEO)
    out = done["output"]
    assert out["task_status"] == "SUCCEEDED"
    assert out["orig_prompt"] == "a kitten" and out["actual_prompt"].startswith("a kitten")
    assert done["usage"] == {"duration": 2, "input_video_duration": 0, "output_video_duration": 2, "video_count": 1,
                             "ratio": "9:16", "SR": 720}
    assert await mp4_facts(client, out["video_url"]) == (720, 1280, 32)
    no_extend = await run(client, video_body(prompt_extend=False, seed=2), VIDEO)
    assert "actual_prompt" not in no_extend["output"]


@pytest.mark.parametrize(
    ("parameters", "images", "size"),
    [
        ({"size": "1K"}, (), (1024, 1024)),
        ({"size": "2K"}, (), (2048, 2048)),
        ({"size": "1360*768"}, (), (1360, 768)),
        ({"size": "5760*720"}, (), (5760, 720)),
        ({"size": "1K"}, (data_uri((300, 400)), LONG_SIDE), image_size("4:3", "1K")),  # the LAST image's aspect
    ],
)
async def test_images_render_in_the_size_the_request_implies(client: httpx.AsyncClient, parameters: dict[str, Any],
                                                             images: tuple[str, ...], size: tuple[int, int]) -> None:
    done = await run(client, image_body(images=images, **parameters))
    assert [await png_size(client, url) for url in image_urls(done)] == [size]
    assert done["usage"]["size"] == f"{size[0]}*{size[1]}"


async def test_pro_text_to_image_takes_4k(client: httpx.AsyncClient) -> None:
    done = await run(client, image_body(model="wan2.7-image-pro", size="4K"))
    assert done["usage"]["size"] == "4096*4096"


async def test_group_mode_returns_the_whole_set_in_one_choice_billed_per_image(client: httpx.AsyncClient) -> None:
    done = await run(client, image_body(enable_sequential=True, n=3))
    assert len(done["output"]["choices"]) == 1
    urls = image_urls(done)
    assert len(urls) == 3 and len(set(urls)) == 3
    images = [(await client.get(url)).content for url in urls]
    assert len(set(images)) == 3  # a set of distinct images, not one image three times
    assert done["usage"]["image_count"] == 3
    assert (await report(client))["credits_charged"] == pytest.approx(0.09)


@pytest.mark.parametrize(("resolution", "ratio"), [("720P", "16:9"), ("720P", "1:1"), ("1080P", "3:4")])
async def test_videos_render_at_the_sheet_sizes(client: httpx.AsyncClient, resolution: str, ratio: str) -> None:
    done = await run(client, video_body(resolution=resolution, ratio=ratio, duration=2), VIDEO)
    assert (await mp4_facts(client, done["output"]["video_url"]))[:2] == video_size(ratio, resolution.lower())


async def test_image_to_video_follows_the_first_frame_and_keeps_the_duration(client: httpx.AsyncClient) -> None:
    done = await run(client, video_body("wan2.7-i2v", prompt=None, duration=3,
                                        media=[{"type": "first_frame", "url": data_uri((300, 400))}]), VIDEO)
    assert await mp4_facts(client, done["output"]["video_url"]) == (832, 1104, 48)


async def test_video_edit_keeps_the_input_length_when_duration_is_absent(client: httpx.AsyncClient) -> None:
    done = await run(client, {"model": "wan2.7-videoedit", "input": {
        "prompt": "make it snow", "media": [{"type": "video", "url": "https://x/v.mp4"}]},
        "parameters": {"resolution": "720P", "audio_setting": "origin"}}, VIDEO)
    assert done["usage"]["duration"] == 5  # an input the emulator cannot see counts as 5 s


async def test_unknown_and_expired_tasks_are_200_unknown(state: EmulatorState, client: httpx.AsyncClient) -> None:
    unknown = await client.get(f"{TASKS}/no-such-task")
    assert unknown.status_code == 200
    assert unknown.json()["output"] == {"task_id": "no-such-task", "task_status": "UNKNOWN"}
    done = await run(client)
    age(state, done["output"]["task_id"], 24 * 3600 + 1)
    expired = (await client.get(f"{TASKS}/{done['output']['task_id']}")).json()
    assert expired["output"]["task_status"] == "UNKNOWN"


async def test_same_body_twice_makes_two_tasks_no_idempotency(client: httpx.AsyncClient) -> None:
    ids = {(await create(client, headers={"Idempotency-Key": "k"})).json()["output"]["task_id"] for _ in range(2)}
    assert len(ids) == 2
    rep = await report(client)
    assert list(rep["tasks_by_body"].values()) == [2]
    assert rep["credits_charged"] == pytest.approx(0.06)


async def test_same_request_renders_identical_bytes(client: httpx.AsyncClient) -> None:
    first = await run(client, image_body(seed=77))
    second = await run(client, image_body(seed=77))
    other = await run(client, image_body(seed=78))
    data = []
    for task in (first, second, other):
        emulator_app._rendered.cache_clear()  # every download renders afresh: determinism, not the cache
        data.append((await client.get(image_urls(task)[0])).content)
    assert data[0] == data[1] != data[2]


# -- cancel, list, sync -----------------------------------------------------------------------------


async def test_cancel_works_only_while_pending_and_refunds() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "dashscope", KEY) as client:
        task_id = (await create(client)).json()["output"]["task_id"]
        cancelled = await client.post(f"{TASKS}/{task_id}/cancel")
        assert cancelled.status_code == 200 and set(cancelled.json()) == {"request_id"}
        out = (await client.get(f"{TASKS}/{task_id}")).json()["output"]
        assert out["task_status"] == "CANCELED" and "end_time" in out
        again = await client.post(f"{TASKS}/{task_id}/cancel")
        assert "PENDING" in assert_error(again, 400, "UnsupportedOperation")
        running = (await create(client, image_body(seed=2))).json()["output"]["task_id"]
        age(state, running, 61)
        assert_error(await client.post(f"{TASKS}/{running}/cancel"), 400, "UnsupportedOperation")
        rep = await report(client)
        assert rep["credits_refunded"] == pytest.approx(0.03)
        assert (await client.get(f"/_media/{task_id}/0.png")).status_code == 404


async def test_task_list_filters_by_model_and_status(client: httpx.AsyncClient) -> None:
    await run(client)
    await run(client, video_body(), VIDEO)
    listed = (await client.get(TASKS, params={"page_no": 1, "page_size": 10})).json()
    assert listed["total"] == 2 and len(listed["data"]) == 2
    videos = (await client.get(TASKS, params={"model_name": "wan2.7-t2v", "status": "SUCCEEDED"})).json()
    assert [row["model_name"] for row in videos["data"]] == ["wan2.7-t2v"]
    assert (await client.get(TASKS, params={"status": "FAILED"})).json()["total"] == 0
    assert_error(await client.get(TASKS, params={"page_size": 0}), 400, "InvalidParameter")


async def test_task_list_by_time_pages_oldest_first_and_reads_back_through_the_adapter(
    client: httpx.AsyncClient, state: EmulatorState
) -> None:
    ids = [(await create(client, image_body(seed=i))).json()["output"]["task_id"] for i in range(5)]
    for i, task_id in enumerate(ids):  # an hour apart, oldest first
        state.tasks[task_id].created_at = 1_790_000_000 + 3600 * i
    entry = (await client.get(TASKS)).json()["data"][0]
    assert set(entry) == {"task_id", "model_name", "status", "gmt_create"}  # no prompt, no parameters
    start, end = datetime.fromtimestamp(1_790_003_600, UTC), datetime.fromtimestamp(1_790_010_800, UTC)
    page = DASHSCOPE.listed(await send(client, DASHSCOPE.list_tasks("wan2.7-image", start, end)))
    assert [t.task_id for t in page.tasks] == ids[1:4]  # both ends inclusive, to the second
    assert (page.page_no, page.total_pages) == (1, 1)
    assert {t.model for t in page.tasks} == {"wan2.7-image"} and page.tasks[0].created.startswith("2026-")
    other = DASHSCOPE.listed(await send(client, DASHSCOPE.list_tasks("wan2.7-image-pro", start, end)))
    assert other.tasks == ()
    paged = (await client.get(TASKS, params={"page_size": 2, "page_no": 3})).json()
    assert ([r["task_id"] for r in paged["data"]], paged["total_page"], paged["total"]) == ([ids[4]], 3, 5)
    assert_error(await client.get(TASKS, params={"status": "DONE"}), 400, "InvalidParameter")


def test_adapter_refuses_a_task_list_of_any_other_shape() -> None:
    for body in ({"data": None}, {"data": [{"task_id": 1}]}, [], {"output": {}}):
        with pytest.raises(e.Transient, match="cannot_reconcile"):
            DASHSCOPE.listed(HttpReply(200, {}, json.dumps(body).encode()))


async def test_sync_image_endpoint_answers_with_the_result(client: httpx.AsyncClient) -> None:
    response = await client.post(IMAGE_SYNC, json=image_body())
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"request_id", "output", "usage"}
    assert data["output"]["finished"] is True and "task_status" not in data["output"]
    assert await png_size(client, image_urls(data)[0]) == (1024, 1024)
    await set_faults(client, reject_content={"next": 1})
    refused = await client.post(IMAGE_SYNC, json=image_body(seed=2))
    assert assert_error(refused, 400, "DataInspectionFailed") == "Output data may contain inappropriate content."


# -- temporary uploads ------------------------------------------------------------------------------


async def test_temporary_upload_flow_gives_an_oss_url_that_needs_the_resolve_header(client: httpx.AsyncClient) -> None:
    policy = await client.get("/api/v1/uploads", params={"action": "getPolicy", "model": "wan2.7-image"})
    assert policy.status_code == 200
    info = policy.json()["data"]
    assert {"policy", "signature", "upload_dir", "upload_host", "oss_access_key_id", "x_oss_object_acl",
            "x_oss_forbid_overwrite"} <= set(info)
    key = f"{info['upload_dir']}/frame.png"
    form = {"OSSAccessKeyId": info["oss_access_key_id"], "Signature": info["signature"], "policy": info["policy"],
            "key": key, "x-oss-object-acl": info["x_oss_object_acl"],
            "x-oss-forbid-overwrite": info["x_oss_forbid_overwrite"], "success_action_status": "200"}
    upload = await client.post(info["upload_host"], data=form,
                               files={"file": ("frame.png", png_bytes(size=(400, 300)), "image/png")})
    assert upload.status_code == 200
    body = image_body(images=(f"oss://{key}",))
    refused = await create(client, body)
    assert "X-DashScope-OssResourceResolve" in assert_error(refused, 400, "InvalidParameter")
    done = await run(client, body, headers={"X-DashScope-OssResourceResolve": "enable"})
    assert await png_size(client, image_urls(done)[0]) == image_size("4:3", "1K")
    unknown = await create(client, image_body(images=("oss://nowhere/x.png",)),
                           headers={"X-DashScope-OssResourceResolve": "enable"})
    assert "not an uploaded temporary file" in assert_error(unknown, 400, "InvalidParameter")


async def test_oss_host_refuses_a_form_without_its_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/_dashscope_oss", data={"key": "x"}, files={"file": ("a.png", b"x", "image/png")})
    assert response.status_code == 400


# -- billing and faults -----------------------------------------------------------------------------


async def test_tasks_reserve_usd_and_an_empty_account_is_arrearage() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, initial_credits=0.1))
    async with emulator_client(state, "dashscope", KEY) as client:
        assert (await create(client, image_body(model="wan2.7-image-pro"))).status_code == 200
        message = assert_error(await create(client, video_body(), VIDEO), 400, "Arrearage")
        assert "good standing" in message
        assert (await report(client))["balance"] == pytest.approx(0.025)


async def test_rate_limit_fault_is_429_throttling_without_retry_after(client: httpx.AsyncClient) -> None:
    await set_faults(client, rate_limit={"next": 2})
    limited = await create(client)
    assert_error(limited, 429, "Throttling.RateQuota")
    assert "retry-after" not in limited.headers
    assert_error(await client.get(f"{TASKS}/x"), 429, "Throttling.RateQuota")
    assert (await create(client)).status_code == 200
    assert (await report(client))["tasks_created"] == 1


async def test_server_error_fault_is_500_on_create_and_a_gateway_503_on_query(client: httpx.AsyncClient) -> None:
    task_id = (await create(client)).json()["output"]["task_id"]
    await set_faults(client, server_error={"next": 2})
    assert_error(await create(client, image_body(seed=9)), 500, "InternalError")
    gateway = await client.get(f"{TASKS}/{task_id}")
    assert (gateway.status_code, gateway.text) == (503, "Service Unavailable")
    assert (await client.get(f"{TASKS}/{task_id}")).status_code == 200


@pytest.mark.parametrize(("fault", "code", "message"), [
    ("fail_task", "InternalError.Algo", "An internal error has occured during algorithm execution."),
    ("reject_content", "DataInspectionFailed", "Output data may contain inappropriate content."),
])
async def test_failed_tasks_carry_code_in_output_and_are_refunded(client: httpx.AsyncClient, fault: str, code: str,
                                                                  message: str) -> None:
    await set_faults(client, **{fault: {"next": 1}})
    done = await run(client, video_body(), VIDEO)
    out = done["output"]
    assert (out["task_status"], out["code"], out["message"]) == ("FAILED", code, message)
    assert "usage" not in done and "video_url" not in out
    rep = await report(client)
    assert rep["credits_charged"] == pytest.approx(0.2)
    assert rep["credits_net"] == pytest.approx(0)


async def test_drop_fault_loses_the_answer_but_the_task_exists_and_is_listed(client: httpx.AsyncClient) -> None:
    await set_faults(client, drop={"next": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client)
    rep = await report(client)
    assert rep["tasks_created"] == 1
    listed = (await client.get(TASKS)).json()
    assert [row["task_id"] for row in listed["data"]] == [rep["tasks"][0]["id"]]  # how a client finds it again


async def test_truncate_fault_delivers_less_than_content_length(client: httpx.AsyncClient) -> None:
    url = image_urls(await run(client))[0]
    full = (await client.get(url)).content
    await set_faults(client, truncate={"next": 1})
    cut = await client.get(url)
    assert int(cut.headers["content-length"]) == len(full) and cut.content == full[: len(full) // 2]


# -- the adapter against the emulator ---------------------------------------------------------------


async def send(client: httpx.AsyncClient, call: HttpCall) -> HttpReply:
    wire = Wire(client, IN_PROCESS_BASE, DASHSCOPE.auth_headers("sk-test"))
    return await wire.send(call)


async def poll_until_done(client: httpx.AsyncClient, task_id: str) -> Any:
    for _ in range(500):
        snap = DASHSCOPE.state(await send(client, DASHSCOPE.poll(task_id)))
        if snap.status is not TaskStatus.PENDING:
            return snap
        await asyncio.sleep(0.02)
    raise AssertionError("task never finished")


@pytest.mark.parametrize(("model", "params", "refs"), [
    ("wan2.7-image", NeutralParams(seed=3, aspect_ratio="16:9", resolution="1K", n=2), ()),
    ("wan2.7-image-pro", NeutralParams(seed=3, sequential=True, n=2, resolution="1K"), ()),
    ("wan2.7-image", NeutralParams(seed=3, resolution="1K", reference_images=["a", "b"],
                                   regions=[[], [[10, 10, 50, 50]]], prompt_extend=True, negative_prompt="blur",
                                   color_palette=[{"hex": "#000000", "ratio": "40.00%"},
                                                  {"hex": "#FFFFFF", "ratio": "35.00%"},
                                                  {"hex": "#FF0000", "ratio": "25.00%"}]),
     (Reference(kind="image", source="a", url="https://x/a.png"), Reference(kind="image", source="b",
                                                                           url="https://x/b.png"))),
    ("wan2.7-t2v", NeutralParams(seed=3, resolution="720p", duration=2, aspect_ratio="1:1", negative_prompt="x"), ()),
    ("wan2.7-i2v", NeutralParams(seed=3, resolution="720p", duration=2, reference_video="c", reference_images=["b"]),
     (Reference(kind="video", source="c", url="https://x/c.mp4"), Reference(kind="image", source="b",
                                                                           url="https://x/b.png"))),
    ("wan2.7-r2v", NeutralParams(seed=3, resolution="720p", duration=2, reference_images=["b"]),
     (Reference(kind="image", source="b", url="https://x/b.png"),)),
    ("wan2.7-videoedit", NeutralParams(seed=3, resolution="720p", reference_video="c", audio_setting="auto"),
     (Reference(kind="video", source="c", url="https://x/c.mp4"),)),
])
async def test_adapter_requests_are_accepted_and_round_trip(client: httpx.AsyncClient, model: str,
                                                            params: NeutralParams,
                                                            refs: tuple[Reference, ...]) -> None:
    assert DASHSCOPE.check(model, "a scene", params) == []
    request = GenerationRequest(model, "a scene", params, references=refs)
    reply = await send(client, DASHSCOPE.submit(request, "wanp-key"))
    assert reply.status == 200, reply.body
    accepted = DASHSCOPE.accepted(reply)
    assert accepted.status is TaskStatus.PENDING
    snap = await poll_until_done(client, accepted.task_id)
    assert (snap.status, snap.task_id) == (TaskStatus.SUCCEEDED, accepted.task_id)
    assert len(snap.output_urls) == (params.n or 1)
    if model.startswith("wan2.7-image"):
        assert snap.cost_usd is None  # the poll answer does not name the model: its usage is priced later
        assert snap.usage == Usage(images=len(snap.output_urls))
    else:
        assert snap.usage == Usage(seconds=snap.raw["usage"]["duration"], resolution="720p")


async def test_adapter_classifies_the_emulator_errors(client: httpx.AsyncClient) -> None:
    # The check refuses 4K on the standard tier; sent anyway (via provider_params), the host refuses it.
    sneaky = NeutralParams(seed=1, provider_params={"size": "4K"})
    err = DASHSCOPE.error(await send(client, DASHSCOPE.submit(GenerationRequest("wan2.7-image", "x", sneaky), "k")))
    assert (type(err), err.code, err.http_status) == (e.RejectedByProvider, "InvalidParameter", 400)
    await set_faults(client, rate_limit={"next": 1}, server_error={"next": 1})
    limited = DASHSCOPE.error(await send(client, DASHSCOPE.poll("x")))
    assert (type(limited), limited.retry_after_s) == (e.RateLimited, None)
    gateway = DASHSCOPE.error(await send(client, DASHSCOPE.poll("x")))
    assert type(gateway) is e.Transient
    lost = DASHSCOPE.state(await send(client, DASHSCOPE.poll("never-created")))
    assert (lost.status, type(lost.error)) == (TaskStatus.FAILED, e.GenerationFailed)
    await set_faults(client, reject_content={"next": 1})
    reply = await send(client, DASHSCOPE.submit(GenerationRequest("wan2.7-image", "x", NeutralParams(seed=2)), "k"))
    snap = await poll_until_done(client, DASHSCOPE.accepted(reply).task_id)
    assert isinstance(snap.error, e.ContentRejected)


# -- end to end: spec -> plan -> engine -> storage -> lineage ---------------------------------------------------

IMAGE_ROWS = [
    {"prompt_id": "fox", "prompt": "a red fox crossing a frosted meadow", "aspect_ratio": "16:9", "resolution": "1K"},
    {"prompt_id": "mug", "prompt": "a ceramic mug, soft window light", "resolution": "1K"},
    {"prompt_id": "comic", "prompt": "a three-panel comic of a cat", "resolution": "1K", "n": "3",
     "sequential": "true"},
    {"prompt_id": "desk", "prompt": "put the clock on the desk", "resolution": "1K",
     "reference_images": json.dumps(["https://example.com/clock.webp", "https://example.com/desk.webp"]),
     "regions": json.dumps([[], [[989, 515, 1138, 681]]])},
]
VIDEO_ROWS = [{"prompt_id": "boat", "prompt": "a paper boat drifting down a rain-soaked street",
               "resolution": "720p", "duration": "2", "aspect_ratio": "16:9"}]


#: the spec fields every dataset of this module shares
EMULATED = {"provider": "dashscope", "endpoint": "emulator"}
LIGHTHOUSE = [{"prompt_id": "a", "prompt": "A lighthouse"}]


async def test_engine_generates_images_and_video_end_to_end_with_lineage(e2e_env: Path) -> None:
    image_spec = load_spec(write_dataset(e2e_env / "img", IMAGE_ROWS, name="dashscope_images", model="wan2.7-image",
                                         params={"watermark": False}, budget={"max_usd": 1}, **EMULATED))
    video_spec = load_spec(write_dataset(e2e_env / "vid", VIDEO_ROWS, name="dashscope_video", model="wan2.7-t2v",
                                         budget={"max_usd": 1}, **EMULATED))
    expected_sizes: dict[str, tuple[int, int] | None] = {
        "fox": image_size("16:9", "1K"), "mug": (1024, 1024), "comic": (1024, 1024), "desk": (1024, 1024),
        "boat": video_size("16:9", "720p")}
    expected_modes = {"fox": "text_to_image", "mug": "text_to_image", "comic": "group", "desk": "region_edit",
                      "boat": "text_to_video"}
    expected_outputs = {"fox": 1, "mug": 1, "comic": 3, "desk": 1, "boat": 1}
    expected_usd = {"fox": 0.03, "mug": 0.03, "comic": 0.09, "desk": 0.03, "boat": 0.2}

    for spec in (image_spec, video_spec):
        plan = build_plan(spec)
        assert {t.prompt_id: t.estimate.usd for t in plan.tasks} == pytest.approx(
            {t.prompt_id: expected_usd[t.prompt_id] for t in plan.tasks})
        assert all(t.estimate.credits is None for t in plan.tasks)
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
                            size = (stream.codec_context.width, stream.codec_context.height)
                        assert out.duration_s == pytest.approx(2.0, abs=0.1)
                        assert out.mime_type == "video/mp4"
                    else:
                        with Image.open(io.BytesIO(data)) as img:
                            img.load()
                            size = img.size
                        assert out.mime_type == "image/png"
                    assert size == expected_sizes[pid]
                    assert out.warnings is None
                    assert "?" not in (out.source_url or "")  # the signed query string is not kept
            table = lineage_table(session.ledger, spec.name).to_pylist()

        assert len(table) == sum(expected_outputs[t.prompt_id] for t in plan.tasks)
        for row in table:
            pid = row["prompt_id"]
            assert (row["status"], row["provider"], row["model"], row["mode"]) == (
                "succeeded", "dashscope", spec.model, expected_modes[pid])
            assert (row["width"], row["height"]) == expected_sizes[pid]
            assert re.fullmatch(r"[0-9a-f-]{36}", row["task_id"])
            assert (row["credits_reserved"], row["credits_final"]) == (None, None)  # DashScope has no credits
            # Per output row: the task's USD split over its files, from the host's usage (images produced,
            # seconds billed) × the submitted model's documented price.
            assert row["cost_usd"] == pytest.approx(expected_usd[pid] / expected_outputs[pid])
            assert row["cost_source"] == "reported"
            request = json.loads(row["request_json"])
            assert request["model"] == spec.model and "Authorization" not in row["request_json"]
            assert request["parameters"]["seed"] == row["seed"]
        if spec is image_spec:
            desk = next(r for r in table if r["prompt_id"] == "desk")
            desk_request = json.loads(desk["request_json"])
            assert desk_request["parameters"]["bbox_list"] == [[], [[989, 515, 1138, 681]]]
            assert [c.get("image") for c in desk_request["input"]["messages"][0]["content"][:2]] == [
                "https://example.com/clock.webp", "https://example.com/desk.webp"]
            assert sum(r["cost_usd"] for r in table) == pytest.approx(0.18)


async def run_dataset(path: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    spec = load_spec(path)
    plan = build_plan(spec)
    async with open_session(spec, FAST_ENGINE) as session:
        outcomes = await session.engine.run(list(plan.tasks))
        return outcomes, lineage_table(session.ledger, spec.name).to_pylist()


async def test_engine_never_resends_a_create_whose_answer_was_lost(e2e_env: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # DashScope has no idempotency key: a create whose answer was lost may have bought a task, so it is never
    # sent again blindly. The next run finds it in GET /api/v1/tasks (its window between its neighbours) and
    # adopts it: one task bought, one request sent, the output stored.
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05,
                                                            "faults": {"drop": {"next": 1}}}))
    path = write_dataset(e2e_env, LIGHTHOUSE, name="ds_drop", model="wan2.7-image", **EMULATED)
    state_file = e2e_env / "state" / "ds_drop" / "emulator_state.json"
    first, _ = await run_dataset(path)
    assert [o.status for o in first] == ["failed"]
    assert isinstance(first[0].error, e.Transient)
    again, lineage = await run_dataset(path)
    assert [o.status for o in again] == ["stored"]
    emulated = json.loads(state_file.read_text(encoding="utf-8"))
    assert (len(emulated["tasks"]), emulated["submit_requests"]) == (1, 1)
    (task_id,) = emulated["tasks"]
    assert [(r["status"], r["task_id"]) for r in lineage] == [("succeeded", task_id)]


async def test_engine_retries_throttling_and_buys_each_output_once(e2e_env: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05,
                                                            "faults": {"rate_limit": {"next": 2}}}))
    rows = [{"prompt_id": "a", "prompt": "A lighthouse"}, {"prompt_id": "b", "prompt": "A harbour"}]
    path = write_dataset(e2e_env, rows, name="ds_429", model="wan2.7-image", params={"resolution": "1K"}, **EMULATED)
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["stored", "stored"]
    emulated = json.loads((e2e_env / "state" / "ds_429" / "emulator_state.json").read_text(encoding="utf-8"))
    assert len(emulated["tasks"]) == 2
    assert emulated["charged"] == pytest.approx(0.06)
    assert sorted(r["prompt_id"] for r in lineage) == ["a", "b"]


async def test_engine_records_a_moderation_failure_as_permanent(e2e_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05,
                                                            "faults": {"reject_content": {"next": 1}}}))
    path = write_dataset(e2e_env, [{"prompt_id": "a", "prompt": "x", "resolution": "720p", "duration": "2"}],
                         name="ds_mod", model="wan2.7-t2v", **EMULATED)
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["failed"]
    assert type(outcomes[0].error) is e.ContentRejected
    assert [(r["status"], r["error_code"], r["error_class"], r["cost_usd"], r["cost_source"]) for r in lineage] == [
        ("failed", "DataInspectionFailed", "ContentRejected", 0.0, "reported")]  # failures are not billed


# -- local reference files through the temporary upload ------------------------------------------------


async def test_local_reference_files_go_through_the_temporary_upload_as_oss_urls(e2e_env: Path) -> None:
    from PIL import Image

    refs = e2e_env / "refs"
    refs.mkdir()
    Image.new("RGB", (640, 480), (20, 120, 200)).save(refs / "frame.png")
    rows = [{"prompt_id": "edit", "prompt": "paint the wall orange", "reference_images": "refs/frame.png"}]
    path = write_dataset(e2e_env, rows, name="ds_upload", model="wan2.7-image", params={"resolution": "1K"}, **EMULATED)
    outcomes, lineage = await run_dataset(path)
    assert [o.status for o in outcomes] == ["stored"], [str(o.error) for o in outcomes]
    (row,) = lineage
    assert row["mode"] == "image_edit"
    body = json.loads(row["request_json"])
    images = [c["image"] for c in body["input"]["messages"][0]["content"] if "image" in c]
    assert len(images) == 1 and images[0].startswith("oss://dashscope-instant/") and images[0].endswith("/frame.png")
    # The emulated storage host received the file (its facts are those of the local file).
    state = json.loads((e2e_env / "state" / "ds_upload" / "emulator_state.json").read_text())
    (stored,) = [f for f in state["files"].values() if f.get("key") == images[0].removeprefix("oss://")]
    assert (stored["width"], stored["height"], stored["size_bytes"]) == (640, 480, (refs / "frame.png").stat().st_size)


async def test_the_storage_host_of_an_upload_policy_never_receives_the_api_key() -> None:
    import httpx

    from wan_pipeline.execution.engine import TaskEngine
    from wan_pipeline.execution.wire import Wire

    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v1/uploads":
            return httpx.Response(200, json={"request_id": "r", "data": {
                "policy": "cG9s", "signature": "sig", "upload_dir": "dashscope-instant/d1",
                "upload_host": "https://oss-storage.example.test", "oss_access_key_id": "ak",
                "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}})
        return httpx.Response(200)

    ref = Reference(kind="image", source="a.png", path=Path("/x/a.png"), mime_type="image/png")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        wire = Wire(client, "https://dashscope-intl.aliyuncs.com", {"Authorization": "Bearer sk-ds-secret"})
        engine = TaskEngine(DASHSCOPE, wire, None, None, None)  # type: ignore[arg-type]
        first = DASHSCOPE.upload("wan2.7-image", ref, b"\x89PNG-data")
        assert first is not None
        done = await engine.references.upload(replace(ref, data=b"\x89PNG-data"), first)
    assert done.url == "oss://dashscope-instant/d1/a.png" and done.data is None
    assert [str(r.url) for r in seen] == [
        "https://dashscope-intl.aliyuncs.com/api/v1/uploads?action=getPolicy&model=wan2.7-image",
        "https://oss-storage.example.test",
    ]
    assert seen[0].headers["Authorization"] == "Bearer sk-ds-secret"
    assert "Authorization" not in seen[1].headers
    assert b"\x89PNG-data" in seen[1].read() and b'name="key"' in seen[1].read()
