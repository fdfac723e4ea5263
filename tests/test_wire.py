"""The wire: where credentials go, what counts as a whole download, which URLs may be fetched."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from wan_pipeline.errors import ConfigError, Transient
from wan_pipeline.execution.wire import Wire, check_fetchable, same_origin

BASE = "https://api.example-host.test"
AUTH = {"Authorization": "Bearer sk-wire-secret"}


def wire_with(handler: httpx.MockTransport) -> tuple[Wire, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=handler)
    return Wire(client, BASE, AUTH), client


async def test_result_on_the_providers_own_origin_is_fetched_with_its_credentials() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x89PNG-bytes")

    wire, client = wire_with(httpx.MockTransport(handle))
    async with client:
        assert await wire.download(f"{BASE}/api/v1/files/out.png") == b"\x89PNG-bytes"
        assert await wire.download("https://cdn.elsewhere.test/out.png?sig=1") == b"\x89PNG-bytes"
    assert seen[0].headers.get("Authorization") == "Bearer sk-wire-secret"
    assert "Authorization" not in seen[1].headers  # a CDN never sees the key


async def test_gzip_encoded_body_is_decoded_and_its_length_checked_on_the_wire() -> None:
    body = b"\x89PNG" + bytes(range(256)) * 20
    packed = gzip.compress(body)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=packed, headers={"Content-Encoding": "gzip",
                                                            "Content-Length": str(len(packed))})

    wire, client = wire_with(httpx.MockTransport(handle))
    async with client:
        assert await wire.download("https://cdn.elsewhere.test/x.png") == body


async def test_body_shorter_than_its_content_length_is_a_transient_truncation() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"half", headers={"Content-Length": "8"})

    wire, client = wire_with(httpx.MockTransport(handle))
    async with client:
        with pytest.raises(Transient) as info:
            await wire.download("https://cdn.elsewhere.test/x.png")
    assert info.value.code == "truncated_download" and info.value.retryable


async def test_expired_result_url_is_a_transient_download_failure() -> None:
    wire, client = wire_with(httpx.MockTransport(lambda r: httpx.Response(403, content=b"expired")))
    async with client:
        with pytest.raises(Transient) as info:
            await wire.download("https://cdn.elsewhere.test/x.png")
    assert (info.value.code, info.value.http_status) == ("download_failed", 403)


def test_plain_http_is_fetched_only_when_the_base_itself_is_loopback_http() -> None:
    check_fetchable("https://cdn.test/x.png", BASE)
    check_fetchable("http://127.0.0.1:9000/x.png", "http://127.0.0.1:8765")
    check_fetchable("http://localhost:9000/x.png", "http://localhost:8765/rivya")
    with pytest.raises(ConfigError):
        check_fetchable("http://cdn.test/x.png", BASE)
    with pytest.raises(ConfigError):
        check_fetchable("http://10.0.0.5/x.png", "http://10.0.0.1:8765")


def test_same_origin_compares_scheme_host_and_port() -> None:
    assert same_origin("https://a.test/x", "https://a.test")
    assert not same_origin("http://a.test/x", "https://a.test")
    assert not same_origin("https://a.test:8443/x", "https://a.test")
    assert not same_origin("https://b.a.test/x", "https://a.test")



async def test_downloads_ask_for_unencoded_bodies_so_content_length_is_exact() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x89PNG")

    wire, client = wire_with(httpx.MockTransport(handle))
    async with client:
        await wire.download("https://cdn.elsewhere.test/x.png")
    assert seen[0].headers["Accept-Encoding"] == "identity"


def test_retry_after_is_read_in_both_of_its_forms() -> None:
    from datetime import UTC, datetime

    from wan_pipeline.providers.base import HttpReply, retry_after_seconds

    now = datetime(2026, 11, 30, 18, 0, 0, tzinfo=UTC)
    seconds = HttpReply(429, {"Retry-After": "7"}, b"")
    date = HttpReply(429, {"retry-after": "Mon, 30 Nov 2026 18:00:12 GMT"}, b"")
    past = HttpReply(429, {"Retry-After": "Mon, 30 Nov 2026 17:00:00 GMT"}, b"")
    junk = HttpReply(429, {"Retry-After": "soon"}, b"")
    assert retry_after_seconds(seconds, now) == 7.0
    assert retry_after_seconds(date, now) == 12.0
    assert retry_after_seconds(past, now) == 0.0
    assert retry_after_seconds(junk, now) is None


async def test_requests_search_no_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore asks `import sniffio` which async library runs for every lock, event and cancel shield of a
    request; with sniffio missing, each ask searched the import path and failed (75 us, 4-6 % of `generate`'s
    interpreter time). sniffio is a dependency now: requests through a real connection pool to a server on
    127.0.0.1 make no path search at all."""
    import importlib.machinery

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
            await writer.drain()

    searches: list[str] = []
    find_spec = importlib.machinery.PathFinder.find_spec

    def counted(name: str, *args: object, **kwargs: object) -> object:
        searches.append(name)
        return find_spec(name, *args, **kwargs)  # type: ignore[arg-type]

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/warm")).text == "ok"  # first-use imports
        spy = classmethod(lambda cls, *a, **k: counted(*a, **k))
        monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", spy)
        for i in range(20):
            async with client.stream("GET", f"http://127.0.0.1:{port}/{i}") as response:
                assert await response.aread() == b"ok"
        monkeypatch.undo()
    assert searches == []
