"""A real client as witness: Alibaba's official `dashscope` SDK completes tasks against our emulator.

The emulator runs for real (`python -m wan_pipeline.cli emulator`, uvicorn on a free 127.0.0.1 port) and the
SDK is pointed at it through its documented base-URL setting, `dashscope.base_http_api_url`. The SDK is used
as its own source shows (site-packages/dashscope): `aigc.image_generation.ImageGeneration` is the
messages-shaped Wan 2.7 image API (async_call adds `X-DashScope-Async: enable` and posts to
image-generation/generation), `VideoSynthesis` the video one; both poll GET /api/v1/tasks/{id} in `wait`.
Every socket is checked to go to loopback: the SDK never reaches the network.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import dashscope  # the `dev` extra installs it: a missing SDK fails here rather than skipping the witness
import pytest
from conftest import png_bytes
from dashscope import VideoSynthesis
from dashscope.aigc.image_generation import ImageGeneration
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-emulated-any-string"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local(url: str, data: bytes | None = None) -> bytes:
    """urllib without proxies (the environment's, if any, must not see loopback traffic)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with opener.open(request, timeout=30) as response:
        return bytes(response.read())


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wan_pipeline.cli", "emulator", "--port", str(port), "--root-provider", "dashscope",
         "--queue-s", "0", "--process-s", "0.2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _local(f"{base}/_emulator/report")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise RuntimeError(f"emulator did not start: {out}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def sdk(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The SDK aimed at the emulator; any socket to a non-loopback address fails the test."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        assert host in ("127.0.0.1", "::1", "localhost"), f"the SDK tried to reach {address}"
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{emulator}/api/v1")
    _control(emulator, "faults", {})
    _control(emulator, "config", {"queue_s": 0, "process_s": 0.2})
    yield emulator


def _control(base: str, what: str, body: dict[str, Any]) -> None:
    assert json.loads(_local(f"{base}/_emulator/{what}", json.dumps(body).encode())) == {"ok": True}


def _report(base: str) -> dict[str, Any]:
    return dict(json.loads(_local(f"{base}/_emulator/report")))


def _decode_png(url: str) -> tuple[int, int]:
    data = _local(url)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.format == "PNG"
        return img.size


def _decode_mp4(url: str) -> tuple[int, int, int]:
    data = _local(url)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, frames


def _image_urls(response: Any) -> list[str]:
    return [item["image"] for choice in response.output.choices for item in choice.message.content]


def test_sdk_image_generation_async_call_and_wait_get_a_decodable_png(sdk: str) -> None:
    messages = [{"role": "user", "content": [{"text": "a red fox crossing a frosted meadow"}]}]
    created = ImageGeneration.async_call(model="wan2.7-image", api_key=KEY, messages=messages,
                                         size="1K", n=2, watermark=False, seed=42)
    assert created.status_code == 200, created
    assert created.output.task_status == "PENDING"
    task_id = created.output.task_id

    done = ImageGeneration.wait(created, api_key=KEY)
    assert done.status_code == 200, done
    assert (done.output.task_id, done.output.task_status) == (task_id, "SUCCEEDED")
    assert done.usage["image_count"] == 2
    assert done.usage["size"] == "1024*1024"
    urls = _image_urls(done)
    assert len(urls) == 2
    assert all(url.startswith(f"{sdk}/_media/") and "Expires=" in url for url in urls)
    assert [_decode_png(url) for url in urls] == [(1024, 1024), (1024, 1024)]

    fetched = ImageGeneration.fetch(task_id, api_key=KEY)
    assert (fetched.status_code, fetched.output.task_status) == (200, "SUCCEEDED")


def test_sdk_video_synthesis_async_call_and_wait_get_a_decodable_mp4(sdk: str) -> None:
    created = VideoSynthesis.async_call(model="wan2.7-t2v", prompt="a kitten running under the moonlight",
                                        api_key=KEY, resolution="720P", ratio="16:9", duration=2, seed=7,
                                        watermark=False, prompt_extend=True)
    assert created.status_code == 200, created
    assert created.output.task_status == "PENDING"

    done = VideoSynthesis.wait(created, api_key=KEY)
    assert done.status_code == 200, done
    assert done.output.task_status == "SUCCEEDED"
    assert done.output.video_url.startswith(f"{sdk}/_media/")
    assert (done.usage["duration"], done.usage["SR"], done.usage["ratio"]) == (2, 720, "16:9")
    width, height, frames = _decode_mp4(done.output.video_url)
    assert (width, height) == (1280, 720)
    assert frames == 2 * 16


def test_sdk_image_to_video_follows_the_first_frame(sdk: str, tmp_path: Path) -> None:
    # A local file: the SDK uploads it through GET /uploads?action=getPolicy and the policy's OSS host,
    # then sends oss://… with X-DashScope-OssResourceResolve: enable — the sheet's temporary-upload flow.
    frame = tmp_path / "portrait.png"
    frame.write_bytes(png_bytes(size=(300, 400)))
    created = VideoSynthesis.async_call(model="wan2.7-i2v", prompt="she turns her head", api_key=KEY,
                                        media=[{"type": "first_frame", "url": f"file://{frame}"}],
                                        resolution="720P", duration=2)
    assert created.status_code == 200, created
    done = VideoSynthesis.wait(created, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED", done
    assert _decode_mp4(done.output.video_url)[:2] == (832, 1104)  # 3:4, the first frame's aspect


def test_sdk_sees_a_moderation_failure_as_failed_with_its_code(sdk: str) -> None:
    _control(sdk, "faults", {"reject_content": {"next": 1}})
    messages = [{"role": "user", "content": [{"text": "something the moderation refuses"}]}]
    created = ImageGeneration.async_call(model="wan2.7-image-pro", api_key=KEY, messages=messages, size="1K")
    done = ImageGeneration.wait(created, api_key=KEY)
    assert done.status_code == 200
    assert done.output.task_status == "FAILED"
    assert done.output["code"] == "DataInspectionFailed"
    assert _report(sdk)["credits_refunded"] > 0  # failed generations are not billed


def test_sdk_wait_rides_out_a_gateway_503_on_the_query(sdk: str) -> None:
    created = VideoSynthesis.async_call(model="wan2.7-t2v", prompt="rain on a tin roof", api_key=KEY,
                                        resolution="720P", duration=2)
    _control(sdk, "faults", {"server_error": {"next": 1}})
    done = VideoSynthesis.wait(created, api_key=KEY)  # the SDK retries 503/504 queries by itself
    assert done.output.task_status == "SUCCEEDED"
    assert _report(sdk)["faults_injected"] == {"server_error": 1}


def test_sdk_cancel_of_a_pending_task_then_fetch_says_canceled(sdk: str) -> None:
    _control(sdk, "config", {"queue_s": 60})
    created = VideoSynthesis.async_call(model="wan2.7-t2v", prompt="a slow queue", api_key=KEY,
                                        resolution="720P", duration=2)
    cancelled = VideoSynthesis.cancel(created, api_key=KEY)
    assert cancelled.status_code == 200, cancelled
    assert VideoSynthesis.fetch(created, api_key=KEY).output.task_status == "CANCELED"
    again = VideoSynthesis.cancel(created, api_key=KEY)
    assert (again.status_code, again.code) == (400, "UnsupportedOperation")


def test_sdk_sees_invalid_parameters_and_missing_keys_in_the_dashscope_envelope(sdk: str) -> None:
    messages = [{"role": "user", "content": [{"text": "too many"}]}]
    refused = ImageGeneration.async_call(model="wan2.7-image", api_key=KEY, messages=messages, size="1K", n=5)
    assert (refused.status_code, refused.code) == (400, "InvalidParameter")
    assert "parameters.n" in refused.message
    missing = ImageGeneration.async_call(model="wan2.7-image", api_key="", messages=messages)
    assert (missing.status_code, missing.code) == (401, "InvalidApiKey")
    unknown = VideoSynthesis.async_call(model="wan2.7-t2v-turbo", prompt="x", api_key=KEY)
    assert (unknown.status_code, unknown.code) == (404, "ModelNotFound")


def test_the_loopback_guard_refuses_any_other_address(sdk: str) -> None:
    with pytest.raises(AssertionError, match="tried to reach"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
