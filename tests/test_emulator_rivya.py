"""The emulator speaks Rivya Public API v1 as the sheet and seed 000 describe it (DESIGN §10)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from conftest import emulator_client, png_bytes
from PIL import Image
from pydantic import ValidationError

from wan_pipeline.emulator import app as emulator_app
from wan_pipeline.emulator.app import IN_PROCESS_BASE
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.providers.sizes import image_size

GENERATIONS = "/api/v1/generations"
KEY = {"Authorization": "Bearer test-key"}
pytestmark = pytest.mark.emulator("rivya", KEY)
INITIAL = 100_000


def make_body(prompt: str = "A red fox at dawn", **params: Any) -> dict[str, Any]:
    return {"model": "wan-2-7-image", "prompt": prompt,
            "params": {"aspect_ratio": "1:1", "resolution": "1K", "watermark": "false", "seed": 1, **params}}






async def create(
    client: httpx.AsyncClient, body: dict[str, Any] | None = None, key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post(GENERATIONS, json=body or make_body(), headers=headers)


async def wait_terminal(client: httpx.AsyncClient, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = (await client.get(f"{GENERATIONS}/{task_id}")).json()
        if task["status"] in ("succeeded", "failed"):
            return task
        assert asyncio.get_running_loop().time() < deadline, f"task still {task['status']}"
        await asyncio.sleep(0.02)


async def report(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/_emulator/report")).json()


async def set_faults(client: httpx.AsyncClient, **faults: Any) -> None:
    r = await client.post("/_emulator/faults", json=faults)
    assert r.status_code == 200, r.text


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """The sheet's envelope, exactly: {"error": {"code", "message", "requestId"}}; returns the message."""
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"code", "message", "requestId"}
    assert data["error"]["code"] == code
    assert data["error"]["requestId"].startswith("req_")
    assert isinstance(data["error"]["message"], str)
    assert data["error"]["message"]
    return str(data["error"]["message"])


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", GENERATIONS), ("GET", f"{GENERATIONS}/task_x"),
                                              ("GET", "/api/v1/credits")])
async def test_missing_bearer_is_401_api_key_missing(client: httpx.AsyncClient, method: str, path: str) -> None:
    client.headers.pop("Authorization")
    response = await client.request(method, path, json=make_body() if method == "POST" else None)
    assert_error(response, 401, "api_key_missing")


async def test_wrong_key_is_401_api_key_invalid_when_keys_are_configured() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, api_keys=["right-key"]))
    async with emulator_client(state, "rivya", KEY) as client:
        assert_error(await create(client), 401, "api_key_invalid")
        assert_error(await client.get("/api/v1/credits"), 401, "api_key_invalid")
        ok = await client.post(GENERATIONS, json=make_body(), headers={"Authorization": "Bearer right-key"})
        assert ok.status_code == 200
        assert (await report(client))["tasks_created"] == 1


async def test_any_key_is_accepted_when_no_keys_are_configured(client: httpx.AsyncClient) -> None:
    assert (await create(client)).status_code == 200


# -- strict validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (make_body(style="vivid"), "params.style is not a parameter of wan-2-7-image"),
        (make_body(watermark=False), "params.watermark must be one of false, true"),
        (make_body(resolution="4K"), "params.resolution must be one of 1K, 2K"),
        (make_body(aspect_ratio="5:4"), "params.aspect_ratio must be one of 1:1, 16:9, 4:3, 21:9, 3:4, 9:16, 8:1, 1:8"),
        (make_body(seed="1"), "params.seed must be an integer between 0 and 2147483647"),
        (make_body(seed=-1), "params.seed must be an integer between 0 and 2147483647"),
        (make_body(seed=2147483648), "params.seed must be an integer between 0 and 2147483647"),
        (make_body(seed=True), "params.seed must be an integer between 0 and 2147483647"),
        (make_body(prompt="x" * 5001), "prompt must be at most 5000 characters"),
        (make_body(prompt="  "), "prompt is required"),
        ({**make_body(), "files": []}, "unknown field(s): files"),
        ({**make_body(), "model": "wan-2-7-turbo"}, "model must be one of wan-2-7-image, wan-2-7-video"),
        ({**make_body(), "client_request_id": "x" * 129},
         "client_request_id must be a string of at most 128 characters"),
        (make_body(referenceMediaItems=[{"url": "https://elsewhere/a.png", "kind": "image"}]),
         "params.referenceMediaItems[0].url must be a URL returned by /api/v1/files"),
    ],
)
async def test_invalid_body_is_400_validation_failed_and_charges_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    assert assert_error(await create(client, body), 400, "validation_failed") == message
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"], rep["balance"]) == (0, 0, INITIAL)


async def test_body_that_is_not_json_is_400_validation_failed(client: httpx.AsyncClient) -> None:
    response = await client.post(GENERATIONS, content=b"{not json", headers={"Content-Type": "application/json"})
    assert assert_error(response, 400, "validation_failed") == "body is not valid JSON"


async def test_prompt_of_exactly_5000_characters_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await create(client, make_body(prompt="x" * 5000))).status_code == 200


async def test_uploaded_file_url_is_accepted_as_reference(client: httpx.AsyncClient) -> None:
    up = await client.post("/api/v1/files", data={"kind": "image", "model": "wan-2-7-image"},
                           files={"file": ("ref.png", png_bytes(), "image/png")})
    assert up.status_code == 200, up.text
    info = up.json()
    assert (info["kind"], info["name"], info["mime_type"]) == ("image", "ref.png", "image/png")
    items = [{"url": info["url"], "kind": "image", "name": "ref.png", "mimeType": "image/png"}]
    assert (await create(client, make_body(referenceMediaItems=items))).status_code == 200


async def test_upload_checks_the_file_signature_not_the_name(client: httpx.AsyncClient) -> None:
    up = await client.post("/api/v1/files", data={"kind": "image"},
                           files={"file": ("ref.png", b"plain text, not a PNG", "image/png")})
    assert assert_error(up, 400, "validation_failed") == "file type None is not allowed for kind image"


async def test_unknown_task_is_404_not_found(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{GENERATIONS}/task_nope"), 404, "not_found")


# -- task life cycle ------------------------------------------------------------------------------


def age(state: EmulatorState, task_id: str, seconds: float) -> None:
    """Move a task's clock forward without sleeping."""
    state.tasks[task_id].created_at -= seconds


async def test_task_goes_queued_processing_succeeded_with_result_urls() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "rivya", KEY) as client:
        created = (await create(client)).json()
        assert set(created) == {"id", "status", "model", "reserved_credits", "final_credits",
                                "created_at", "updated_at", "result", "error"}
        assert created["id"].startswith("task_")
        assert (created["status"], created["model"], created["reserved_credits"], created["final_credits"]) == (
            "queued", "wan-2-7-image", 5, 0)
        assert (created["result"], created["error"]) == (None, None)
        assert created["created_at"].endswith("Z")

        url = f"{GENERATIONS}/{created['id']}"
        assert (await client.get(url)).json()["status"] == "queued"
        age(state, created["id"], 60.5)
        processing = (await client.get(url)).json()
        assert (processing["status"], processing["final_credits"], processing["result"]) == ("processing", 0, None)
        age(state, created["id"], 60)
        done = (await client.get(url)).json()
        assert (done["status"], done["final_credits"], done["error"]) == ("succeeded", 5, None)
        media = f"{IN_PROCESS_BASE}/_media/{created['id']}/0.png"
        assert done["result"] == {"primary_url": media, "urls": [media]}


async def test_task_finishes_after_the_configured_latency(client: httpx.AsyncClient) -> None:
    created = (await create(client)).json()
    assert created["status"] == "processing"  # queue_s=0
    done = await wait_terminal(client, created["id"])
    assert done["status"] == "succeeded"
    assert len(done["result"]["urls"]) == 1


@pytest.mark.parametrize(
    ("aspect", "resolution"),
    [("1:1", "1K"), ("16:9", "1K"), ("9:16", "1K"), ("21:9", "1K"), ("8:1", "1K"), ("1:8", "1K"), ("4:3", "2K")],
)
async def test_result_png_decodes_at_the_size_of_aspect_and_resolution(
    client: httpx.AsyncClient, aspect: str, resolution: str
) -> None:
    task = (await create(client, make_body(aspect_ratio=aspect, resolution=resolution))).json()
    done = await wait_terminal(client, task["id"])
    media = await client.get(done["result"]["primary_url"])
    assert media.status_code == 200
    assert media.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(media.content))
    image.load()
    assert image.format == "PNG"
    assert image.size == image_size(aspect, resolution)


def test_image_size_for_8_to_1_keeps_the_gear_pixel_count() -> None:
    width, height = image_size("8:1", "1K")
    assert (width % 16, height % 16) == (0, 0)
    assert abs(width * height / 1024**2 - 1) < 0.03
    assert abs(width / height / 8 - 1) < 0.03


async def download_first(client: httpx.AsyncClient, body: dict[str, Any]) -> bytes:
    task = (await create(client, body)).json()
    done = await wait_terminal(client, task["id"])
    return (await client.get(done["result"]["primary_url"])).content


async def test_same_request_renders_identical_bytes_in_separate_emulators() -> None:
    config = EmulatorConfig(queue_s=0, process_s=0)
    emulator_app._rendered.cache_clear()  # prove determinism, not caching
    async with emulator_client(EmulatorState(config), "rivya", KEY) as one:
        first = await download_first(one, make_body(seed=77))
    emulator_app._rendered.cache_clear()
    async with emulator_client(EmulatorState(config), "rivya", KEY) as two:
        second = await download_first(two, make_body(seed=77))
        other_seed = await download_first(two, make_body(seed=78))
    assert first == second
    assert other_seed != first


async def test_media_of_a_pending_task_is_404() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=60, process_s=60))
    async with emulator_client(state, "rivya", KEY) as client:
        task = (await create(client)).json()
        assert (await client.get(f"/_media/{task['id']}/0.png")).status_code == 404


# -- idempotency and credits ----------------------------------------------------------------------


async def test_idempotency_key_replay_with_same_body_returns_the_same_task_charged_once(
    client: httpx.AsyncClient,
) -> None:
    first = await create(client, key="k-1")
    second = await create(client, key="k-1")
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    rep = await report(client)
    assert rep["tasks_created"] == 1
    assert rep["requests_by_idempotency_key"] == {"k-1": 2}
    assert rep["tasks_by_idempotency_key"] == {"k-1": 1}
    assert (rep["credits_charged"], rep["balance"]) == (5, INITIAL - 5)


async def test_same_idempotency_key_with_another_body_is_409_conflict(client: httpx.AsyncClient) -> None:
    assert (await create(client, make_body(seed=1), key="k-1")).status_code == 200
    message = assert_error(await create(client, make_body(seed=2), key="k-1"), 409, "idempotency_conflict")
    assert "different request" in message
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"]) == (1, 5)


async def test_without_idempotency_key_every_request_is_a_new_task(client: httpx.AsyncClient) -> None:
    ids = {(await create(client)).json()["id"] for _ in range(3)}
    assert len(ids) == 3
    rep = await report(client)
    assert list(rep["tasks_by_body"].values()) == [3]  # one body, three tasks
    assert (rep["tasks_created"], rep["credits_charged"]) == (3, 15)


async def test_each_task_costs_5_credits_and_the_balance_goes_down(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/credits")).json() == {"current_credits": INITIAL}
    for seed in (1, 2, 3):
        task = (await create(client, make_body(seed=seed))).json()
        assert task["reserved_credits"] == 5
    assert (await client.get("/api/v1/credits")).json() == {"current_credits": INITIAL - 15}
    rep = await report(client)
    assert (rep["credits_charged"], rep["credits_net"], rep["balance"]) == (15, 15, INITIAL - 15)


async def test_insufficient_balance_is_402_insufficient_credits() -> None:
    state = EmulatorState(EmulatorConfig(queue_s=0, process_s=0.05, initial_credits=7))
    async with emulator_client(state, "rivya", KEY) as client:
        assert (await create(client, make_body(seed=1))).status_code == 200
        message = assert_error(await create(client, make_body(seed=2)), 402, "insufficient_credits")
        assert message == "This task needs 5 credits; balance is 2."
        assert (await client.get("/api/v1/credits")).json() == {"current_credits": 2}
        assert (await report(client))["tasks_created"] == 1


async def test_balance_set_through_config_endpoint_is_enforced(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_emulator/config", json={"balance": 4})).json() == {"ok": True}
    assert_error(await create(client), 402, "insufficient_credits")


# -- fault injection ------------------------------------------------------------------------------


async def test_rate_limit_fault_is_429_with_retry_after_then_clears(client: httpx.AsyncClient) -> None:
    await set_faults(client, rate_limit={"next": 1}, retry_after_s=3)
    limited = await create(client, key="k-1")
    assert_error(limited, 429, "rate_limited")
    assert limited.headers["Retry-After"] == "3"
    retried = await create(client, key="k-1")
    assert retried.status_code == 200
    rep = await report(client)
    assert (rep["tasks_created"], rep["credits_charged"]) == (1, 5)
    assert rep["faults_injected"] == {"rate_limit": 1}
    assert rep["requests_by_idempotency_key"] == {"k-1": 2}


async def test_server_error_fault_is_503_on_create_and_500_on_poll(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    await set_faults(client, server_error={"next": 2})
    assert_error(await create(client, make_body(seed=9)), 503, "public_api_disabled")
    assert_error(await client.get(f"{GENERATIONS}/{task['id']}"), 500, "internal_error")
    assert (await client.get(f"{GENERATIONS}/{task['id']}")).status_code == 200
    rep = await report(client)
    assert (rep["tasks_created"], rep["faults_injected"]) == (1, {"server_error": 2})


async def test_fail_task_fault_ends_failed_with_generation_failed_and_refunds(client: httpx.AsyncClient) -> None:
    await set_faults(client, fail_task={"next": 1})
    task = (await create(client)).json()
    assert task["reserved_credits"] == 5
    done = await wait_terminal(client, task["id"])
    assert done["status"] == "failed"
    assert done["error"] == {"code": "generation_failed", "message": "The generation failed."}
    assert (done["result"], done["reserved_credits"], done["final_credits"]) == (None, 5, 0)
    await client.get(f"{GENERATIONS}/{task['id']}")  # polling again refunds nothing more
    rep = await report(client)
    assert (rep["credits_charged"], rep["credits_refunded"], rep["credits_net"]) == (5, 5, 0)
    assert rep["balance"] == INITIAL
    assert (await client.get(f"/_media/{task['id']}/0.png")).status_code == 404


async def test_reject_content_fault_ends_failed_with_a_moderation_code(client: httpx.AsyncClient) -> None:
    await set_faults(client, reject_content={"next": 1})
    task = (await create(client)).json()
    done = await wait_terminal(client, task["id"])
    assert (done["status"], done["error"]["code"]) == ("failed", "content_policy_violation")


async def test_drop_fault_loses_the_response_but_the_task_exists(client: httpx.AsyncClient) -> None:
    await set_faults(client, drop={"next": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, key="k-drop")
    rep = await report(client)
    assert rep["tasks_created"] == 1
    assert rep["tasks_by_idempotency_key"] == {"k-drop": 1}
    assert rep["credits_charged"] == 5
    # Retrying with the same key finds the task the lost response described: billed once.
    replay = await create(client, key="k-drop")
    assert replay.json()["id"] == rep["tasks"][0]["id"]
    assert (await report(client))["credits_charged"] == 5


async def test_truncate_fault_delivers_less_than_content_length(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    done = await wait_terminal(client, task["id"])
    full = (await client.get(done["result"]["primary_url"])).content
    await set_faults(client, truncate={"next": 1})
    cut = await client.get(done["result"]["primary_url"])
    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(full)
    assert cut.content == full[: len(full) // 2]
    assert len(cut.content) < int(cut.headers["content-length"])


async def test_unknown_fault_kind_is_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValidationError, match="melt"):
        await client.post("/_emulator/faults", json={"melt": {"next": 1}})


# -- the report -----------------------------------------------------------------------------------


async def test_report_counts_are_exact(client: httpx.AsyncClient) -> None:
    a = (await create(client, make_body(seed=1) | {"client_request_id": "ref-a"}, key="k-a")).json()
    await create(client, make_body(seed=1) | {"client_request_id": "ref-a"}, key="k-a")  # replay
    b = (await create(client, make_body(seed=2), key="k-b")).json()
    assert (await create(client, make_body(resolution="4K"), key="k-bad")).status_code == 400
    await set_faults(client, rate_limit={"next": 1}, fail_task={"next": 1})
    assert (await create(client, make_body(seed=3), key="k-c")).status_code == 429
    c = (await create(client, make_body(seed=3), key="k-c")).json()  # fails, refunded
    await wait_terminal(client, c["id"])
    await wait_terminal(client, a["id"])
    await wait_terminal(client, b["id"])

    rep = await report(client)
    assert rep["tasks_created"] == 3
    assert rep["submit_requests"] == 6
    assert rep["requests_by_idempotency_key"] == {"k-a": 2, "k-b": 1, "k-bad": 1, "k-c": 2}
    assert rep["tasks_by_idempotency_key"] == {"k-a": 1, "k-b": 1, "k-c": 1}
    assert rep["tasks_by_client_ref"] == {"ref-a": 1}
    assert sorted(rep["tasks_by_body"].values()) == [1, 1, 1]
    assert (rep["credits_charged"], rep["credits_refunded"], rep["credits_net"]) == (15, 5, 10)
    assert rep["balance"] == INITIAL - 10
    assert rep["faults_injected"] == {"rate_limit": 1, "fail_task": 1}
    assert sorted((t["id"], t["status"], t["credits"], t["idempotency_key"]) for t in rep["tasks"]) == sorted([
        (a["id"], "succeeded", 5, "k-a"), (b["id"], "succeeded", 5, "k-b"), (c["id"], "failed", 5, "k-c"),
    ])
    assert {t["protocol"] for t in rep["tasks"]} == {"rivya"}
