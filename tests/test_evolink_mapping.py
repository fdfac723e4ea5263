"""The EvoLink adapter, sans I/O: we build seed 002's and the sheet's request bodies from neutral
parameters, parse every documented task state and classify every documented error."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture

from wan_pipeline import errors as e
from wan_pipeline.providers import evolink as evo
from wan_pipeline.providers.base import GenerationRequest, HttpReply, Mode, Reference, TaskStatus
from wan_pipeline.providers.evolink import PROVIDER as EVOLINK
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.registry import get_provider
from wan_pipeline.providers.sizes import image_size

SEED_PROMPT = "A cinematic portrait of a traveler in neon rain"


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status=status, headers={"content-type": "application/json", **(headers or {})}, body=raw)


def envelope(code: Any, message: str = "something", type_: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if type_ is not None:
        err["type"] = type_
    return {"error": err}


def url_refs(images: Sequence[str] = (), video: str | None = None) -> tuple[Reference, ...]:
    """References as the planner makes them from https URLs in a table."""
    refs = [Reference(kind="image", source=u, url=u) for u in images]
    if video:
        refs.append(Reference(kind="video", source=video, url=video))
    return tuple(refs)


def request(model: str, params: NeutralParams, prompt: str = SEED_PROMPT) -> GenerationRequest:
    refs = url_refs(params.reference_images or [], params.reference_video)
    return GenerationRequest(model=model, prompt=prompt, params=params, references=refs)


def body_of(model: str, params: NeutralParams, prompt: str = SEED_PROMPT) -> Any:
    return EVOLINK.submit(request(model, params, prompt), "wanp-key").json_body


def checks(model: str, prompt: str = SEED_PROMPT, **params: Any) -> dict[str, str]:
    return {i.field: i.reason for i in EVOLINK.check(model, prompt, NeutralParams(**params))}


# -- the seam ---------------------------------------------------------------------------------------


def test_registry_returns_the_evolink_adapter() -> None:
    assert get_provider("evolink") is EVOLINK


def test_catalog_holds_the_seed_image_ids_and_the_sheet_video_ids_exactly() -> None:
    assert EVOLINK.models() == ("wan-2.7-image", "wan-2.7-image-pro", "wan2.7-text-to-video",
                                "wan2.7-image-to-video", "wan2.7-reference-video", "wan2.7-video-edit")


def test_auth_header_is_a_bearer_token() -> None:
    assert EVOLINK.auth_headers("sk-evo-test") == {"Authorization": "Bearer sk-evo-test"}


def test_poll_gets_the_task_by_id() -> None:
    call = EVOLINK.poll("task-unified-1757165031-uyujaw3d")
    assert (call.method, call.path, call.json_body) == ("GET", "/v1/tasks/task-unified-1757165031-uyujaw3d", None)


def test_there_is_no_upload_api_and_no_presubmitted_task_id(tmp_path: Path) -> None:
    ref = Reference(kind="image", source="a.png", path=tmp_path / "a.png", mime_type="image/png")
    assert EVOLINK.upload("wan-2.7-image", ref, b"\x89PNG") is None
    req = request("wan-2.7-image", NeutralParams(seed=1))
    assert EVOLINK.presubmit_task_id(req, "k") is None


# -- golden request bodies --------------------------------------------------------------------------


def test_seed_002_text_to_image_example_is_built_from_neutral_params() -> None:
    params = NeutralParams(aspect_ratio="1:1", resolution="1K", n=1, negative_prompt="blurry, low quality", seed=42)
    call = EVOLINK.submit(request("wan-2.7-image", params), "wanp-key")
    assert (call.method, call.path) == ("POST", "/v1/images/generations")
    assert call.json_body == load_fixture("evolink/seed002_text_to_image_request.json")
    assert json.loads(call.body_json()) == load_fixture("evolink/seed002_text_to_image_request.json")


def test_defaults_alone_give_the_seed_002_text_to_image_body() -> None:
    # Nothing about size or n: we still send n 1 and "square_hd" (1:1 at 1K), never a host default.
    params = NeutralParams(negative_prompt="blurry, low quality", seed=42)
    assert body_of("wan-2.7-image", params) == load_fixture("evolink/seed002_text_to_image_request.json")


def test_seed_002_image_edit_example_with_both_flags() -> None:
    params = NeutralParams(
        aspect_ratio="1:1", resolution="1K", n=1, negative_prompt="blurry, low quality", seed=42,
        reference_images=["https://example.com/photo.jpg"], prompt_extend=True,
        provider_params={"enable_safety_checker": True},
    )
    assert body_of("wan-2.7-image", params) == load_fixture("evolink/seed002_image_edit_request.json")
    assert EVOLINK.mode("wan-2.7-image", params) is Mode.IMAGE_EDIT


def test_sheet_pro_edit_example_with_an_explicit_size() -> None:
    expected = load_fixture("evolink/sheet_image_edit_request.json")
    params = NeutralParams(
        width=1536, height=1024, n=2, negative_prompt="blurry, low quality", seed=42,
        reference_images=["https://example.com/mug.png", "https://example.com/desk.jpg"],
    )
    assert EVOLINK.check("wan-2.7-image-pro", expected["prompt"], params) == []
    assert body_of("wan-2.7-image-pro", params, expected["prompt"]) == expected


def test_sheet_image_to_video_example_first_and_last_frame() -> None:
    expected = load_fixture("evolink/sheet_image_to_video_request.json")
    params = NeutralParams(
        reference_images=["https://example.com/a.png", "https://example.com/b.png"], resolution="1080p",
        duration=8, provider_params={"callback_url": "https://example.com/hooks/evolink"},
    )
    assert EVOLINK.check("wan2.7-image-to-video", expected["prompt"], params) == []
    call = EVOLINK.submit(request("wan2.7-image-to-video", params, expected["prompt"]), "k")
    assert (call.method, call.path) == ("POST", "/v1/videos/generations")
    assert call.json_body == expected


def test_sheet_reference_video_example_with_voice_bindings() -> None:
    expected = load_fixture("evolink/sheet_reference_video_request.json")
    params = NeutralParams(
        reference_images=["https://example.com/girl.jpg", "https://example.com/cup.png"],
        reference_video="https://example.com/man.mp4", duration=10, aspect_ratio="9:16",
        provider_params={"model_params": {"voice_bindings": {"image1": "https://example.com/girl.mp3"}}},
    )
    assert EVOLINK.check("wan2.7-reference-video", expected["prompt"], params) == []
    assert body_of("wan2.7-reference-video", params, expected["prompt"]) == expected
    assert EVOLINK.mode("wan2.7-reference-video", params) is Mode.REFERENCE_TO_VIDEO


def test_submit_is_deterministic_and_carries_no_key_or_auth_header() -> None:
    params = NeutralParams(aspect_ratio="21:9", resolution="2K", seed=7, n=3)
    first = EVOLINK.submit(request("wan-2.7-image", params), "key-a")
    second = EVOLINK.submit(request("wan-2.7-image", params), "key-b")  # EvoLink has no idempotency key
    assert first.headers == second.headers == {}
    assert first.to_record() == second.to_record()


def test_provider_params_pass_through_unchanged_and_win() -> None:
    params = NeutralParams(seed=3, provider_params={"size": "square", "future_knob": {"a": [1, 2]}})
    body = body_of("wan-2.7-image", params)
    assert (body["size"], body["future_knob"]) == ("square", {"a": [1, 2]})


# -- size mapping (presets where one matches, else {width, height}) ---------------------------------


@pytest.mark.parametrize(
    ("aspect", "preset"),
    [("1:1", "square_hd"), ("4:3", "landscape_4_3"), ("3:4", "portrait_4_3"), ("16:9", "landscape_16_9"),
     ("9:16", "portrait_16_9"), ("2:2", "square_hd"), ("32:18", "landscape_16_9")],
)
def test_aspect_at_1k_maps_to_its_preset(aspect: str, preset: str) -> None:
    assert body_of("wan-2.7-image", NeutralParams(aspect_ratio=aspect, resolution="1K", seed=1))["size"] == preset


def test_presets_read_as_the_1k_gear_of_their_aspect() -> None:
    for aspect, preset in evo.SIZE_PRESETS.items():
        assert evo.PRESET_SIZES[preset] == image_size(aspect, "1K")


@pytest.mark.parametrize(
    ("aspect", "gear", "size"),
    [("21:9", "1K", {"width": 1568, "height": 672}), ("8:1", "1K", {"width": 2896, "height": 368}),
     ("1:1", "2K", {"width": 2048, "height": 2048}), ("16:9", "2K", {"width": 2720, "height": 1520}),
     ("3:2", "2K", {"width": 2496, "height": 1664})],
)
def test_other_aspects_and_2k_become_an_explicit_size(aspect: str, gear: str, size: dict[str, int]) -> None:
    body = body_of("wan-2.7-image", NeutralParams(aspect_ratio=aspect, resolution=gear, seed=1))
    assert body["size"] == size
    assert evo.MIN_PIXELS <= size["width"] * size["height"] <= evo.MAX_PIXELS


def test_explicit_2k_sizes_stay_within_five_percent_of_the_gear_size() -> None:
    # The engine expects image_size(aspect, gear) and warns beyond 5 %; the budget clamp stays inside that.
    for aspect in ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "8:1", "1:8", "3:2", "2:3"):
        w, h = evo.explicit_size(aspect, "2K")
        ew, eh = image_size(aspect, "2K")
        assert w * h <= evo.MAX_PIXELS
        assert abs(w / ew - 1) <= 0.05 and abs(h / eh - 1) <= 0.05


def test_only_resolution_given_uses_the_square_default_aspect() -> None:
    assert body_of("wan-2.7-image", NeutralParams(resolution="2K", seed=1))["size"] == {"width": 2048, "height": 2048}


# -- video bodies -------------------------------------------------------------------------------------


def test_text_to_video_maps_every_neutral_field() -> None:
    params = NeutralParams(aspect_ratio="4:3", resolution="720p", duration=2, seed=9, negative_prompt="blur",
                           prompt_extend=False)
    assert body_of("wan2.7-text-to-video", params, "A kite") == {
        "model": "wan2.7-text-to-video", "prompt": "A kite", "negative_prompt": "blur", "aspect_ratio": "4:3",
        "quality": "720p", "duration": 2, "seed": 9, "prompt_extend": False,
    }


def test_image_to_video_modes_follow_the_inputs() -> None:
    first = body_of("wan2.7-image-to-video", NeutralParams(reference_images=["https://x/a.png"], seed=2))
    assert (first["generation_mode"], first["image_start"], "image_end" in first) == ("first_frame", "https://x/a.png",
                                                                                     False)
    cont = body_of("wan2.7-image-to-video", NeutralParams(reference_video="https://x/c.mp4",
                                                          reference_images=["https://x/end.png"], duration=9, seed=2))
    assert (cont["generation_mode"], cont["video_urls"], cont["image_end"]) == (
        "video_continuation", ["https://x/c.mp4"], "https://x/end.png")
    assert "image_start" not in cont


def test_video_edit_maps_the_clip_references_and_audio_setting() -> None:
    params = NeutralParams(reference_video="https://x/in.mp4", reference_images=["https://x/style.png"],
                           audio_setting="origin", seed=5)
    body = body_of("wan2.7-video-edit", params, "Make it snow")
    assert body == {"model": "wan2.7-video-edit", "prompt": "Make it snow", "video_urls": ["https://x/in.mp4"],
                    "image_urls": ["https://x/style.png"], "keep_original_sound": True, "seed": 5}
    auto = body_of("wan2.7-video-edit", NeutralParams(reference_video="https://x/in.mp4", audio_setting="auto"))
    assert auto["keep_original_sound"] is False
    assert EVOLINK.mode("wan2.7-video-edit", params) is Mode.VIDEO_EDIT


def test_local_reference_without_a_url_is_never_sent_as_a_path() -> None:
    ref = Reference(kind="image", source="ref.png", path=Path("/data/ref.png"), mime_type="image/png")
    req = GenerationRequest("wan-2.7-image", "x", NeutralParams(seed=1, reference_images=["ref.png"]), (ref,))
    with pytest.raises(e.ConfigError, match="https"):
        EVOLINK.submit(req, "k")


# -- check: refusals before anything is sent ----------------------------------------------------------


def test_seed_002_requests_pass_check() -> None:
    assert checks("wan-2.7-image", n=5, aspect_ratio="16:9", resolution="2K", seed=0) == {}
    assert checks("wan-2.7-image-pro", n=4, reference_images=["https://e/1.png"] * 4, prompt_extend=True) == {}


@pytest.mark.parametrize(
    ("model", "prompt", "params", "field", "reason"),
    [
        ("wan-2.7-image", "x" * 2001, {}, "prompt", "2001 characters; wan-2.7-image allows at most 2000"),
        ("wan-2.7-image", "x", {"negative_prompt": "n" * 501}, "negative_prompt", "at most 500"),
        ("wan-2.7-image", "x", {"n": 6}, "n", "1 to 5 per task in text_to_image"),
        ("wan-2.7-image", "x", {"n": 5, "reference_images": ["https://e/a.png"]}, "n", "1 to 4 per task in image_edit"),
        ("wan-2.7-image", "x", {"reference_images": ["https://e/a.png"] * 5}, "reference_images", "1 to 4"),
        ("wan-2.7-image", "x", {"prompt_extend": True}, "prompt_extend", "only in image editing mode"),
        ("wan-2.7-image", "x", {"resolution": "4K"}, "resolution", "'4K' is not one of 1K, 2K"),
        ("wan-2.7-image", "x", {"resolution": "720p"}, "resolution", "'720p' is not one of 1K, 2K"),
        ("wan-2.7-image", "x", {"aspect_ratio": "9:1"}, "aspect_ratio", "outside 1:8..8:1"),
        ("wan-2.7-image", "x", {"width": 512, "height": 512}, "width", "768x768 (589824) to 2048x2048"),
        ("wan-2.7-image", "x", {"width": 4096, "height": 2048}, "width", "768x768 (589824) to 2048x2048"),
        ("wan-2.7-image", "x", {"width": 2880, "height": 320}, "width", "outside the aspect range 1:8..8:1"),
        ("wan-2.7-image", "x", {"width": 1024, "height": 1024, "resolution": "2K"}, "resolution", "either"),
        ("wan-2.7-image", "x", {"reference_images": ["http://e/a.png"]}, "reference_images", "https:// URLs only"),
        ("wan-2.7-image", "x", {"watermark": False}, "watermark", "does not support 'watermark'"),
        ("wan-2.7-image", "x", {"thinking": True}, "thinking", "does not support 'thinking'"),
        ("wan-2.7-image", "x", {"sequential": True}, "sequential", "does not support 'sequential'"),
        ("wan-2.7-image", "x", {"regions": [[[0, 0, 10, 10]]], "reference_images": ["https://e/a.png"]},
         "regions", "does not support 'regions'"),
        ("wan-2.7-image", "x", {"duration": 5}, "duration", "does not support 'duration'"),
        ("wan-2.7-image", "x", {"reference_video": "https://e/v.mp4"}, "reference_video", "does not support"),
        ("wan2.7-text-to-video", "x" * 5001, {}, "prompt", "would silently truncate"),
        ("wan2.7-text-to-video", "x", {"seed": 0}, "seed", "1 to 2147483647"),
        ("wan2.7-text-to-video", "x", {"duration": 16}, "duration", "2 to 15 s"),
        ("wan2.7-text-to-video", "x", {"duration": 1}, "duration", "2 to 15 s"),
        ("wan2.7-text-to-video", "x", {"aspect_ratio": "21:9"}, "aspect_ratio", "not one of 16:9, 9:16, 1:1"),
        ("wan2.7-text-to-video", "x", {"resolution": "2K"}, "resolution", "not one of 720p, 1080p"),
        ("wan2.7-text-to-video", "x", {"n": 2}, "n", "does not support 'n'"),
        ("wan2.7-text-to-video", "x", {"width": 1280, "height": 720}, "width", "does not support 'width'"),
        ("wan2.7-text-to-video", "x", {"reference_images": ["https://e/a.png"]}, "reference_images",
         "does not support"),
        ("wan2.7-image-to-video", "x", {}, "reference_images", "needs a first frame"),
        ("wan2.7-image-to-video", "x", {"aspect_ratio": "16:9", "reference_images": ["https://e/a.png"]},
         "aspect_ratio", "does not support 'aspect_ratio'"),
        ("wan2.7-image-to-video", "x", {"reference_images": ["https://e/a.png"] * 3}, "reference_images",
         "at most 2"),
        ("wan2.7-image-to-video", "x", {"reference_video": "https://e/v.mp4",
                                        "reference_images": ["https://e/a.png"] * 2}, "reference_images",
         "at most one image"),
        ("wan2.7-reference-video", "x", {}, "reference_images", "at least one reference image or video"),
        ("wan2.7-reference-video", "x", {"reference_images": ["https://e/a.png"] * 5,
                                         "reference_video": "https://e/v.mp4"}, "reference_images", "at most 5 in all"),
        ("wan2.7-reference-video", "x", {"reference_video": "https://e/v.mp4", "duration": 12}, "duration",
         "at most 10 s"),
        ("wan2.7-video-edit", "x", {}, "reference_video", "needs the video to edit"),
        ("wan2.7-video-edit", "x", {"reference_video": "https://e/v.mp4", "duration": 11}, "duration", "2 to 10 s"),
        ("wan2.7-video-edit", "x", {"reference_video": "https://e/v.mp4",
                                    "reference_images": ["https://e/a.png"] * 5}, "reference_images", "at most 4"),
        ("wan2.7-text-to-video", "x", {"audio_setting": "origin"}, "audio_setting", "does not support"),
        ("wan2.7-text-to-video", "x", {"color_palette": [{"hex": "#000000", "ratio": "50.00%"},
                                                         {"hex": "#FFFFFF", "ratio": "25.00%"},
                                                         {"hex": "#FF0000", "ratio": "25.00%"}]},
         "color_palette", "does not support"),
    ],
)
def test_check_refuses_what_evolink_cannot_do(
    model: str, prompt: str, params: dict[str, Any], field: str, reason: str
) -> None:
    found = checks(model, prompt, **params)
    assert field in found, found
    assert reason in found[field]


def test_check_names_who_supports_what_evolink_lacks() -> None:
    reason = checks("wan-2.7-image", watermark=True)["watermark"]
    assert reason.startswith("evolink/wan-2.7-image does not support 'watermark'")
    # Which other provider is named depends on the catalog; rivya's image model takes watermark.
    assert "rivya/wan-2-7-image" in reason


def test_unknown_model_is_refused_with_the_known_ids() -> None:
    found = checks("wan2.7-image", seed=1)
    assert "wan-2.7-image, wan-2.7-image-pro" in found["model"]


def test_modes_follow_the_inputs_and_the_model() -> None:
    assert EVOLINK.mode("wan-2.7-image", NeutralParams()) is Mode.TEXT_TO_IMAGE
    assert EVOLINK.mode("wan-2.7-image-pro", NeutralParams(reference_images=["https://e/a.png"])) is Mode.IMAGE_EDIT
    assert EVOLINK.mode("wan2.7-text-to-video", NeutralParams()) is Mode.TEXT_TO_VIDEO
    assert EVOLINK.mode("wan2.7-image-to-video", NeutralParams()) is Mode.IMAGE_TO_VIDEO


# -- estimates ------------------------------------------------------------------------------------------


def test_image_price_is_unknown_not_guessed() -> None:
    est = EVOLINK.estimate("wan-2.7-image-pro", NeutralParams(n=3))
    assert (est.credits, est.usd) == (None, None)


@pytest.mark.parametrize(
    ("model", "params", "usd"),
    [("wan2.7-text-to-video", {}, 0.43), ("wan2.7-text-to-video", {"duration": 10}, 0.86),
     ("wan2.7-text-to-video", {"duration": 10, "resolution": "1080p"}, 1.44),
     ("wan2.7-image-to-video", {"duration": 8, "resolution": "1080p"}, 1.152),
     ("wan2.7-reference-video", {"duration": 4, "reference_images": ["https://e/a.png"]}, 0.344)],
)
def test_video_estimate_is_seconds_times_the_documented_rate(model: str, params: dict[str, Any], usd: float) -> None:
    est = EVOLINK.estimate(model, NeutralParams(**params))
    assert est.credits is None
    assert est.usd == pytest.approx(usd)


def test_input_plus_output_billing_with_a_clip_of_unknown_length_is_unknown() -> None:
    for model in ("wan2.7-reference-video", "wan2.7-video-edit"):
        est = EVOLINK.estimate(model, NeutralParams(reference_video="https://e/v.mp4", duration=5))
        assert (est.credits, est.usd) == (None, None)


# -- task states ----------------------------------------------------------------------------------------


def test_seed_002_create_response_is_pending() -> None:
    snap = EVOLINK.accepted(reply(200, load_fixture("evolink/seed002_create_response.json")))
    assert (snap.task_id, snap.status, snap.progress) == ("task-unified-1757165031-uyujaw3d", TaskStatus.PENDING, 0)
    assert (snap.credits_reserved, snap.credits_final, snap.output_urls, snap.error) == (None, None, (), None)


def test_sheet_create_response_reserves_its_usage_credits() -> None:
    snap = EVOLINK.accepted(reply(200, load_fixture("evolink/sheet_create_response.json")))
    assert (snap.task_id, snap.status) == ("task-unified-1757169743-7cvnl5zw", TaskStatus.PENDING)
    assert (snap.credits_reserved, snap.credits_final) == (5.0, None)


def test_processing_is_pending_with_progress() -> None:
    snap = EVOLINK.state(reply(200, load_fixture("evolink/sheet_task_processing.json")))
    assert (snap.status, snap.progress, snap.credits_reserved) == (TaskStatus.PENDING, 45.0, None)


def test_completed_task_gives_every_result_url_in_order() -> None:
    snap = EVOLINK.state(reply(200, load_fixture("evolink/sheet_task_completed.json")))
    assert snap.status is TaskStatus.SUCCEEDED
    assert snap.output_urls == ("https://<cdn>/out-1.png", "https://<cdn>/out-2.png")
    assert (snap.error, snap.credits_final, snap.provider_seed, snap.progress) == (None, None, None, 100.0)
    assert snap.raw == load_fixture("evolink/sheet_task_completed.json")


def test_failed_task_with_content_policy_violation_is_content_rejected_and_free() -> None:
    snap = EVOLINK.state(reply(200, load_fixture("evolink/sheet_task_failed.json")))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is e.ContentRejected
    assert snap.error.code == "content_policy_violation"
    assert snap.error.message.startswith("Content policy violation.")
    assert (snap.credits_final, snap.output_urls) == (0.0, ())


def test_every_documented_state_parses() -> None:
    base = load_fixture("evolink/sheet_task_processing.json")
    for status in evo.STATES:
        body = {**base, "status": status}
        if status == "completed":
            body["results"] = ["https://cdn/x.mp4"]
        assert EVOLINK.state(reply(200, body)).status in set(TaskStatus)


def test_completed_without_results_reads_result_data_then_counts_as_failed() -> None:
    body = {**load_fixture("evolink/sheet_task_completed.json")}
    del body["results"]
    body["result_data"] = [{"video_url": "https://cdn/v.mp4", "duration": 5}]
    assert EVOLINK.state(reply(200, body)).output_urls == ("https://cdn/v.mp4",)
    del body["result_data"]
    snap = EVOLINK.state(reply(200, body))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is e.GenerationFailed
    assert snap.error.code == "no_output"


def test_unknown_status_and_non_task_answers_are_transient() -> None:
    with pytest.raises(e.Transient, match="unknown task status 'cancelled'"):
        EVOLINK.state(reply(200, {**load_fixture("evolink/sheet_task_processing.json"), "status": "cancelled"}))
    with pytest.raises(e.Transient) as info:
        EVOLINK.state(reply(200, b"<html>gateway</html>"))
    assert info.value.code == "bad_response"


TASK_CODES = load_fixture("evolink/sheet_task_error_codes.json")
EXPECTED_TASK_CLASS: dict[str, type[e.ProviderError]] = {
    **{c: e.RejectedByProvider for c in TASK_CODES["fix_then_retry"]},
    "content_policy_violation": e.ContentRejected,
    **{c: e.GenerationFailed for c in TASK_CODES["retry_later"]},
    "quota_exceeded": e.InsufficientCredits,
}


@pytest.mark.parametrize("code", [*TASK_CODES["fix_then_retry"], *TASK_CODES["retry_later"]])
def test_every_task_failure_code_maps_to_its_class(code: str) -> None:
    body = {**load_fixture("evolink/sheet_task_failed.json"),
            "error": {"code": code, "message": "why", "type": "task_error"}}
    snap = EVOLINK.state(reply(200, body))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is EXPECTED_TASK_CLASS[code]
    assert (snap.error.code, snap.error.message) == (code, "why")


def test_retry_later_codes_are_resubmitted_fix_then_retry_codes_are_not() -> None:
    assert all(EXPECTED_TASK_CLASS[c] is e.GenerationFailed for c in TASK_CODES["retry_later"] if c != "quota_exceeded")
    assert not any(issubclass(EXPECTED_TASK_CLASS[c], e.GenerationFailed) for c in TASK_CODES["fix_then_retry"])


def test_failed_task_without_error_object_is_generation_failed() -> None:
    snap = EVOLINK.state(reply(200, {**load_fixture("evolink/sheet_task_failed.json"), "error": None}))
    assert type(snap.error) is e.GenerationFailed
    assert snap.error.code == "unknown_error"


# -- HTTP errors ----------------------------------------------------------------------------------------

EXPECTED_HTTP_CLASS: dict[tuple[int, str | None], type[e.ProviderError]] = {
    (400, "invalid_request"): e.RejectedByProvider,
    (400, "invalid_task_id"): e.RejectedByProvider,
    (401, "unauthorized"): e.AuthenticationFailed,
    (402, "insufficient_quota"): e.InsufficientCredits,
    (402, "quota_exceeded"): e.InsufficientCredits,
    (403, "model_access_denied"): e.AuthenticationFailed,
    (403, "permission_denied"): e.AuthenticationFailed,
    (404, "task_not_found"): e.RejectedByProvider,
    (429, "rate_limit_exceeded"): e.RateLimited,
    (500, "internal_error"): e.Transient,
    (502, None): e.Transient,
    (503, None): e.Transient,
}
SHEET_HTTP = [(c["http"], c["code"], c["type"]) for c in load_fixture("evolink/sheet_error_codes.json")["codes"]]


def test_every_http_code_of_the_sheet_has_an_expected_class() -> None:
    assert {(h, c) for h, c, _ in SHEET_HTTP} == set(EXPECTED_HTTP_CLASS)


@pytest.mark.parametrize(("http", "code", "type_"), SHEET_HTTP)
def test_sheet_http_error_maps_to_its_class(http: int, code: str | None, type_: str) -> None:
    body = {"error": {"message": "why", "type": type_, **({"code": code} if code else {})}}
    err = EVOLINK.error(reply(http, body))
    assert type(err) is EXPECTED_HTTP_CLASS[(http, code)]
    assert (err.code, err.message, err.http_status) == (code or f"http_{http}", "why", http)
    assert err.details["type"] == type_


def test_sheet_insufficient_quota_envelope_stops_submissions() -> None:
    err = EVOLINK.error(reply(402, load_fixture("evolink/sheet_error_insufficient_quota.json")))
    assert type(err) is e.InsufficientCredits
    assert (err.code, err.message) == ("insufficient_quota", "Insufficient quota. Please top up your account.")
    assert err.stops_submissions is True


def test_invalid_task_id_keeps_its_param() -> None:
    body = {"error": {"code": "invalid_task_id", "message": "bad id", "type": "invalid_request_error",
                      "param": "task_id"}}
    assert EVOLINK.error(reply(400, body)).details == {"type": "invalid_request_error", "param": "task_id"}


def test_credits_endpoint_integer_code_is_classified_by_type() -> None:
    err = EVOLINK.error(reply(401, envelope(401, "bad key", "authentication_error")))
    assert type(err) is e.AuthenticationFailed
    assert err.code == "401"


def test_rate_limit_without_retry_after_leaves_the_wait_to_backoff_but_honours_one() -> None:
    assert EVOLINK.error(reply(429, envelope("rate_limit_exceeded", type_="rate_limit_error"))).retry_after_s is None
    err = EVOLINK.error(reply(429, envelope("rate_limit_exceeded", type_="evo_api_error"), {"Retry-After": "3"}))
    assert (type(err), err.retry_after_s, err.retryable) == (e.RateLimited, 3.0, True)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, e.RejectedByProvider), (401, e.AuthenticationFailed), (402, e.InsufficientCredits),
     (429, e.RateLimited), (502, e.Transient)],
)
def test_unknown_code_and_type_fall_back_to_the_http_status(status: int, cls: type[e.ProviderError]) -> None:
    err = EVOLINK.error(reply(status, envelope("brand_new_code", type_="brand_new_type")))
    assert type(err) is cls
    assert err.code == "brand_new_code"


def test_non_json_error_body_names_the_status() -> None:
    err = EVOLINK.error(HttpReply(502, {"content-type": "text/html"}, b"<h1>Bad Gateway</h1>"))
    assert (type(err), err.code, err.message) == (e.Transient, "http_502", "<h1>Bad Gateway</h1>")
