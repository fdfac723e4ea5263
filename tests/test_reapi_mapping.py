"""The reAPI adapter, sans I/O: we build seed 003's and the sheet's request bodies and parse their answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, load_fixture

from wan_pipeline import errors as e
from wan_pipeline.providers import catalog
from wan_pipeline.providers.base import GenerationRequest, HttpReply, Mode, Reference, TaskStatus
from wan_pipeline.providers.catalog import find_model
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.reapi import PROVIDER as REAPI
from wan_pipeline.providers.registry import get_provider

PRO = "wan2.7-image-pro"
STD = "wan2.7-image"
VIDEO = "wan2.7-video"
FLOWER = "a flower shop with delicate windows and a beautiful wooden door, blossoms out front"
CLOCK, DESK = "https://example.com/clock.webp", "https://example.com/desk.webp"


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status=status, headers={"content-type": "application/json", **(headers or {})}, body=raw)


def envelope(code: int | str, message: str = "something") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": "req_test"}}


def refs(*urls: str) -> tuple[Reference, ...]:
    return tuple(Reference(kind="image", source=u, url=u) for u in urls)


def request(
    model: str, prompt: str, params: NeutralParams, references: tuple[Reference, ...] = ()
) -> GenerationRequest:
    return GenerationRequest(model=model, prompt=prompt, params=params, references=references)


def body_of(model: str, prompt: str, params: NeutralParams, references: tuple[Reference, ...] = ()) -> Any:
    return REAPI.submit(request(model, prompt, params, references), "wanp-key").json_body


# -- building requests: every example body of seed 003 and the sheet ----------------------------------


def test_registry_returns_the_reapi_adapter() -> None:
    assert get_provider("reapi") is REAPI
    assert REAPI.models() == (STD, PRO, VIDEO)


def test_seed_003_quick_example_comes_out_byte_for_byte() -> None:
    text = (FIXTURES / "reapi/seed003_quick_request.json").read_text(encoding="utf-8")
    params = NeutralParams(aspect_ratio="16:9", resolution="2K", n=1)
    call = REAPI.submit(request(PRO, FLOWER, params), "wanp-key")
    assert call.json_body == json.loads(text)
    # Same keys in the same order with the same values: the curl body itself, minus its layout.
    assert json.dumps(call.json_body, separators=(",", ":")) == json.dumps(json.loads(text), separators=(",", ":"))
    assert json.dumps(call.json_body, separators=(",", ":")) == (
        '{"model":"wan2.7-image-pro","prompt":"' + FLOWER + '","size":"16:9","resolution":"2K","n":1}'
    )
    # What goes on the wire (canonical, sorted keys) is the same JSON document.
    assert json.loads(call.body_json()) == json.loads(text)


def test_sheet_4k_pro_text_to_image_example_is_reproduced() -> None:
    expected = load_fixture("reapi/sheet_image_request_t2i_pro_4k.json")
    params = NeutralParams(aspect_ratio="16:9", resolution="4K", n=1, seed=42, thinking=True)
    body = body_of(PRO, expected["prompt"], params)
    assert body == expected
    assert list(body) == list(expected)


def test_sheet_region_edit_example_is_reproduced() -> None:
    expected = load_fixture("reapi/sheet_image_request_region_edit.json")
    params = NeutralParams(resolution="2K", n=1, reference_images=[CLOCK, DESK], regions=[[], [[989, 515, 1138, 681]]])
    body = body_of(STD, expected["prompt"], params, refs(CLOCK, DESK))
    assert body == expected
    assert list(body) == list(expected)


def test_seed_003_bbox_list_fragment_is_what_regions_become() -> None:
    fragment = load_fixture("reapi/seed003_bbox_list_fragment.json")
    params = NeutralParams(reference_images=[CLOCK, DESK], regions=[[], [[989, 515, 1138, 681]]])
    body = body_of(STD, "put the clock into the box", params, refs(CLOCK, DESK))
    assert {k: body[k] for k in fragment} == fragment


def test_seed_003_color_palette_entries_pass_through_verbatim() -> None:
    # The seed's fragment has two colours, but the same page (and the sheet) require 3-10: NeutralParams
    # keeps the rule, and the entries themselves travel unchanged.
    fragment = load_fixture("reapi/seed003_color_palette_fragment.json")["color_palette"]
    with pytest.raises(ValueError, match="color_palette"):
        NeutralParams(color_palette=fragment)
    palette = [fragment[0], {"hex": "#636574", "ratio": "50.00%"}, {"hex": "#FFFFFF", "ratio": "26.49%"}]
    body = body_of(PRO, FLOWER, NeutralParams(color_palette=palette))
    assert body["color_palette"] == palette
    assert body["color_palette"][0] == fragment[0]


def test_sheet_video_example_is_reproduced() -> None:
    expected = load_fixture("reapi/sheet_video_request.json")
    call = REAPI.submit(request(VIDEO, expected["prompt"], NeutralParams(resolution="1080p", duration=5)), "k")
    assert (call.method, call.path) == ("POST", "/api/v1/videos/generations")
    assert call.json_body == expected
    assert list(call.json_body) == list(expected)


def test_every_image_field_maps_to_its_documented_name() -> None:
    params = NeutralParams(
        negative_prompt="blurry, distorted, low quality", seed=7, resolution="2K", n=6, watermark=True,
        thinking=False, sequential=True, reference_images=[CLOCK, DESK], regions=[[[1, 2, 3, 4]], []],
    )
    body = body_of(STD, "a storyboard", params, refs(CLOCK, DESK))
    assert body == {
        "model": STD, "prompt": "a storyboard", "image_urls": [CLOCK, DESK], "bbox_list": [[[1, 2, 3, 4]], []],
        "resolution": "2K", "n": 6, "negative_prompt": "blurry, distorted, low quality", "watermark": True,
        "seed": 7, "thinking_mode": False, "enable_sequential": True,
    }


def test_width_and_height_become_a_pixel_size() -> None:
    body = body_of(STD, "x", NeutralParams(width=1024, height=1536, seed=1))
    assert body["size"] == "1024x1536"
    assert "resolution" not in body


def test_only_what_is_set_is_sent() -> None:
    assert body_of(STD, "a cat", NeutralParams()) == {"model": STD, "prompt": "a cat"}
    assert body_of(VIDEO, "a boat", NeutralParams(seed=5)) == {"model": VIDEO, "prompt": "a boat"}


def test_provider_params_pass_through_unchanged() -> None:
    extra = {"future_knob": {"a": [1, 2]}, "size": "2K"}
    body = body_of(PRO, "x", NeutralParams(provider_params=extra))
    assert body["future_knob"] == {"a": [1, 2]} and body["size"] == "2K"
    video = body_of(VIDEO, "x", NeutralParams(provider_params={"seed": 9, "prompt_extend": False}))
    assert (video["seed"], video["prompt_extend"]) == (9, False)


def test_submit_is_deterministic_and_carries_the_key_but_no_auth() -> None:
    params = NeutralParams(aspect_ratio="3:2", resolution="1K", seed=11, watermark=False)
    a = REAPI.submit(request(STD, "same", params), "wanp-abc")
    b = REAPI.submit(request(STD, "same", params), "wanp-abc")
    assert a == b and a.to_record() == b.to_record() and a.body_json() == b.body_json()
    assert (a.method, a.path) == ("POST", "/api/v1/images/generations")
    assert a.headers == {"Idempotency-Key": "wanp-abc"}
    assert REAPI.supports_idempotency_key is False  # sheet: the header has no effect, no dedup
    assert REAPI.auth_headers("rk_live_x") == {"Authorization": "Bearer rk_live_x"}


def test_poll_gets_the_task_by_id() -> None:
    task_id = "task_018f5a3a1b6e7d9f8c2b4d6e8f0a2c4e"
    call = REAPI.poll(task_id)
    assert (call.method, call.path, call.json_body) == ("GET", f"/api/v1/tasks/{task_id}", None)


def test_there_is_no_upload_api(tmp_path: Path) -> None:
    ref = Reference(kind="image", source="a.png", path=tmp_path / "a.png", mime_type="image/png")
    assert REAPI.upload(STD, ref, b"\x89PNG") is None


def test_a_reference_without_a_public_url_is_a_configuration_error() -> None:
    local = (Reference(kind="image", source="a.png", path=Path("/x/a.png")),)
    with pytest.raises(e.ConfigError, match="no public URL"):
        REAPI.submit(request(STD, "x", NeutralParams(reference_images=["a.png"]), local), "k")


# -- modes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "mode"),
    [
        (NeutralParams(), Mode.TEXT_TO_IMAGE),
        (NeutralParams(reference_images=[CLOCK]), Mode.IMAGE_EDIT),
        (NeutralParams(reference_images=[CLOCK, DESK], regions=[[], [[1, 1, 5, 5]]]), Mode.REGION_EDIT),
        (NeutralParams(sequential=True, n=6), Mode.GROUP),
        (NeutralParams(sequential=True, reference_images=[CLOCK]), Mode.GROUP),
        (NeutralParams(sequential=False), Mode.TEXT_TO_IMAGE),
    ],
)
def test_mode_follows_the_inputs(params: NeutralParams, mode: Mode) -> None:
    assert REAPI.mode(PRO, params) is mode


def test_video_is_text_to_video() -> None:
    assert REAPI.mode(VIDEO, NeutralParams(duration=5)) is Mode.TEXT_TO_VIDEO


# -- refusing what reAPI cannot do, before anything is sent ---------------------------------------------


def issues(model: str, params: NeutralParams, prompt: str = "a prompt") -> dict[str, str]:
    return {i.field: i.reason for i in REAPI.check(model, prompt, params)}


def test_documented_requests_pass_the_check() -> None:
    assert issues(PRO, NeutralParams(aspect_ratio="16:9", resolution="4K", n=1, seed=42, thinking=True)) == {}
    assert issues(STD, NeutralParams(resolution="2K", reference_images=[CLOCK, DESK],
                                     regions=[[], [[989, 515, 1138, 681]]])) == {}
    assert issues(PRO, NeutralParams(sequential=True, n=12, resolution="2K")) == {}
    assert issues(STD, NeutralParams(reference_images=["refs/local.png"], n=4)) == {}
    assert issues(VIDEO, NeutralParams(resolution="720p", duration=15)) == {}


def test_unknown_model_is_refused() -> None:
    assert "known: wan2.7-image, wan2.7-image-pro, wan2.7-video" in issues("wan2.6-image", NeutralParams())["model"]


def test_4k_on_the_standard_tier_is_refused_pointing_at_pro() -> None:
    reason = issues(STD, NeutralParams(resolution="4K"))["resolution"]
    assert "'4K' is not one of 1K, 2K for reapi/wan2.7-image" in reason
    assert "4K needs wan2.7-image-pro (text-to-image)" in reason


@pytest.mark.parametrize(
    "params",
    [NeutralParams(resolution="4K", reference_images=[CLOCK]), NeutralParams(resolution="4K", sequential=True)],
)
def test_4k_on_pro_is_text_to_image_only(params: NeutralParams) -> None:
    assert "text-to-image only" in issues(PRO, params)["resolution"]


def test_n_above_4_needs_sequential_and_12_is_the_group_cap() -> None:
    assert "at most 4 per task (up to 12 with sequential)" in issues(STD, NeutralParams(n=5))["n"]
    assert issues(STD, NeutralParams(n=5, sequential=True)) == {}


def test_group_mode_refuses_a_palette_and_thinking() -> None:
    palette = [{"hex": "#000000", "ratio": "30.00%"}, {"hex": "#111111", "ratio": "30.00%"},
               {"hex": "#222222", "ratio": "40.00%"}]
    found = issues(PRO, NeutralParams(sequential=True, color_palette=palette, thinking=True))
    assert "not available in group mode" in found["color_palette"]
    assert "thinking only works for text-to-image" in found["thinking"]
    assert issues(PRO, NeutralParams(color_palette=palette)) == {}  # fine outside group mode


def test_thinking_with_references_is_refused_but_false_is_fine() -> None:
    assert "thinking" in issues(PRO, NeutralParams(reference_images=[CLOCK], thinking=True))
    assert issues(PRO, NeutralParams(reference_images=[CLOCK], thinking=False)) == {}


def test_aspect_ratio_outside_the_presets_is_refused() -> None:
    reason = issues(PRO, NeutralParams(aspect_ratio="21:9"))["aspect_ratio"]
    assert reason.startswith("'21:9' is not one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3 for reapi/wan2.7-image-pro")


def test_aspect_ratio_with_references_is_refused_because_the_last_image_decides() -> None:
    assert "aspect of the last input image" in issues(STD, NeutralParams(aspect_ratio="1:1", reference_images=[CLOCK]))[
        "aspect_ratio"]


def test_pixel_sizes_follow_the_tier_and_mode_limits() -> None:
    assert issues(PRO, NeutralParams(width=4096, height=4096)) == {}
    assert "768x768 to 2048x2048 pixels" in issues(STD, NeutralParams(width=4096, height=4096))["width"]
    assert "to 2048x2048" in issues(PRO, NeutralParams(width=4096, height=4096, sequential=True))["width"]
    assert "768x768" in issues(PRO, NeutralParams(width=512, height=512))["width"]
    assert "1:8 to 8:1" in issues(STD, NeutralParams(width=900, height=8000))["width"]
    assert "cannot be mixed" in issues(STD, NeutralParams(width=1024, height=1024, resolution="1K"))["resolution"]


def test_references_must_be_public_https_urls_or_local_files() -> None:
    found = issues(STD, NeutralParams(reference_images=["http://example.com/a.png"]))
    assert "public HTTPS URLs only" in found["reference_images"]
    assert "reference_images" in issues(STD, NeutralParams(reference_images=["data:image/png;base64,AAAA"]))
    assert issues(STD, NeutralParams(reference_images=["https://example.com/a.png", "refs/b.png"])) == {}


def test_more_than_nine_references_is_refused() -> None:
    urls = [f"https://example.com/{i}.png" for i in range(10)]
    assert "at most 9" in issues(STD, NeutralParams(reference_images=urls))["reference_images"]


def test_over_long_prompts_are_refused() -> None:
    assert "5001 characters" in issues(STD, NeutralParams(), prompt="x" * 5001)["prompt"]
    assert issues(STD, NeutralParams(), prompt="x" * 5000) == {}


@pytest.mark.parametrize("name", ["prompt_extend", "reference_video", "duration", "audio_setting"])
def test_image_models_refuse_video_parameters(name: str) -> None:
    value: Any = {"prompt_extend": True, "reference_video": "https://x/v.mp4", "duration": 5,
                  "audio_setting": "auto"}[name]
    reason = issues(PRO, NeutralParams(**{name: value}))[name]
    assert reason.startswith(f"reapi/wan2.7-image-pro does not support '{name}'")


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", 1), ("aspect_ratio", "16:9"), ("negative_prompt", "blur"), ("watermark", False),
     ("prompt_extend", True), ("reference_images", ["https://x/a.png"]), ("reference_video", "https://x/v.mp4"),
     ("audio_setting", "auto"), ("n", 2)],
)
def test_video_refuses_every_undocumented_knob(name: str, value: Any) -> None:
    reason = issues(VIDEO, NeutralParams(**{name: value}))[name]
    assert reason.startswith(f"reapi/wan2.7-video does not support '{name}'")
    assert "documents only model, prompt, resolution and duration" in reason


def test_video_duration_and_resolution_ranges() -> None:
    assert "2 to 15 s" in issues(VIDEO, NeutralParams(duration=20))["duration"]
    assert "not one of 720p, 1080p" in issues(VIDEO, NeutralParams(resolution="2K"))["resolution"]
    assert "4K needs" not in issues(VIDEO, NeutralParams(resolution="4K"))["resolution"]
    assert "video resolutions" not in issues(STD, NeutralParams(resolution="720p"))["resolution"]


# -- estimates ----------------------------------------------------------------------------------------


def test_undocumented_prices_estimate_as_unknown() -> None:
    for model in (STD, PRO, VIDEO):
        est = REAPI.estimate(model, NeutralParams(n=1) if model != VIDEO else NeutralParams(duration=5))
        assert (est.credits, est.usd) == (None, None)
    info = find_model("reapi", PRO)
    assert info is not None and info.usd_per_credit == 0.001  # seed 003: 1 credit = $0.001


def test_estimate_uses_the_seed_formula_once_a_rate_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from wan_pipeline.providers import reapi

    priced = replace(reapi.PROVIDER.info(PRO), usd_per_output=0.0333)
    video = replace(reapi.PROVIDER.info(VIDEO), usd_per_second={"720p": 0.1})
    monkeypatch.setattr(catalog, "find_model", lambda provider, model: priced)
    est = REAPI.estimate(PRO, NeutralParams(n=3))
    # ceil(0.0333 × 3 × 1000) = ceil(99.9) = 100 credits = $0.100
    assert est.credits == 100.0 and est.usd == pytest.approx(0.1)
    monkeypatch.setattr(catalog, "find_model", lambda provider, model: video)
    assert REAPI.estimate(VIDEO, NeutralParams(resolution="720p", duration=5)).credits == 500.0


# -- parsing task states --------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["reapi/seed003_submit_response.json", "reapi/sheet_submit_response.json"])
def test_submit_response_is_a_pending_task(fixture: str) -> None:
    snap = REAPI.accepted(reply(200, load_fixture(fixture)))
    assert (snap.task_id, snap.status) == ("task_018f5a3a1b6e7d9f8c2b4d6e8f0a2c4e", TaskStatus.PENDING)
    assert (snap.output_urls, snap.error, snap.credits_reserved, snap.credits_final, snap.cost_usd) == (
        (), None, None, None, None)


def test_processing_is_pending() -> None:
    snap = REAPI.state(reply(200, load_fixture("reapi/sheet_task_processing.json")))
    assert (snap.task_id, snap.status, snap.output_urls) == ("task_019dfd44b7fd74168541552a3260a623",
                                                             TaskStatus.PENDING, ())


@pytest.mark.parametrize(
    ("fixture", "url"),
    [
        ("reapi/seed003_task_completed.json", "https://cdn.reapi.ai/...png"),
        ("reapi/sheet_task_completed_image.json",
         "https://cdn.reapi.ai/media/tasks/019dfd44b7fd74168541552a3260a623/0.png"),
        ("reapi/sheet_task_completed_video.json",
         "https://cdn.reapi.ai/media/tasks/01k9s419324drezfbwnsvxyr6h/0.mp4"),
    ],
)
def test_completed_gives_its_output_urls(fixture: str, url: str) -> None:
    body = load_fixture(fixture)
    snap = REAPI.state(reply(200, body))
    assert (snap.status, snap.output_urls, snap.error) == (TaskStatus.SUCCEEDED, (url,), None)
    assert snap.raw == body
    assert (snap.credits_final, snap.cost_usd, snap.provider_seed) == (None, None, None)  # not reported


def test_group_series_keeps_its_order() -> None:
    body = load_fixture("reapi/sheet_task_completed_image.json")
    body["output"]["image_urls"] = [f"https://cdn.reapi.ai/media/tasks/x/{i}.png" for i in range(6)]
    assert REAPI.state(reply(200, body)).output_urls == tuple(body["output"]["image_urls"])


def test_failed_task_is_generation_failed_with_the_code_as_text() -> None:
    snap = REAPI.state(reply(200, load_fixture("reapi/sheet_task_failed.json")))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is e.GenerationFailed
    assert (snap.error.code, snap.error.message) == ("60099", "Generic internal error")
    assert snap.output_urls == ()


def test_failed_task_refused_by_moderation_is_content_rejected() -> None:
    body = load_fixture("reapi/sheet_task_failed.json")
    body["error"]["message"] = "DataInspectionFailed: Input or output data may contain inappropriate content."
    snap = REAPI.state(reply(200, body))
    assert type(snap.error) is e.ContentRejected


def test_failed_task_with_a_validation_code_is_rejected_by_provider() -> None:
    body = load_fixture("reapi/sheet_task_failed.json")
    body["error"] = {"code": 20003, "message": "bad input"}
    assert type(REAPI.state(reply(200, body)).error) is e.RejectedByProvider


def test_failed_task_without_error_object_is_generation_failed() -> None:
    body = {**load_fixture("reapi/sheet_task_failed.json"), "error": None}
    err = REAPI.state(reply(200, body)).error
    assert type(err) is e.GenerationFailed and err.code == "generation_failed"


def test_completed_without_urls_counts_as_failed_generation() -> None:
    body = {**load_fixture("reapi/sheet_task_completed_image.json"), "output": None}
    snap = REAPI.state(reply(200, body))
    assert snap.status is TaskStatus.FAILED and snap.error is not None and snap.error.code == "no_output"


def test_unknown_status_and_non_task_answers_are_transient() -> None:
    with pytest.raises(e.Transient, match="unknown task status 'queued'"):
        REAPI.state(reply(200, {**load_fixture("reapi/sheet_task_processing.json"), "status": "queued"}))
    with pytest.raises(e.Transient) as info:
        REAPI.state(reply(200, b"<html>gateway</html>"))
    assert info.value.code == "bad_response"


# -- classifying errors ---------------------------------------------------------------------------------

EXPECTED_CLASS: dict[int, type[e.ProviderError]] = {
    **dict.fromkeys((10001, 10002, 10003, 10004, 10005, 10006), e.AuthenticationFailed),
    **dict.fromkeys((20001, 20002, 20003, 20004, 20005, 20006, 20007, 30002, 40001), e.RejectedByProvider),
    30001: e.InsufficientCredits,
    50001: e.RateLimited,
    **dict.fromkeys((60001, 60002, 60099, 70001, 70002), e.Transient),
}
SHEET_CODES = [(c["code"], c["http"]) for c in load_fixture("reapi/sheet_error_codes.json")["codes"]]


def test_every_code_of_the_sheet_has_an_expected_class() -> None:
    assert sorted(code for code, _ in SHEET_CODES) == sorted(EXPECTED_CLASS)


@pytest.mark.parametrize(("code", "http"), SHEET_CODES)
def test_sheet_error_code_maps_to_its_error_class(code: int, http: int) -> None:
    err = REAPI.error(reply(http, envelope(code, "why it failed")))
    assert type(err) is EXPECTED_CLASS[code]
    assert (err.code, err.message, err.http_status) == (str(code), "why it failed", http)
    assert err.details == {"request_id": "req_test"}


def test_error_classes_carry_what_the_engine_decides_on() -> None:
    def classify(code: int, http: int) -> e.ProviderError:
        return REAPI.error(reply(http, envelope(code)))

    assert classify(10003, 401).stops_submissions is True
    assert classify(10006, 403).stops_submissions is True
    assert classify(30001, 402).stops_submissions is True
    assert classify(50001, 429).retryable is True
    assert classify(70001, 503).retryable is True
    assert classify(20005, 400).retryable is False


def test_sheet_error_envelope_is_parsed() -> None:
    err = REAPI.error(reply(400, load_fixture("reapi/sheet_error_envelope.json")))
    assert type(err) is e.RejectedByProvider
    assert (err.code, err.message) == ("20002", "Missing required parameter: prompt")
    assert err.details == {"request_id": "req_8a4f0d2e-1c8b-4f1a-9e2d-3b7c5a6f0a1b"}


def test_rate_limited_honours_retry_after() -> None:
    err = REAPI.error(reply(429, envelope(50001), {"Retry-After": "7"}))
    assert type(err) is e.RateLimited and err.retry_after_s == 7.0
    assert REAPI.error(reply(429, envelope(50001))).retry_after_s is None


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [(10009, 401, e.AuthenticationFailed), (20099, 400, e.RejectedByProvider), (50002, 429, e.RateLimited),
     (60123, 500, e.Transient), (79999, 503, e.Transient), (30009, 402, e.InsufficientCredits),
     ("brand_new", 400, e.RejectedByProvider), ("brand_new", 502, e.Transient)],
)
def test_unlisted_codes_fall_back_to_their_category_then_the_status(
    code: int | str, status: int, cls: type[e.ProviderError]
) -> None:
    err = REAPI.error(reply(status, envelope(code)))
    assert type(err) is cls and err.code == str(code)


def test_a_non_json_error_body_is_classified_by_status() -> None:
    err = REAPI.error(HttpReply(502, {"content-type": "text/html"}, b"<h1>Bad Gateway</h1>"))
    assert type(err) is e.Transient
    assert (err.code, err.message) == ("http_502", "<h1>Bad Gateway</h1>")
