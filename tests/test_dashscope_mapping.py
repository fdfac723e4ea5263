"""The DashScope adapter, sans I/O: we build the sheet's request bodies and parse its responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture
from pydantic import ValidationError

from wan_pipeline import errors as e
from wan_pipeline.planning.pricing import usage_cost
from wan_pipeline.planning.spec import Pricing
from wan_pipeline.providers import dashscope as ds
from wan_pipeline.providers.base import Estimate, GenerationRequest, HttpReply, Mode, Reference, TaskStatus, Usage
from wan_pipeline.providers.dashscope import PROVIDER as DASHSCOPE
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.registry import get_provider


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status=status, headers={"content-type": "application/json", **(headers or {})}, body=raw)


def image_ref(url: str) -> Reference:
    return Reference(kind="image", source=url, url=url)


def video_ref(url: str) -> Reference:
    return Reference(kind="video", source=url, url=url)


def request(model: str, params: NeutralParams, prompt: str = "a red fox", refs: tuple[Reference, ...] = ()
            ) -> GenerationRequest:
    return GenerationRequest(model=model, prompt=prompt, params=params, references=refs)


def body_of(model: str, prompt: str = "a red fox", refs: tuple[Reference, ...] = (), **params: Any) -> Any:
    params.setdefault("seed", 1)
    if refs and "reference_images" not in params:
        params["reference_images"] = [r.source for r in refs if r.kind == "image"] or None
    return DASHSCOPE.submit(request(model, NeutralParams(**params), prompt, refs), "key").json_body


def issues(model: str, prompt: str = "a red fox", **params: Any) -> dict[str, str]:
    return {i.field: i.reason for i in DASHSCOPE.check(model, prompt, NeutralParams(**params))}


# -- identity -------------------------------------------------------------------------------------


def test_registry_returns_the_dashscope_adapter_with_the_design_endpoints() -> None:
    assert get_provider("dashscope") is DASHSCOPE
    assert (DASHSCOPE.key_env, DASHSCOPE.base_env, DASHSCOPE.default_base) == (
        "DASHSCOPE_API_KEY", "DASHSCOPE_BASE_URL", "https://dashscope-intl.aliyuncs.com")
    assert DASHSCOPE.supports_idempotency_key is False
    assert DASHSCOPE.models() == ("wan2.7-image", "wan2.7-image-pro", "wan2.7-t2v", "wan2.7-i2v", "wan2.7-r2v",
                                  "wan2.7-videoedit")


def test_auth_header_is_a_bearer_token() -> None:
    assert DASHSCOPE.auth_headers("sk-test") == {"Authorization": "Bearer sk-test"}


# -- golden request bodies ------------------------------------------------------------------------


def test_sheet_image_example_is_built_from_neutral_params() -> None:
    expected = load_fixture("dashscope/sheet_image_request.json")
    refs = (image_ref("https://example.com/car.webp"), image_ref("https://example.com/paint.webp"))
    params = NeutralParams(resolution="2K", n=1, watermark=False, seed=42,
                           reference_images=[r.source for r in refs])
    call = DASHSCOPE.submit(request("wan2.7-image-pro", params, expected["input"]["messages"][0]["content"][2]["text"],
                                    refs), "key-1")
    assert call.json_body == expected
    assert json.loads(call.body_json()) == expected


def test_provider_defaults_fill_the_sheet_image_example() -> None:
    # Only the seed and the images: 2K, n=1 and watermark=false are DashScope's defaults, sent explicitly.
    expected = load_fixture("dashscope/sheet_image_request.json")
    refs = (image_ref("https://example.com/car.webp"), image_ref("https://example.com/paint.webp"))
    body = body_of("wan2.7-image-pro", expected["input"]["messages"][0]["content"][2]["text"], refs, seed=42)
    assert body == expected


def test_sheet_text_to_video_example_is_built_from_neutral_params() -> None:
    expected = load_fixture("dashscope/sheet_t2v_request.json")
    params = NeutralParams(negative_prompt="low resolution", resolution="1080p", aspect_ratio="16:9", duration=5,
                           prompt_extend=True, watermark=False, seed=12345,
                           provider_params={"input": {"audio_url": "https://example.com/a.mp3"}})
    call = DASHSCOPE.submit(request("wan2.7-t2v", params, "a kitten running under the moonlight"), "k")
    assert call.json_body == expected


def test_seed_003_region_example_maps_onto_the_dashscope_wire() -> None:
    fixture = load_fixture("dashscope/seed003_bbox_request.json")
    expected = fixture["body"]
    refs = (image_ref("https://example.com/clock.webp"), image_ref("https://example.com/desk.webp"))
    body = body_of("wan2.7-image", expected["input"]["messages"][0]["content"][2]["text"], refs, seed=7,
                   regions=[[], [[989, 515, 1138, 681]]])
    assert body == expected
    assert DASHSCOPE.mode("wan2.7-image", NeutralParams(reference_images=["a", "b"], regions=[[], [[1, 1, 2, 2]]])) \
        is Mode.REGION_EDIT


def test_seed_003_two_colour_palette_example_breaks_its_own_three_to_ten_rule() -> None:
    # Seed 003 (and the sheet) say 3–10 colours; the seed's own example has two. We hold to the rule.
    with pytest.raises(ValidationError, match="at least 3"):
        NeutralParams(color_palette=[{"hex": "#C2D1E6", "ratio": "23.51%"}, {"hex": "#636574", "ratio": "76.49%"}])


# -- submit ---------------------------------------------------------------------------------------


def test_submit_posts_async_with_the_async_header_and_no_idempotency_header() -> None:
    call = DASHSCOPE.submit(request("wan2.7-image", NeutralParams(seed=1)), "wanp-abc")
    assert (call.method, call.path) == ("POST", "/api/v1/services/aigc/image-generation/generation")
    assert call.headers == {"X-DashScope-Async": "enable"}
    video = DASHSCOPE.submit(request("wan2.7-t2v", NeutralParams(seed=1)), "wanp-abc")
    assert (video.method, video.path) == ("POST", "/api/v1/services/aigc/video-generation/video-synthesis")
    assert video.headers == {"X-DashScope-Async": "enable"}


def test_oss_references_ask_the_host_to_resolve_them() -> None:
    refs = (image_ref("oss://dashscope-instant/abc/frame.png"),)
    call = DASHSCOPE.submit(request("wan2.7-i2v", NeutralParams(seed=1, reference_images=["frame.png"]), refs=refs),
                            "k")
    assert call.headers == {"X-DashScope-Async": "enable", "X-DashScope-OssResourceResolve": "enable"}


def test_submit_is_deterministic() -> None:
    params = NeutralParams(seed=5, aspect_ratio="16:9", resolution="2K", color_palette=[
        {"hex": "#ff0000", "ratio": "50.00%"}, {"hex": "#00ff00", "ratio": "25.00%"},
        {"hex": "#0000ff", "ratio": "25.00%"}])
    first = DASHSCOPE.submit(request("wan2.7-image", params), "k").to_record()
    assert first == DASHSCOPE.submit(request("wan2.7-image", params), "k").to_record()


def test_text_to_image_content_is_only_the_text_and_tier_defaults_to_2k() -> None:
    assert body_of("wan2.7-image") == {
        "model": "wan2.7-image",
        "input": {"messages": [{"role": "user", "content": [{"text": "a red fox"}]}]},
        "parameters": {"size": "2K", "n": 1, "watermark": False, "seed": 1},
    }


@pytest.mark.parametrize(
    ("aspect", "resolution", "size"),
    [("16:9", "1K", "1360*768"), ("16:9", "2K", "2720*1536"), ("1:1", "2K", "2048*2048"), ("8:1", "2K", "5760*720"),
     ("1:8", "1K", "368*2896"), ("4:3", None, "2352*1760")],
)
def test_aspect_ratio_becomes_explicit_pixels_inside_the_hard_limits(aspect: str, resolution: str | None,
                                                                     size: str) -> None:
    params: dict[str, Any] = {"aspect_ratio": aspect}
    if resolution:
        params["resolution"] = resolution
    assert body_of("wan2.7-image", **params)["parameters"]["size"] == size
    w, h = (int(v) for v in size.split("*"))
    assert 768**2 <= w * h <= 2048**2
    assert 1 / 8 <= w / h <= 8
    assert w % 16 == h % 16 == 0


def test_width_height_and_tiers_map_to_size() -> None:
    assert body_of("wan2.7-image", width=1280, height=720)["parameters"]["size"] == "1280*720"
    assert body_of("wan2.7-image", resolution="1K")["parameters"]["size"] == "1K"
    assert body_of("wan2.7-image-pro", resolution="4K")["parameters"]["size"] == "4K"
    assert body_of("wan2.7-image-pro", aspect_ratio="16:9", resolution="4K")["parameters"]["size"] == "5456*3072"


def test_every_image_knob_has_its_wire_name() -> None:
    palette = [{"hex": "#C2D1E6", "ratio": "23.51%"}, {"hex": "#636574", "ratio": "46.49%"},
               {"hex": "#112233", "ratio": "30.00%"}]
    params = body_of("wan2.7-image", n=3, watermark=True, thinking=False, sequential=False, color_palette=palette,
                     negative_prompt="blurry")["parameters"]
    assert params == {"size": "2K", "n": 3, "enable_sequential": False, "thinking_mode": False,
                      "color_palette": palette, "negative_prompt": "blurry", "watermark": True, "seed": 1}
    group = body_of("wan2.7-image", sequential=True)["parameters"]
    assert (group["enable_sequential"], group["n"]) == (True, 12)  # group default n is the maximum, 12
    edit = body_of("wan2.7-image", refs=(image_ref("https://x/a.png"),), prompt_extend=False)["parameters"]
    assert edit["prompt_extend"] is False


def test_provider_params_pass_through_unchanged() -> None:
    body = body_of("wan2.7-image", provider_params={"future_knob": {"a": [1, 2]}, "input": {"extra": 1}})
    assert body["parameters"]["future_knob"] == {"a": [1, 2]}
    assert body["input"]["extra"] == 1


def test_image_to_video_media_are_first_frame_last_frame_or_first_clip() -> None:
    a, b = image_ref("https://x/a.png"), image_ref("https://x/b.png")
    clip = video_ref("https://x/clip.mp4")
    one = body_of("wan2.7-i2v", refs=(a,))
    assert one["input"]["media"] == [{"type": "first_frame", "url": a.url}]
    assert "ratio" not in one["parameters"]  # the aspect follows the input
    assert one["parameters"] == {"resolution": "1080P", "duration": 5, "prompt_extend": True, "watermark": False,
                                 "seed": 1}
    assert body_of("wan2.7-i2v", refs=(a, b))["input"]["media"] == [
        {"type": "first_frame", "url": a.url}, {"type": "last_frame", "url": b.url}]
    assert body_of("wan2.7-i2v", refs=(clip, b), reference_video=clip.source)["input"]["media"] == [
        {"type": "first_clip", "url": clip.url}, {"type": "last_frame", "url": b.url}]


def test_reference_to_video_and_video_edit_media() -> None:
    a, b = image_ref("https://x/a.png"), image_ref("https://x/b.png")
    clip = video_ref("https://x/clip.mp4")
    r2v = body_of("wan2.7-r2v", refs=(a, b, clip), reference_video=clip.source, resolution="720p", duration=8)
    assert r2v["input"]["media"] == [{"type": "reference_image", "url": a.url},
                                     {"type": "reference_image", "url": b.url},
                                     {"type": "reference_video", "url": clip.url}]
    assert (r2v["parameters"]["resolution"], r2v["parameters"]["ratio"], r2v["parameters"]["duration"]) == (
        "720P", "16:9", 8)
    edit = body_of("wan2.7-videoedit", refs=(clip, a), reference_video=clip.source, audio_setting="origin")
    assert edit["input"]["media"] == [{"type": "video", "url": clip.url}, {"type": "reference_image", "url": a.url}]
    # No duration (0 = keep the input length) and no ratio (= the input's) unless asked.
    assert edit["parameters"] == {"resolution": "1080P", "audio_setting": "origin", "prompt_extend": True,
                                  "watermark": False, "seed": 1}


def test_poll_cancel_and_upload_calls() -> None:
    assert DASHSCOPE.poll("0385dc79") == ds.HttpCall("GET", "/api/v1/tasks/0385dc79")
    assert DASHSCOPE.cancel("0385dc79") == ds.HttpCall("POST", "/api/v1/tasks/0385dc79/cancel")
    ref = Reference(kind="image", source="a.png", path=Path("/x/a.png"), mime_type="image/png")
    policy_call = DASHSCOPE.upload("wan2.7-i2v", ref, b"\x89PNG")
    assert policy_call is not None and policy_call.path == "/api/v1/uploads?action=getPolicy&model=wan2.7-i2v"
    done = DASHSCOPE.uploaded(Reference(kind="image", source="a.png", upload_fields={"key": "dir/a.png"}),
                              reply(200, b""))
    assert done.url == "oss://dir/a.png"


def test_presubmit_task_id_is_none() -> None:
    assert DASHSCOPE.presubmit_task_id(request("wan2.7-image", NeutralParams(seed=1)), "k") is None


# -- task states ----------------------------------------------------------------------------------


def test_sheet_create_answer_is_a_pending_task() -> None:
    snap = DASHSCOPE.accepted(reply(200, load_fixture("dashscope/sheet_create_response.json")))
    assert (snap.task_id, snap.status) == ("0385dc79-5ff8-4d82-bcb6-9f2c1d0e7a11", TaskStatus.PENDING)
    assert (snap.output_urls, snap.error, snap.credits_final, snap.cost_usd) == ((), None, None, None)


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "SUSPENDED"])
def test_pending_running_and_suspended_are_pending(status: str) -> None:
    data = load_fixture("dashscope/sheet_task_running.json")
    data["output"]["task_status"] = status
    snap = DASHSCOPE.state(reply(200, data))
    assert (snap.task_id, snap.status) == ("0385dc79-…", TaskStatus.PENDING)


def test_sheet_image_success_gives_its_url() -> None:
    data = load_fixture("dashscope/sheet_image_succeeded.json")
    snap = DASHSCOPE.state(reply(200, data))
    assert snap.status is TaskStatus.SUCCEEDED
    assert snap.task_id == "a81ee7cb-014c-473d-b842-76e98311c123"
    assert snap.output_urls == ("https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/xxx.png?Expires=1774600000"
                                "&Signature=…",)
    assert (snap.credits_final, snap.cost_usd) == (None, None)  # the poll answer does not name the model
    assert snap.usage == Usage(images=1.0)
    # usage × the submitted model's price: documented, or what the spec declares the account pays
    assert usage_cost(Pricing(), "dashscope", "wan2.7-image-pro", snap.usage).usd == 0.075
    assert usage_cost(Pricing(usd_per_image=0.05), "dashscope", "wan2.7-image-pro", snap.usage).usd == 0.05
    assert snap.raw == data


def test_sheet_video_success_gives_its_url_and_cost_from_usage() -> None:
    snap = DASHSCOPE.state(reply(200, load_fixture("dashscope/sheet_video_succeeded.json")))
    assert snap.status is TaskStatus.SUCCEEDED
    assert snap.output_urls == ("https://dashscope-result-sh.oss-accelerate.aliyuncs.com/xxx.mp4?Expires=…",)
    assert snap.usage == Usage(seconds=10, resolution="720p")
    assert usage_cost(Pricing(), "dashscope", "wan2.7-t2v", snap.usage).usd == pytest.approx(1.0)  # 10 s × $0.10
    declared = Pricing(usd_per_second={"720p": 0.12, "1080p": 0.2})
    assert usage_cost(declared, "dashscope", "wan2.7-t2v", snap.usage) == Estimate(None, 1.2, "reported")


def test_sheet_failed_task_is_content_rejected() -> None:
    snap = DASHSCOPE.state(reply(200, load_fixture("dashscope/sheet_task_failed.json")))
    assert snap.status is TaskStatus.FAILED
    assert isinstance(snap.error, e.ContentRejected)
    assert (snap.error.code, snap.error.message) == ("DataInspectionFailed",
                                                     "Output data may contain inappropriate content.")
    assert snap.cost_usd == 0.0  # failures are not billed


@pytest.mark.parametrize(
    ("code", "cls"),
    [("InternalError.Algo", e.GenerationFailed), ("InternalError", e.GenerationFailed),
     ("InvalidParameter", e.RejectedByProvider), ("DataInspectionFailed", e.ContentRejected),
     ("SomethingNew", e.GenerationFailed)],
)
def test_failed_task_codes_map_to_their_class(code: str, cls: type[e.ProviderError]) -> None:
    data = {"request_id": "r", "output": {"task_id": "t", "task_status": "FAILED", "code": code, "message": "m"}}
    snap = DASHSCOPE.state(reply(200, data))
    assert type(snap.error) is cls


def test_failed_task_with_a_top_level_code_is_read_too() -> None:
    data = {"request_id": "r", "code": "DataInspectionFailed", "message": "Input data may contain inappropriate "
            "content.", "output": {"task_id": "t", "task_status": "FAILED"}}
    snap = DASHSCOPE.state(reply(200, data))
    assert isinstance(snap.error, e.ContentRejected)


def test_canceled_is_a_permanent_failure_and_unknown_a_lost_task() -> None:
    canceled = DASHSCOPE.state(reply(200, {"request_id": "r", "output": {"task_id": "t", "task_status": "CANCELED"}}))
    assert (canceled.status, type(canceled.error), canceled.cost_usd) == (TaskStatus.FAILED, e.RejectedByProvider,
                                                                           0.0)
    unknown = DASHSCOPE.state(reply(200, {"request_id": "r", "output": {"task_id": "t", "task_status": "UNKNOWN"}}))
    assert (unknown.status, type(unknown.error)) == (TaskStatus.FAILED, e.GenerationFailed)
    assert unknown.error is not None and unknown.error.code == "UnknownTask"
    assert unknown.cost_usd is None  # it may have been billed before it expired


def test_success_without_urls_is_a_failed_generation() -> None:
    data = {"request_id": "r", "output": {"task_id": "t", "task_status": "SUCCEEDED", "choices": []}}
    snap = DASHSCOPE.state(reply(200, data))
    assert (snap.status, type(snap.error)) == (TaskStatus.FAILED, e.GenerationFailed)


def test_synchronous_answer_is_already_succeeded() -> None:
    data = load_fixture("dashscope/sheet_image_succeeded.json")
    output = {"choices": data["output"]["choices"], "finished": True}
    snap = DASHSCOPE.accepted(reply(200, {"request_id": "sync-1", "output": output, "usage": data["usage"]}))
    assert (snap.task_id, snap.status, len(snap.output_urls)) == ("sync-1", TaskStatus.SUCCEEDED, 1)


def test_group_answer_gives_every_image_in_order() -> None:
    content = [{"type": "image", "image": f"https://r/{i}.png"} for i in range(3)]
    data = {"request_id": "r", "output": {"task_id": "t", "task_status": "SUCCEEDED", "choices": [
        {"finish_reason": "stop", "message": {"role": "assistant", "content": content}}]},
        "usage": {"image_count": 3, "size": "2048*2048"}}
    assert DASHSCOPE.state(reply(200, data)).output_urls == tuple(f"https://r/{i}.png" for i in range(3))


def test_query_error_at_top_level_on_200_is_raised_by_its_code() -> None:
    with pytest.raises(e.RejectedByProvider):
        DASHSCOPE.state(reply(200, load_fixture("dashscope/sheet_query_error_top_level.json")))


def test_unknown_status_and_garbage_are_transient() -> None:
    with pytest.raises(e.Transient, match="MELTING"):
        DASHSCOPE.state(reply(200, {"output": {"task_id": "t", "task_status": "MELTING"}}))
    with pytest.raises(e.Transient):
        DASHSCOPE.state(reply(200, b"<html>gateway</html>"))


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", load_fixture("dashscope/sheet_error_codes.json")["codes"],
                         ids=lambda row: str(row["code"]))
def test_every_documented_error_code_maps_to_its_class(row: dict[str, Any]) -> None:
    err = DASHSCOPE.error(reply(row["http"], {"request_id": "r", "code": row["code"], "message": "m"}))
    assert type(err).__name__ == row["class"]
    assert (err.code, err.http_status) == (row["code"], row["http"])


def test_rate_limits_are_retried_without_a_retry_after() -> None:
    err = DASHSCOPE.error(reply(429, {"request_id": "r", "code": "Throttling.RateQuota", "message": "slow down"}))
    assert isinstance(err, e.RateLimited)
    assert err.retryable and err.retry_after_s is None


@pytest.mark.parametrize("status", load_fixture("dashscope/sheet_error_codes.json")["gateway"])
def test_gateway_answers_without_a_body_are_transient(status: int) -> None:
    err = DASHSCOPE.error(HttpReply(status, {"content-type": "text/plain"}, b"Service Unavailable"))
    assert isinstance(err, e.Transient)


def test_sheet_missing_key_answer_is_an_authentication_failure_that_stops_submissions() -> None:
    err = DASHSCOPE.error(reply(401, load_fixture("dashscope/sheet_error_missing_key.json")))
    assert isinstance(err, e.AuthenticationFailed)
    assert err.stops_submissions
    assert err.message == "No API-key provided."


def test_arrearage_stops_submissions() -> None:
    err = DASHSCOPE.error(reply(400, {"request_id": "r", "code": "Arrearage", "message": "m"}))
    assert isinstance(err, e.InsufficientCredits) and err.stops_submissions


# -- check: refusals before anything is sent ------------------------------------------------------


def test_a_plain_request_has_no_issues() -> None:
    assert issues("wan2.7-image", aspect_ratio="21:9", resolution="1K", n=4, watermark=True, thinking=True) == {}
    assert issues("wan2.7-t2v", aspect_ratio="9:16", resolution="720p", duration=15, negative_prompt="x") == {}


def test_unknown_model_and_long_prompt_are_refused() -> None:
    assert "known: wan2.7-image" in issues("wan2.7-turbo")["model"]
    assert "at most 5000" in issues("wan2.7-image", prompt="x" * 5001)["prompt"]
    assert "at most 500" in issues("wan2.7-image", negative_prompt="x" * 501)["negative_prompt"]


@pytest.mark.parametrize(
    ("model", "params", "field", "reason"),
    [
        ("wan2.7-image", {"resolution": "4K"}, "resolution", "'4K' is not one of 1K, 2K for dashscope/wan2.7-image"),
        ("wan2.7-image", {"resolution": "720p"}, "resolution", "'720p' is not one of 1K, 2K"),
        ("wan2.7-image-pro", {"resolution": "4K", "reference_images": ["https://x/a.png"]}, "resolution",
         "4K is wan2.7-image-pro text-to-image only"),
        ("wan2.7-image-pro", {"resolution": "4K", "sequential": True}, "resolution", "4K is wan2.7-image-pro"),
        ("wan2.7-image", {"width": 1024, "height": 1024, "resolution": "1K"}, "resolution", "either width/height"),
        ("wan2.7-image", {"width": 512, "height": 512}, "width", "512*512 is 262144 pixels"),
        ("wan2.7-image", {"width": 3000, "height": 3000}, "width", "to 4194304 (2048²)"),
        ("wan2.7-image-pro", {"width": 3000, "height": 3000, "reference_images": ["https://x/a.png"]}, "width",
         "to 4194304 (2048²)"),
        ("wan2.7-image", {"width": 4000, "height": 400}, "width", "aspect outside 1:8 … 8:1"),
        ("wan2.7-image", {"aspect_ratio": "9:1", "resolution": "1K"}, "aspect_ratio", "aspect outside 1:8 … 8:1"),
        ("wan2.7-image", {"n": 5}, "n", "at most 4 per task (12 with sequential)"),
        ("wan2.7-image", {"sequential": True, "color_palette": [
            {"hex": "#000000", "ratio": "40.00%"}, {"hex": "#111111", "ratio": "30.00%"},
            {"hex": "#222222", "ratio": "30.00%"}]}, "color_palette", "does not apply in group mode"),
        ("wan2.7-image", {"thinking": True, "reference_images": ["https://x/a.png"]}, "thinking",
         "only works for text-to-image"),
        ("wan2.7-image", {"thinking": True, "sequential": True}, "thinking", "only works for text-to-image"),
        ("wan2.7-image", {"prompt_extend": True}, "prompt_extend", "image editing only"),
        ("wan2.7-image", {"reference_images": [f"https://x/{i}.png" for i in range(10)]}, "reference_images",
         "10 images; wan2.7-image takes at most 9"),
        ("wan2.7-image", {"duration": 5}, "duration", "dashscope/wan2.7-image does not support 'duration'"),
        ("wan2.7-image", {"reference_video": "https://x/v.mp4"}, "reference_video", "does not support"),
        ("wan2.7-image", {"audio_setting": "auto"}, "audio_setting", "does not support"),
        ("wan2.7-t2v", {"aspect_ratio": "21:9"}, "aspect_ratio", "'21:9' is not one of 16:9, 9:16, 1:1, 4:3, 3:4"),
        ("wan2.7-t2v", {"resolution": "2K"}, "resolution", "'2K' is not one of 720p, 1080p"),
        ("wan2.7-t2v", {"duration": 16}, "duration", "16 s; wan2.7-t2v takes 2–15 s"),
        ("wan2.7-t2v", {"duration": 1}, "duration", "takes 2–15 s"),
        ("wan2.7-t2v", {"reference_images": ["https://x/a.png"]}, "reference_images", "does not support"),
        ("wan2.7-t2v", {"sequential": True}, "sequential", "does not support 'sequential'"),
        ("wan2.7-t2v", {"n": 2}, "n", "does not support 'n'"),
        ("wan2.7-i2v", {"aspect_ratio": "16:9", "reference_images": ["https://x/a.png"]}, "aspect_ratio",
         "does not support 'aspect_ratio'"),
        ("wan2.7-i2v", {}, "reference_images", "needs a first frame"),
        ("wan2.7-i2v", {"reference_video": "https://x/v.mp4", "reference_images": ["https://x/a", "https://x/b"]},
         "reference_images", "at most one image, the last frame"),
        ("wan2.7-i2v", {"reference_images": ["https://x/a", "https://x/b", "https://x/c"]}, "reference_images",
         "3 images; wan2.7-i2v takes at most 2"),
        ("wan2.7-r2v", {}, "reference_images", "at least one reference"),
        ("wan2.7-r2v", {"reference_images": [f"https://x/{i}" for i in range(5)], "reference_video": "https://x/v"},
         "reference_images", "at most 5 references"),
        ("wan2.7-r2v", {"reference_video": "https://x/v", "duration": 12}, "duration", "takes 2–10 s with a reference"),
        ("wan2.7-r2v", {"reference_images": ["https://x/a"], "negative_prompt": "x"}, "negative_prompt",
         "does not support 'negative_prompt'"),
        ("wan2.7-videoedit", {}, "reference_video", "edits exactly one input video"),
        ("wan2.7-videoedit", {"reference_video": "https://x/v", "duration": 11}, "duration", "takes 2–10 s"),
        ("wan2.7-videoedit", {"reference_video": "https://x/v", "reference_images": ["a", "b", "c", "d"]},
         "reference_images", "4 images; wan2.7-videoedit takes at most 3"),
    ],
)
def test_check_refuses_what_dashscope_cannot_do(model: str, params: dict[str, Any], field: str, reason: str) -> None:
    found = issues(model, **params)
    assert field in found, found
    assert reason in found[field]


def test_refusals_name_who_does_support_it() -> None:
    # who_supports() lists other providers' models of the same kind that take the parameter.
    reason = issues("wan2.7-t2v", reference_images=["https://x/a.png"])["reference_images"]
    assert reason.startswith("dashscope/wan2.7-t2v does not support 'reference_images'; supported by ")
    assert "dashscope/" not in reason.split("; supported by ", 1)[1]


# -- mode and estimate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params", "mode"),
    [
        ("wan2.7-image", {}, Mode.TEXT_TO_IMAGE),
        ("wan2.7-image", {"reference_images": ["a"]}, Mode.IMAGE_EDIT),
        ("wan2.7-image", {"reference_images": ["a"], "regions": [[]]}, Mode.IMAGE_EDIT),
        ("wan2.7-image", {"reference_images": ["a"], "regions": [[[0, 0, 5, 5]]]}, Mode.REGION_EDIT),
        ("wan2.7-image-pro", {"sequential": True}, Mode.GROUP),
        ("wan2.7-t2v", {}, Mode.TEXT_TO_VIDEO),
        ("wan2.7-i2v", {"reference_images": ["a"]}, Mode.IMAGE_TO_VIDEO),
        ("wan2.7-r2v", {"reference_images": ["a"]}, Mode.REFERENCE_TO_VIDEO),
        ("wan2.7-videoedit", {"reference_video": "v"}, Mode.VIDEO_EDIT),
    ],
)
def test_mode_follows_model_and_inputs(model: str, params: dict[str, Any], mode: Mode) -> None:
    assert DASHSCOPE.mode(model, NeutralParams(**params)) is mode


@pytest.mark.parametrize(
    ("model", "params", "usd"),
    [
        ("wan2.7-image", {}, 0.030), ("wan2.7-image-pro", {}, 0.075), ("wan2.7-image", {"n": 4}, 0.12),
        ("wan2.7-image-pro", {"sequential": True}, 0.9),  # group: n defaults to 12, the most it can bill
        ("wan2.7-t2v", {}, 0.75), ("wan2.7-t2v", {"resolution": "720p", "duration": 2}, 0.2),
        ("wan2.7-i2v", {"resolution": "1080p", "duration": 15}, 2.25),
        ("wan2.7-videoedit", {}, 1.5),  # keeps the input length: at most 10 s
        ("wan2.7-videoedit", {"duration": 4, "resolution": "720p"}, 0.4),
    ],
)
def test_estimate_is_usd_per_image_or_per_second_without_credits(model: str, params: dict[str, Any],
                                                                  usd: float) -> None:
    est = DASHSCOPE.estimate(model, NeutralParams(**params))
    assert est.credits is None
    assert est.usd == pytest.approx(usd)


def test_video_usage_is_the_output_seconds_and_tier() -> None:
    assert ds.billed_usage({"duration": 4, "output_video_duration": 4, "SR": 1080}) == Usage(seconds=4,
                                                                                            resolution="1080p")
    assert ds.billed_usage({"image_count": 3}) == Usage(images=3)
    assert ds.billed_usage(None) is None


def test_a_finished_task_reports_its_latency_on_the_hosts_clock() -> None:
    done = {"request_id": "r", "output": {"task_id": "t", "task_status": "SUCCEEDED", "submit_time":
            "2026-03-26 17:16:01.663", "scheduled_time": "2026-03-26 17:16:01.716", "end_time":
            "2026-03-26 17:16:22.961", "choices": [{"message": {"content": [{"image": "https://x/y.png"}]}}]}}
    assert DASHSCOPE.state(reply(200, done)).host_latency_s == pytest.approx(21.298)
    running = {"request_id": "r", "output": {"task_id": "t", "task_status": "RUNNING",
               "submit_time": "2026-03-26 17:16:01.663"}}
    assert DASHSCOPE.state(reply(200, running)).host_latency_s is None
    garbled = {"request_id": "r", "output": {**done["output"], "end_time": "soon"}}
    assert DASHSCOPE.state(reply(200, garbled)).host_latency_s is None
