"""The Rivya adapter, sans I/O: we build the seed's request bodies and parse the sheet's responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture

from wan_pipeline import errors as e
from wan_pipeline.providers.base import GenerationRequest, HttpReply, Reference, TaskStatus
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.registry import get_provider
from wan_pipeline.providers.rivya import PROVIDER as RIVYA

SEED_PROMPT = "A clean editorial product image on a soft studio background"


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status=status, headers={"content-type": "application/json", **(headers or {})}, body=raw)


def envelope(code: str, message: str = "something") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "requestId": "req_test"}}


def request(params: NeutralParams, prompt: str = SEED_PROMPT, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(model="wan-2-7-image", prompt=prompt, params=params, **kwargs)


# -- building requests ----------------------------------------------------------------------------


def test_registry_returns_the_rivya_adapter() -> None:
    assert get_provider("rivya") is RIVYA


def test_neutral_params_give_the_seed_000_minimal_request_body() -> None:
    params = NeutralParams(aspect_ratio="1:1", resolution="2K", watermark=False, seed=0)
    call = RIVYA.submit(request(params), "key-1")
    assert call.json_body == load_fixture("rivya/seed000_minimal_request.json")
    # and the canonical text parses back to the same document
    assert json.loads(call.body_json()) == load_fixture("rivya/seed000_minimal_request.json")


def test_provider_defaults_fill_the_seed_000_minimal_request_body() -> None:
    # Only a seed: Rivya's documented defaults (1:1, 2K, watermark "false") are sent explicitly.
    call = RIVYA.submit(request(NeutralParams(seed=0)), "key-1")
    assert call.json_body == load_fixture("rivya/seed000_minimal_request.json")


def test_sheet_example_with_client_request_id_is_reproduced() -> None:
    expected = load_fixture("rivya/sheet_image_request_4_3.json")
    params = NeutralParams(aspect_ratio="4:3", resolution="2K", watermark=False, seed=1234)
    call = RIVYA.submit(request(params, prompt=expected["prompt"], client_request_id="order-991"), "k")
    assert call.json_body == expected


def test_reference_image_gives_the_seed_000_reference_request_body() -> None:
    ref = Reference(
        kind="image", source="reference-image.png", path=Path("/data/reference-image.png"),
        url="https://cdn.example.com/reference-image.png", mime_type="image/png",
    )
    params = NeutralParams(aspect_ratio="1:1", resolution="2K", watermark=False, seed=0,
                           reference_images=["reference-image.png"])
    call = RIVYA.submit(request(params, references=(ref,)), "k")
    assert call.json_body == load_fixture("rivya/seed000_reference_request.json")


def test_select_params_travel_as_strings_and_seed_as_a_number() -> None:
    params = NeutralParams(aspect_ratio="8:1", resolution="1K", watermark=True, seed=2147483647)
    body = RIVYA.submit(request(params), "k").json_body
    assert body["params"] == {"aspect_ratio": "8:1", "resolution": "1K", "watermark": "true", "seed": 2147483647}
    assert isinstance(body["params"]["seed"], int)


def test_provider_params_pass_through_unchanged() -> None:
    params = NeutralParams(seed=3, provider_params={"future_knob": {"a": [1, 2]}})
    assert RIVYA.submit(request(params), "k").json_body["params"]["future_knob"] == {"a": [1, 2]}


def test_submit_posts_to_generations_with_the_idempotency_key_header() -> None:
    call = RIVYA.submit(request(NeutralParams(seed=0)), "wanp-abc123")
    assert (call.method, call.path) == ("POST", "/api/v1/generations")
    assert call.headers == {"Idempotency-Key": "wanp-abc123"}
    assert "Authorization" not in call.headers  # the engine adds auth, never the sans-I/O module


def test_auth_header_is_a_bearer_token() -> None:
    assert RIVYA.auth_headers("sk-test") == {"Authorization": "Bearer sk-test"}


def test_poll_gets_the_task_by_id() -> None:
    call = RIVYA.poll("task_8c1f0e")
    assert (call.method, call.path, call.json_body) == ("GET", "/api/v1/generations/task_8c1f0e", None)


def test_upload_is_a_multipart_post_to_files_with_kind_and_model(tmp_path: Path) -> None:
    ref = Reference(kind="image", source="a.png", path=tmp_path / "a.png", mime_type="image/png")
    call = RIVYA.upload("wan-2-7-image", ref, b"\x89PNG...")
    assert call is not None
    assert (call.method, call.path) == ("POST", "/api/v1/files")
    assert call.form == {"kind": "image", "model": "wan-2-7-image"}
    assert call.files == {"file": ("a.png", b"\x89PNG...", "image/png")}


def test_files_answer_fills_url_and_duration_fields() -> None:
    ref = Reference(kind="video", source="clip.mp4")
    done = RIVYA.uploaded(ref, reply(200, load_fixture("rivya/sheet_files_response.json")))
    assert done.url == "https://<rivya-file-url>/clip.mp4"
    assert done.upload_fields == {"durationToken": "dtok_...", "durationSeconds": 8.2}


def test_files_answer_without_url_is_transient() -> None:
    with pytest.raises(e.Transient):
        RIVYA.uploaded(Reference(kind="image", source="a.png"), reply(200, {"id": "file_1"}))


# -- parsing task states --------------------------------------------------------------------------


def test_seed_000_create_response_is_a_pending_task_with_5_credits_reserved() -> None:
    snap = RIVYA.accepted(reply(200, load_fixture("rivya/seed000_create_response.json")))
    assert snap.task_id == "task_wan_2_7_image_example"
    assert snap.status is TaskStatus.PENDING
    assert snap.credits_reserved == 5.0
    assert snap.credits_final is None  # 0 until settled is not an actual
    assert (snap.output_urls, snap.error) == ((), None)


@pytest.mark.parametrize("fixture", ["rivya/sheet_task_queued.json", "rivya/sheet_task_processing.json"])
def test_queued_and_processing_are_pending(fixture: str) -> None:
    snap = RIVYA.state(reply(200, load_fixture(fixture)))
    assert (snap.task_id, snap.status, snap.credits_reserved, snap.credits_final) == (
        "task_8c1f0e", TaskStatus.PENDING, 80.0, None,
    )


def test_succeeded_task_gives_its_urls_and_final_credits() -> None:
    snap = RIVYA.state(reply(200, load_fixture("rivya/sheet_task_succeeded.json")))
    assert snap.status is TaskStatus.SUCCEEDED
    assert snap.output_urls == ("https://<media-host>/out.mp4",)
    assert (snap.credits_reserved, snap.credits_final, snap.error) == (80.0, 80.0, None)
    assert snap.raw == load_fixture("rivya/sheet_task_succeeded.json")


def test_failed_task_with_generation_failed_gives_generation_failed() -> None:
    snap = RIVYA.state(reply(200, load_fixture("rivya/sheet_task_failed.json")))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is e.GenerationFailed
    assert (snap.error.code, snap.error.message) == ("generation_failed", "The generation failed.")
    assert snap.credits_final == 0.0  # refunded
    assert snap.output_urls == ()


def test_failed_task_with_a_moderation_code_is_content_rejected() -> None:
    body = load_fixture("rivya/sheet_task_failed.json")
    body["error"] = {"code": "content_policy_violation", "message": "rejected"}
    snap = RIVYA.state(reply(200, body))
    assert type(snap.error) is e.ContentRejected
    assert snap.error.code == "content_policy_violation"


def test_failed_task_without_error_object_is_generation_failed() -> None:
    body = {**load_fixture("rivya/sheet_task_failed.json"), "error": None}
    snap = RIVYA.state(reply(200, body))
    assert type(snap.error) is e.GenerationFailed
    assert snap.error.code == "generation_failed"


def test_succeeded_task_with_only_primary_url_uses_it() -> None:
    body = load_fixture("rivya/sheet_task_succeeded.json")
    body["result"] = {"primary_url": "https://m/x.png"}
    assert RIVYA.state(reply(200, body)).output_urls == ("https://m/x.png",)


def test_succeeded_task_without_urls_counts_as_failed_generation() -> None:
    body = {**load_fixture("rivya/sheet_task_succeeded.json"), "result": None}
    snap = RIVYA.state(reply(200, body))
    assert snap.status is TaskStatus.FAILED
    assert type(snap.error) is e.GenerationFailed
    assert snap.error.code == "no_output"


def test_unknown_task_status_is_transient() -> None:
    body = {**load_fixture("rivya/sheet_task_queued.json"), "status": "paused"}
    with pytest.raises(e.Transient, match="unknown task status 'paused'"):
        RIVYA.state(reply(200, body))


def test_answer_that_is_not_a_task_is_transient() -> None:
    with pytest.raises(e.Transient) as info:
        RIVYA.state(reply(200, b"<html>gateway</html>"))
    assert info.value.code == "bad_response"


# -- classifying errors ---------------------------------------------------------------------------

EXPECTED_CLASS: dict[str, type[e.ProviderError]] = {
    "validation_failed": e.RejectedByProvider,
    "api_key_missing": e.AuthenticationFailed,
    "api_key_invalid": e.AuthenticationFailed,
    "api_key_revoked": e.AuthenticationFailed,
    "api_key_expired": e.AuthenticationFailed,
    "api_scope_denied": e.AuthenticationFailed,
    "not_found": e.RejectedByProvider,
    "idempotency_conflict": e.IdempotencyConflict,
    "rate_limited": e.RateLimited,
    "public_api_disabled": e.Transient,
    "insufficient_credits": e.InsufficientCredits,
    "webhook_url_rejected": e.RejectedByProvider,
}
SHEET_CODES = [(c["code"], c["http"]) for c in load_fixture("rivya/sheet_error_codes.json")["codes"]]


def test_every_code_of_the_sheet_has_an_expected_class() -> None:
    assert sorted(code for code, _ in SHEET_CODES) == sorted(EXPECTED_CLASS)


@pytest.mark.parametrize(("code", "http"), SHEET_CODES)
def test_sheet_error_code_maps_to_its_error_class(code: str, http: int) -> None:
    err = RIVYA.error(reply(http, envelope(code, "why it failed")))
    assert type(err) is EXPECTED_CLASS[code]
    assert (err.code, err.message, err.http_status) == (code, "why it failed", http)


def test_error_classes_carry_what_the_engine_decides_on() -> None:
    def classify(code: str, http: int) -> e.ProviderError:
        return RIVYA.error(reply(http, envelope(code)))

    assert classify("api_key_invalid", 401).stops_submissions is True
    assert classify("api_scope_denied", 403).stops_submissions is True
    assert classify("insufficient_credits", 402).stops_submissions is True
    assert classify("rate_limited", 429).retryable is True
    assert classify("public_api_disabled", 503).retryable is True
    assert classify("validation_failed", 400).retryable is False
    assert classify("idempotency_conflict", 409).retryable is False


def test_sheet_validation_envelope_is_parsed() -> None:
    err = RIVYA.error(reply(400, load_fixture("rivya/sheet_error_validation_failed.json")))
    assert type(err) is e.RejectedByProvider
    assert (err.code, err.message) == ("validation_failed", "params.resolution must be one of 1K, 2K")


def test_rate_limited_takes_retry_after_from_the_header() -> None:
    err = RIVYA.error(reply(429, envelope("rate_limited"), {"Retry-After": "7"}))
    assert type(err) is e.RateLimited
    assert err.retry_after_s == 7.0


def test_retry_after_header_name_is_case_insensitive_and_dates_count_from_now() -> None:
    assert RIVYA.error(reply(429, envelope("rate_limited"), {"retry-after": "2.5"})).retry_after_s == 2.5
    passed = reply(429, envelope("rate_limited"), {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert RIVYA.error(passed).retry_after_s == 0.0  # an HTTP-date already past: retry now
    ahead = reply(429, envelope("rate_limited"), {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert (RIVYA.error(ahead).retry_after_s or 0) > 3600
    assert RIVYA.error(reply(429, envelope("rate_limited"))).retry_after_s is None


def test_public_api_disabled_is_transient_and_keeps_retry_after() -> None:
    err = RIVYA.error(reply(503, envelope("public_api_disabled"), {"Retry-After": "30"}))
    assert type(err) is e.Transient
    assert err.retry_after_s == 30.0


def test_500_with_a_non_json_body_is_transient() -> None:
    err = RIVYA.error(HttpReply(500, {"content-type": "text/html"}, b"<h1>Internal Server Error</h1>"))
    assert type(err) is e.Transient
    assert (err.code, err.http_status) == ("http_500", 500)
    assert err.message == "<h1>Internal Server Error</h1>"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, e.RejectedByProvider), (401, e.AuthenticationFailed), (402, e.InsufficientCredits),
     (409, e.IdempotencyConflict), (429, e.RateLimited), (502, e.Transient)],
)
def test_unknown_code_falls_back_to_the_http_status(status: int, cls: type[e.ProviderError]) -> None:
    err = RIVYA.error(reply(status, envelope("brand_new_code")))
    assert type(err) is cls
    assert err.code == "brand_new_code"


def test_empty_error_body_names_the_status() -> None:
    err = RIVYA.error(HttpReply(404, {}, b""))
    assert type(err) is e.RejectedByProvider
    assert (err.code, err.message) == ("http_404", "HTTP 404")
