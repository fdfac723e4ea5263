"""The Runware adapter, sans I/O: we build seed 004's and the sheet's bodies and parse the sheet's answers."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture

from wan_pipeline import errors as e
from wan_pipeline.providers.base import GenerationRequest, HttpReply, Mode, Reference, TaskStatus
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.registry import get_provider
from wan_pipeline.providers.runware import PROVIDER as RUNWARE
from wan_pipeline.providers.runware import image_pixels, task_uuid_for

IMAGE = "alibaba:wan@2.7-image"
PRO = "alibaba:wan@2.7-image-pro"
VIDEO = "alibaba:wan@2.7"


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status=status, headers={"content-type": "application/json", **(headers or {})}, body=raw)


def url_refs(urls: list[str]) -> tuple[Reference, ...]:
    return tuple(Reference(kind="image", source=u, url=u) for u in urls)


def seed_request(fixture: str, **extra: Any) -> tuple[dict[str, Any], GenerationRequest]:
    """Seed 004's example as neutral parameters: every field of the body comes from NeutralParams."""
    body = load_fixture(f"runware/{fixture}")
    settings = body["settings"]
    refs = body.get("inputs", {}).get("referenceImages", [])
    params = NeutralParams(
        width=body["width"], height=body["height"], seed=body["seed"], thinking=settings.get("thinking"),
        color_palette=settings.get("colorPalette"), regions=settings.get("editRegions"),
        reference_images=refs or None, **extra,
    )
    return body, GenerationRequest(model=body["model"], prompt=body["positivePrompt"], params=params,
                                   references=url_refs(refs))


# -- building requests ----------------------------------------------------------------------------


def test_registry_returns_the_runware_adapter() -> None:
    assert get_provider("runware") is RUNWARE
    assert RUNWARE.models() == (IMAGE, PRO, VIDEO)


SEED_EXAMPLES = ["seed004_glasshouse_request.json", "seed004_basalt_request.json", "seed004_kites_request.json",
                 "seed004_carnival_request.json"]


@pytest.mark.parametrize("fixture", SEED_EXAMPLES)
def test_neutral_params_give_each_seed_004_example_task(fixture: str) -> None:
    # Seed 004's examples are the model page's fields alone; the platform options come on top (below).
    expected, request = seed_request(fixture)
    task = RUNWARE.task_object(request, expected["taskUUID"], platform={})
    assert task == expected
    assert json.loads(json.dumps(task)) == expected


@pytest.mark.parametrize("fixture", SEED_EXAMPLES)
def test_submit_sends_the_seed_task_as_a_one_element_array_with_async_delivery_and_cost(fixture: str) -> None:
    expected, request = seed_request(fixture)
    call = RUNWARE.submit(request, "wanp-key-1")
    (task,) = call.json_body
    assert (call.method, call.path, call.headers) == ("POST", "/v1", {})
    uid = RUNWARE.presubmit_task_id(request, "wanp-key-1")
    assert task == {**expected, "taskUUID": uid, "deliveryMethod": "async", "includeCost": True}
    assert json.loads(call.body_json()) == [task]


def test_seed_example_1024_square_also_comes_from_aspect_ratio_and_1k() -> None:
    expected, request = seed_request("seed004_glasshouse_request.json")
    params = request.params.model_copy(update={"width": None, "height": None, "aspect_ratio": "1:1",
                                               "resolution": "1K"})
    task = RUNWARE.task_object(GenerationRequest(request.model, request.prompt, params, request.references),
                               expected["taskUUID"], platform={})
    assert task == expected


def test_region_edit_fragment_of_the_sheet_is_what_regions_become() -> None:
    _, request = seed_request("seed004_kites_request.json")
    task = RUNWARE.task_object(request, str(uuid.uuid4()))
    fragment = load_fixture("runware/sheet_region_edit_settings.json")["settings"]
    assert task["settings"]["editRegions"] == fragment["editRegions"]
    assert RUNWARE.mode(IMAGE, request.params) is Mode.REGION_EDIT


def test_sheet_sync_image_example_is_reproduced_with_delivery_from_provider_params() -> None:
    (expected,) = load_fixture("runware/sheet_image_request_sync.json")
    refs = expected["inputs"]["referenceImages"]
    params = NeutralParams(width=1024, height=1024, seed=22278, thinking=True,
                           color_palette=expected["settings"]["colorPalette"], reference_images=refs,
                           provider_params={"deliveryMethod": "sync"})
    request = GenerationRequest(IMAGE, expected["positivePrompt"], params, url_refs(refs))
    assert RUNWARE.task_object(request, expected["taskUUID"]) == expected


def test_sheet_video_example_is_reproduced_from_aspect_resolution_and_duration() -> None:
    (expected,) = load_fixture("runware/sheet_video_request.json")
    params = NeutralParams(aspect_ratio="16:9", resolution="1080p", duration=5)
    request = GenerationRequest(VIDEO, expected["positivePrompt"], params)
    assert RUNWARE.task_object(request, expected["taskUUID"]) == expected
    # the same size given explicitly
    explicit = NeutralParams(width=1920, height=1080, duration=5)
    assert RUNWARE.task_object(GenerationRequest(VIDEO, expected["positivePrompt"], explicit),
                               expected["taskUUID"]) == expected
    assert RUNWARE.mode(VIDEO, params) is Mode.TEXT_TO_VIDEO


def test_poll_is_the_sheets_get_response_task() -> None:
    call = RUNWARE.poll("9d3f1c2e-5b7a-4f1e-9c1d-2a6b8e4f0c11")
    assert (call.method, call.path) == ("POST", "/v1")
    assert call.json_body == load_fixture("runware/sheet_poll_request.json")


def test_upload_task_has_the_sheets_image_upload_shape() -> None:
    (expected,) = load_fixture("runware/sheet_upload_request.json")
    assert RUNWARE.upload_task(expected["image"], expected["taskUUID"]) == expected


def test_upload_sends_the_local_bytes_as_a_data_uri(tmp_path: Path) -> None:
    ref = Reference(kind="image", source="a.png", path=tmp_path / "a.png", mime_type="image/png")
    call = RUNWARE.upload(IMAGE, ref, b"\x89PNG-bytes")
    assert call is not None and (call.method, call.path) == ("POST", "/v1")
    (task,) = call.json_body
    assert task["taskType"] == "imageUpload"
    assert task["image"] == "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    assert uuid.UUID(task["taskUUID"]).version == 4


def test_local_videos_have_no_upload_route() -> None:
    ref = Reference(kind="video", source="clip.mp4", path=Path("/x/clip.mp4"), mime_type="video/mp4")
    assert RUNWARE.upload(VIDEO, ref, b"....") is None


def test_upload_answer_gives_the_image_uuid_that_travels_in_reference_images() -> None:
    ref = Reference(kind="image", source="a.png", path=Path("/x/a.png"), mime_type="image/png")
    done = RUNWARE.uploaded(ref, reply(200, load_fixture("runware/sheet_upload_response.json")))
    assert done.upload_fields == {"imageUUID": "989ba605-1449-4e1e-b462-cd83ec9c1a67"}
    assert done.url == "https://im.runware.ai/image/ws/0.5/ii/989ba605-1449-4e1e-b462-cd83ec9c1a67.jpg"
    params = NeutralParams(seed=1, reference_images=["a.png"])
    task = RUNWARE.task_object(GenerationRequest(IMAGE, "edit it", params, (done,)), str(uuid.uuid4()))
    assert task["inputs"] == {"referenceImages": ["989ba605-1449-4e1e-b462-cd83ec9c1a67"]}


def test_upload_answer_without_image_uuid_is_transient_and_errors_are_classified() -> None:
    ref = Reference(kind="image", source="a.png")
    with pytest.raises(e.Transient):
        RUNWARE.uploaded(ref, reply(200, {"data": []}))
    with pytest.raises(e.RejectedByProvider):
        RUNWARE.uploaded(ref, reply(200, {"data": [], "errors": [{"code": "invalidImage", "message": "no"}]}))


def test_task_uuid_is_a_deterministic_uuid4_per_idempotency_key() -> None:
    a, b = task_uuid_for("wanp-1"), task_uuid_for("wanp-2")
    assert a == task_uuid_for("wanp-1") and a != b
    parsed = uuid.UUID(a)
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    _, request = seed_request("seed004_basalt_request.json")
    assert RUNWARE.presubmit_task_id(request, "wanp-1") == a
    assert RUNWARE.submit(request, "wanp-1").json_body[0]["taskUUID"] == a


def test_submit_is_deterministic_byte_for_byte() -> None:
    _, request = seed_request("seed004_carnival_request.json")
    assert RUNWARE.submit(request, "k").body_json() == RUNWARE.submit(request, "k").body_json()
    assert RUNWARE.submit(request, "k").to_record() == RUNWARE.submit(request, "k").to_record()


def test_provider_params_pass_through_unchanged_and_win() -> None:
    params = NeutralParams(seed=3, provider_params={"outputFormat": "PNG", "providerSettings": {"alibaba": {"x": 1}}})
    task = RUNWARE.submit(GenerationRequest(IMAGE, "p", params), "k").json_body[0]
    assert task["outputFormat"] == "PNG"
    assert task["providerSettings"] == {"alibaba": {"x": 1}}


def test_auth_header_is_a_bearer_token_added_by_the_engine_only() -> None:
    assert RUNWARE.auth_headers("rw-key") == {"Authorization": "Bearer rw-key"}
    assert "Authorization" not in RUNWARE.submit(GenerationRequest(IMAGE, "p", NeutralParams(seed=1)), "k").headers


def test_every_task_asks_for_async_delivery_with_its_cost_and_nothing_else_unasked() -> None:
    (task,) = RUNWARE.submit(GenerationRequest(IMAGE, "p", NeutralParams(seed=1)), "k").json_body
    assert (task["deliveryMethod"], task["includeCost"]) == ("async", True)
    assert "safety" not in task


@pytest.mark.parametrize(
    ("aspect", "gear", "size"),
    [("1:1", "1K", (1024, 1024)), ("1:1", "2K", (2048, 2048)), ("16:9", "1K", (1360, 768)),
     ("16:9", "2K", (2048, 1152)), ("9:16", "2K", (1152, 2048)), ("21:9", "1K", (1792, 768)),
     ("4:3", "2K", (2048, 1536))],
)
def test_aspect_and_gear_map_to_multiples_of_16_inside_768_to_2048(
    aspect: str, gear: str, size: tuple[int, int]
) -> None:
    assert image_pixels(aspect, gear) == size
    task = RUNWARE.task_object(GenerationRequest(IMAGE, "p", NeutralParams(aspect_ratio=aspect, resolution=gear)), "u")
    assert (task["width"], task["height"]) == size


def test_defaults_are_1024_square_with_no_optional_fields() -> None:
    task = RUNWARE.task_object(GenerationRequest(IMAGE, "p", NeutralParams()), "u", platform={})
    assert task == {"taskType": "imageInference", "taskUUID": "u", "model": IMAGE, "positivePrompt": "p",
                    "width": 1024, "height": 1024}


def test_n_sequential_and_group_mode() -> None:
    params = NeutralParams(seed=5, n=4, sequential=True, thinking=False)
    task = RUNWARE.task_object(GenerationRequest(PRO, "a storyboard", params), "u", platform={})
    assert task["numberResults"] == 4
    assert task["settings"] == {"sequential": True, "thinking": False}
    assert RUNWARE.mode(PRO, params) is Mode.GROUP


@pytest.mark.parametrize(
    ("params", "mode"),
    [(NeutralParams(), Mode.TEXT_TO_IMAGE), (NeutralParams(reference_images=["a.png"]), Mode.IMAGE_EDIT),
     (NeutralParams(reference_images=["a.png"], regions=[[]]), Mode.IMAGE_EDIT),
     (NeutralParams(reference_images=["a.png"], regions=[[[1, 1, 5, 5]]]), Mode.REGION_EDIT)],
)
def test_image_mode_follows_the_inputs(params: NeutralParams, mode: Mode) -> None:
    assert RUNWARE.mode(IMAGE, params) is mode


def test_image_to_video_sends_frame_images_and_no_size() -> None:
    params = NeutralParams(seed=9, resolution="720p", duration=12, reference_images=["a.png", "b.png"],
                           negative_prompt="blur")
    refs = url_refs(["https://x/a.png", "https://x/b.png"])
    task = RUNWARE.task_object(GenerationRequest(VIDEO, "move", params, refs), "u", platform={})
    assert task == {"taskType": "videoInference", "taskUUID": "u", "model": VIDEO, "positivePrompt": "move",
                    "negativePrompt": "blur", "resolution": "720p", "duration": 12, "seed": 9,
                    "inputs": {"frameImages": [{"image": "https://x/a.png", "frame": "first"},
                                               {"image": "https://x/b.png", "frame": "last"}]}}
    assert RUNWARE.mode(VIDEO, params) is Mode.IMAGE_TO_VIDEO
    assert RUNWARE.check(VIDEO, "move", params) == []


def test_references_with_an_asked_for_geometry_are_reference_to_video() -> None:
    # Runware: "exactly one of inputs.frameImages or width/height" — references plus a size are not frames.
    params = NeutralParams(seed=3, resolution="720p", duration=5, aspect_ratio="9:16",
                           reference_images=["a.png"], reference_video="https://x/in.mp4")
    refs = (*url_refs(["https://x/a.png"]), Reference(kind="video", source="https://x/in.mp4", url="https://x/in.mp4"))
    task = RUNWARE.task_object(GenerationRequest(VIDEO, "the dancer from image 1", params, refs), "u", platform={})
    assert task == {"taskType": "videoInference", "taskUUID": "u", "model": VIDEO,
                    "positivePrompt": "the dancer from image 1", "width": 720, "height": 1280, "resolution": "720p",
                    "duration": 5, "seed": 3,
                    "inputs": {"referenceImages": ["https://x/a.png"], "referenceVideos": ["https://x/in.mp4"]}}
    assert RUNWARE.mode(VIDEO, params) is Mode.REFERENCE_TO_VIDEO
    assert RUNWARE.check(VIDEO, "the dancer from image 1", params) == []
    images_only = NeutralParams(aspect_ratio="16:9", reference_images=["a.png"])
    assert RUNWARE.mode(VIDEO, images_only) is Mode.REFERENCE_TO_VIDEO
    assert RUNWARE.mode(VIDEO, NeutralParams(reference_images=["a.png"])) is Mode.IMAGE_TO_VIDEO


def test_video_edit_sends_the_source_video_and_no_size() -> None:
    params = NeutralParams(seed=9, duration=4, reference_video="https://x/in.mp4")
    ref = Reference(kind="video", source="https://x/in.mp4", url="https://x/in.mp4")
    task = RUNWARE.task_object(GenerationRequest(VIDEO, "make it snow", params, (ref,)), "u", platform={})
    assert task["inputs"] == {"video": "https://x/in.mp4"}
    assert "width" not in task and task["resolution"] == "720p"
    assert RUNWARE.mode(VIDEO, params) is Mode.VIDEO_EDIT


@pytest.mark.parametrize(("aspect", "resolution", "size"),
                         [("4:3", "720p", (1088, 832)), ("3:4", "1080p", (1248, 1632)), ("1:1", "720p", (960, 960))])
def test_video_sizes_are_the_sheets_allowed_pairs(aspect: str, resolution: str, size: tuple[int, int]) -> None:
    params = NeutralParams(aspect_ratio=aspect, resolution=resolution)
    task = RUNWARE.task_object(GenerationRequest(VIDEO, "p", params), "u")
    assert (task["width"], task["height"], task["resolution"], task["duration"]) == (*size, resolution, 5)


# -- refusals before anything is sent --------------------------------------------------------------


def issues(model: str, prompt: str = "p", **params: Any) -> dict[str, str]:
    return {i.field: i.reason for i in RUNWARE.check(model, prompt, NeutralParams(**params))}


def test_seed_examples_pass_check() -> None:
    for fixture in SEED_EXAMPLES:
        _, request = seed_request(fixture)
        assert RUNWARE.check(request.model, request.prompt, request.params) == []


@pytest.mark.parametrize(
    ("model", "params", "field", "needle"),
    [
        (IMAGE, {"resolution": "4K"}, "resolution", "'4K' is not one of 1K, 2K"),
        (IMAGE, {"resolution": "720p"}, "resolution", "is not one of 1K, 2K"),
        (IMAGE, {"aspect_ratio": "8:1"}, "aspect_ratio", "cannot fit"),
        (IMAGE, {"aspect_ratio": "1:3", "resolution": "2K"}, "aspect_ratio", "cannot fit"),
        (IMAGE, {"width": 700, "height": 1024}, "width", "768..2048 in steps of 16"),
        (IMAGE, {"width": 1024, "height": 1030}, "height", "768..2048 in steps of 16"),
        (PRO, {"width": 4096, "height": 4096}, "width", "768..2048"),
        (IMAGE, {"watermark": True}, "watermark", "does not support 'watermark'"),
        (IMAGE, {"negative_prompt": "x"}, "negative_prompt", "does not support 'negative_prompt'"),
        (IMAGE, {"prompt_extend": True}, "prompt_extend", "does not support"),
        (IMAGE, {"duration": 5}, "duration", "does not support"),
        (IMAGE, {"reference_video": "https://x/v.mp4"}, "reference_video", "does not support"),
        (IMAGE, {"reference_images": [f"https://x/{i}.png" for i in range(10)]}, "reference_images",
         "at most 9"),
        (IMAGE, {"provider_params": {"taskUUID": "x"}}, "provider_params", "'taskUUID' is set by wan-pipeline"),
        (IMAGE, {"provider_params": {"outputType": "dataURI"}}, "provider_params", "needs outputType 'URL'"),
        (VIDEO, {"thinking": True}, "thinking", "does not support 'thinking'"),
        (VIDEO, {"color_palette": [{"hex": "#000000", "ratio": "50%"}, {"hex": "#111111", "ratio": "25%"},
                                   {"hex": "#222222", "ratio": "25%"}]}, "color_palette", "does not support"),
        (VIDEO, {"audio_setting": "origin"}, "audio_setting", "does not support"),
        (VIDEO, {"resolution": "2K"}, "resolution", "is not one of 720p, 1080p"),
        (VIDEO, {"aspect_ratio": "21:9"}, "aspect_ratio", "is not one of 16:9, 9:16, 1:1, 4:3, 3:4"),
        (VIDEO, {"width": 1024, "height": 1024}, "width", "is not one of"),
        (VIDEO, {"width": 1280, "height": 720, "resolution": "1080p"}, "resolution", "is a 720p size"),
        (VIDEO, {"duration": 16}, "duration", "2..15"),
        (VIDEO, {"duration": 1}, "duration", "2..15"),
        (VIDEO, {"reference_video": "https://x/v.mp4", "duration": 12}, "duration", "at most 10 s"),
        (VIDEO, {"reference_images": ["a.png"], "aspect_ratio": "16:9", "duration": 12}, "duration", "at most 10 s"),
        (VIDEO, {"reference_images": ["a.png"], "aspect_ratio": "21:9"}, "aspect_ratio", "is not one of 16:9"),
        (VIDEO, {"reference_video": "https://x/v.mp4", "width": 1000, "height": 1000}, "width", "is not one of"),
        (VIDEO, {"reference_images": ["a", "b", "c"]}, "reference_images", "at most 2"),
        ("alibaba:wan@2.6", {}, "model", "runware has no model"),
    ],
)
def test_check_refuses_what_the_model_cannot_do(model: str, params: dict[str, Any], field: str, needle: str) -> None:
    found = issues(model, **params)
    assert field in found, found
    assert needle in found[field]


def test_refusal_names_who_supports_it() -> None:
    reason = issues(IMAGE, watermark=True)["watermark"]
    assert "supported by" in reason and "rivya/wan-2-7-image" in reason


def test_prompt_over_3000_characters_is_refused() -> None:
    assert "3001 characters" in issues(IMAGE, prompt="x" * 3001)["prompt"]
    assert issues(IMAGE, prompt="x" * 3000) == {}


# -- estimates ------------------------------------------------------------------------------------


def test_estimates_are_in_usd_from_the_sheets_prices() -> None:
    assert RUNWARE.estimate(IMAGE, NeutralParams()).usd == pytest.approx(0.03)
    assert RUNWARE.estimate(IMAGE, NeutralParams(n=3)).usd == pytest.approx(0.09)
    assert RUNWARE.estimate(PRO, NeutralParams(n=2)).usd == pytest.approx(0.15)
    assert RUNWARE.estimate(IMAGE, NeutralParams()).credits is None
    # video: $0.10/s at 720p, $0.15/s at 1080p (sheet: 2 s @720p = $0.20; 2 s @1080p = $0.30)
    assert RUNWARE.estimate(VIDEO, NeutralParams(duration=2, resolution="720p")).usd == pytest.approx(0.20)
    assert RUNWARE.estimate(VIDEO, NeutralParams(duration=2, resolution="1080p")).usd == pytest.approx(0.30)
    assert RUNWARE.estimate(VIDEO, NeutralParams(width=1920, height=1080)).usd == pytest.approx(0.75)
    # a video edit also pays for its input seconds
    edit = NeutralParams(duration=4, reference_video="https://x/v.mp4")
    assert RUNWARE.estimate(VIDEO, edit).usd == pytest.approx(0.80)


# -- parsing task states --------------------------------------------------------------------------


def test_async_ack_is_pending_under_its_task_uuid() -> None:
    snap = RUNWARE.accepted(reply(200, load_fixture("runware/sheet_async_ack.json")))
    assert (snap.task_id, snap.status) == ("9d3f1c2e-5b7a-4f1e-9c1d-2a6b8e4f0c11", TaskStatus.PENDING)
    assert (snap.output_urls, snap.cost_usd, snap.error) == ((), None, None)


@pytest.mark.parametrize("status", ["processing", "pending", "queued", "scheduled", "waiting"])
def test_every_in_progress_status_is_pending(status: str) -> None:
    body = load_fixture("runware/sheet_processing.json")
    body["data"][0]["status"] = status
    body["data"][0]["progress"] = 40
    snap = RUNWARE.state(reply(200, body))
    assert (snap.status, snap.progress) == (TaskStatus.PENDING, 40.0)


def test_video_success_gives_url_cost_and_seed() -> None:
    snap = RUNWARE.state(reply(200, load_fixture("runware/sheet_video_success.json")))
    assert snap.status is TaskStatus.SUCCEEDED
    assert snap.output_urls == ("https://vm.runware.ai/video/ws/5/vi/b2f0d7c4-8c1e-4e55-9a62-0f3c6d1e2a90.mp4",)
    assert (snap.cost_usd, snap.provider_seed, snap.credits_final) == (0.75, 123456, None)


def test_sync_response_is_already_terminal() -> None:
    snap = RUNWARE.accepted(reply(200, load_fixture("runware/sheet_sync_response.json")))
    assert (snap.task_id, snap.status) == ("135b1aef-72c7-41ff-86b5-8948386dcb33", TaskStatus.SUCCEEDED)
    assert snap.output_urls == ("https://im.runware.ai/image/os/a09d21/ws/3/ii/a18bd5a6-8e90-4356-9824-8c8499c8a74e.jpg",)
    assert (snap.cost_usd, snap.provider_seed) == (0.03, 22278)


@pytest.mark.parametrize("name", ["glasshouse", "basalt", "kites", "carnival"])
def test_seed_004_result_items_parse_with_their_seed_and_cost(name: str) -> None:
    item = load_fixture(f"runware/seed004_{name}_result.json")
    request = load_fixture(f"runware/seed004_{name}_request.json")
    snap = RUNWARE.state(reply(200, {"data": [item]}))
    assert (snap.status, snap.task_id, snap.output_urls) == (TaskStatus.SUCCEEDED, request["taskUUID"],
                                                             (item["imageURL"],))
    assert (snap.cost_usd, snap.provider_seed) == (0.03, request["seed"])


def test_several_results_sum_their_costs() -> None:
    items = [{"taskType": "imageInference", "taskUUID": "u", "status": "success", "imageUUID": f"i{k}",
              "imageURL": f"https://im.runware.ai/{k}.jpg", "seed": 10 + k, "cost": 0.03} for k in range(3)]
    snap = RUNWARE.state(reply(200, {"data": items}))
    assert len(snap.output_urls) == 3
    assert snap.cost_usd == pytest.approx(0.09)
    assert snap.provider_seed == 10


def test_partial_results_with_one_pending_item_are_still_pending() -> None:
    items = [{"taskUUID": "u", "status": "success", "imageURL": "https://im.runware.ai/1.jpg"},
             {"taskUUID": "u", "status": "processing"}]
    assert RUNWARE.state(reply(200, {"data": items})).status is TaskStatus.PENDING


def test_one_failed_item_among_successes_keeps_the_paid_outputs() -> None:
    snap = RUNWARE.state(reply(200, load_fixture("runware/sheet_partial_error.json")))
    assert (snap.status, snap.output_urls) == (TaskStatus.SUCCEEDED, ("https://im.runware.ai/image/.../ok-1.jpg",))


def test_wholly_failed_task_is_generation_failed() -> None:
    body = {"data": [{"taskType": "imageInference", "taskUUID": "u", "status": "error",
                      "error": {"code": "inferenceError", "message": "boom"}}]}
    snap = RUNWARE.state(reply(200, body))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is e.GenerationFailed
    assert (snap.error.code, snap.error.message, snap.task_id) == ("inferenceError", "boom", "u")


def test_top_level_error_for_the_task_on_a_200_is_a_failed_state() -> None:
    body = {"errors": [{"code": "providerContentPolicyViolation", "message": "flagged", "taskUUID": "u",
                        "taskType": "imageInference"}]}
    snap = RUNWARE.state(reply(200, body))
    assert (snap.status, snap.task_id, type(snap.error)) == (TaskStatus.FAILED, "u", e.ContentRejected)


def test_unknown_status_and_bad_answers_are_transient() -> None:
    body = load_fixture("runware/sheet_processing.json")
    body["data"][0]["status"] = "paused"
    with pytest.raises(e.Transient, match="unknown task status 'paused'"):
        RUNWARE.state(reply(200, body))
    for bad in (b"<html>gateway</html>", json.dumps({"data": []}).encode(), json.dumps([1]).encode()):
        with pytest.raises(e.Transient):
            RUNWARE.state(reply(200, bad))


def test_success_without_url_is_a_failed_generation() -> None:
    body = {"data": [{"taskUUID": "u", "status": "success", "imageUUID": "i"}]}
    snap = RUNWARE.state(reply(200, body))
    assert (snap.status, snap.error.code if snap.error else None) == (TaskStatus.FAILED, "no_output")


# -- classifying errors ---------------------------------------------------------------------------

SHEET = load_fixture("runware/sheet_error_codes.json")


@pytest.mark.parametrize("row", SHEET["codes"], ids=lambda r: r["code"])
def test_sheet_error_code_maps_to_its_error_class(row: dict[str, Any]) -> None:
    envelope = {"errors": [{"code": row["code"], "message": "why", "taskUUID": "u", "taskType": "imageInference"}]}
    err = RUNWARE.error(reply(row["http"], envelope))
    assert type(err).__name__ == row["class"]
    assert (err.code, err.message, err.http_status) == (row["code"], "why", row["http"])
    assert err.details["taskUUID"] == "u"


@pytest.mark.parametrize("row", SHEET["codes"], ids=lambda r: r["code"])
def test_sheet_error_code_as_a_task_failure_maps_to_its_task_class(row: dict[str, Any]) -> None:
    body = {"data": [{"taskUUID": "u", "status": "error", "error": {"code": row["code"], "message": "m"}}]}
    snap = RUNWARE.state(reply(200, body))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error).__name__ == row["task_class"]


@pytest.mark.parametrize("row", SHEET["statuses"], ids=lambda r: str(r["http"]))
def test_each_sheet_http_status_with_an_unknown_code_maps_by_status(row: dict[str, Any]) -> None:
    err = RUNWARE.error(reply(row["http"], {"errors": [{"code": "brandNewCode", "message": "m"}]}))
    assert type(err).__name__ == row["class"]


def test_unknown_task_uuid_on_get_response_is_rejected_so_the_engine_resends() -> None:
    err = RUNWARE.error(reply(404, {"errors": [{"code": "taskFailedOrNotFound", "message": "no task"}]}))
    assert type(err) is e.RejectedByProvider


def test_sheet_envelopes_parse() -> None:
    err = RUNWARE.error(reply(401, load_fixture("runware/sheet_error_envelope.json")))
    assert type(err) is e.AuthenticationFailed and err.stops_submissions
    assert err.details["documentation"] == "https://runware.ai/docs/..."
    err = RUNWARE.error(reply(401, load_fixture("runware/sheet_error_invalid_api_key.json")))
    assert (type(err), err.details["parameter"]) == (e.AuthenticationFailed, "apiKey")
    legacy = RUNWARE.error(reply(401, load_fixture("runware/sheet_error_legacy_ws.json")))
    assert (type(legacy), legacy.code) == (e.AuthenticationFailed, "invalidApiKey")


def test_singular_pre_stream_error_shape_is_parsed() -> None:
    body = {"error": {"code": "invalidWidth", "message": "bad width"}, "taskUUID": "u", "taskType": "imageInference"}
    err = RUNWARE.error(reply(400, body))
    assert (type(err), err.code, err.details["taskUUID"]) == (e.RejectedByProvider, "invalidWidth", "u")


def test_rate_limit_keeps_retry_after_and_5xx_without_json_is_transient() -> None:
    limited = {"errors": [{"code": "rateLimitExceeded", "message": "slow"}]}
    err = RUNWARE.error(reply(429, limited, {"Retry-After": "4"}))
    assert (type(err), err.retry_after_s, err.retryable) == (e.RateLimited, 4.0, True)
    err = RUNWARE.error(HttpReply(502, {}, b"<h1>Bad Gateway</h1>"))
    assert (type(err), err.code, err.message) == (e.Transient, "http_502", "<h1>Bad Gateway</h1>")


def test_authentication_element_in_the_body_is_the_sheets_alternative_to_the_header() -> None:
    # We authenticate by header; the body form is documented and the emulator accepts it (emulator tests).
    first, _ = load_fixture("runware/sheet_auth_in_body_request.json")
    assert first == {"taskType": "authentication", "apiKey": "<API_KEY>"}
    ws_ok = RUNWARE.state  # an authentication item alone is not a task answer
    with pytest.raises(e.Transient):
        ws_ok(reply(200, load_fixture("runware/sheet_auth_success_ws.json")))
