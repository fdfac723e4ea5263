"""The one place that turns a provider's HttpCall into bytes on a socket (or an in-process ASGI app)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

from wan_pipeline.errors import ConfigError, Transient
from wan_pipeline.providers.base import HttpCall, HttpReply


def is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def check_fetchable(url: str, base_url: str) -> None:
    """DESIGN §6: https always; plain http only when the base itself is http on loopback."""
    if url.startswith("https://"):
        return
    if url.startswith("http://") and is_loopback_http(base_url):
        return
    raise ConfigError(f"refusing to fetch non-HTTPS URL {url.split('?')[0]!r}")


CONNECT_ERROR = "connect_error"


class Wire:
    """Sends HttpCalls to one provider base URL with its auth headers; never logs headers."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, auth_headers: dict[str, str]) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self._auth = auth_headers

    async def send(self, call: HttpCall, timeout_s: float = 60.0) -> HttpReply:
        if call.path.startswith(("https://", "http://")):
            # Another host (an upload step's storage): reachable under the fetch rules, credentials only
            # if it is the provider's own origin.
            check_fetchable(call.path, self.base_url)
            url = call.path
            headers = {**call.headers, **(self._auth if same_origin(call.path, self.base_url) else {})}
        else:
            url = self.base_url + call.path
            headers = {**call.headers, **self._auth}
        try:
            if call.files is not None:
                resp = await self.client.request(
                    call.method, url, headers=headers, data=call.form or {}, files=call.files, timeout=timeout_s
                )
            elif call.json_body is not None:
                resp = await self.client.request(
                    call.method,
                    url,
                    headers={**headers, "Content-Type": "application/json"},
                    content=call.body_json().encode("utf-8"),
                    timeout=timeout_s,
                )
            else:
                resp = await self.client.request(call.method, url, headers=headers, timeout=timeout_s)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the server: safe to retry even where the host has no idempotency keys.
            raise Transient(code=CONNECT_ERROR, message=f"{type(exc).__name__} on {call.method} {call.path}") from None
        except httpx.TransportError as exc:
            raise Transient(
                code="network_error", message=f"{type(exc).__name__} on {call.method} {call.path}"
            ) from None
        return HttpReply(resp.status_code, dict(resp.headers), resp.content)

    async def download(self, url: str, timeout_s: float = 300.0) -> bytes:
        """Fetch a result URL, streamed, and check it arrived whole.

        Our credentials go only to the provider's own origin (some hosts serve results behind the API's
        auth); a CDN or any other host never sees them.
        """
        check_fetchable(url, self.base_url)
        # identity: media is compressed already, and an unencoded body makes Content-Length an exact check.
        headers = {"Accept-Encoding": "identity", **(self._auth if same_origin(url, self.base_url) else {})}
        chunks: list[bytes] = []
        try:
            async with self.client.stream("GET", url, headers=headers, timeout=timeout_s) as resp:
                if resp.status_code >= 400:
                    raise Transient(
                        code="download_failed",
                        message=f"HTTP {resp.status_code} for a result URL",
                        http_status=resp.status_code,
                    )
                declared = resp.headers.get("Content-Length")
                encoded = resp.headers.get("Content-Encoding", "identity").lower() != "identity"
                async for chunk in resp.aiter_bytes():
                    chunks.append(chunk)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # A content-encoded body cut short fails to decode: the same truncation, seen by the decoder.
            raise Transient(code="download_interrupted", message=f"{type(exc).__name__} while downloading") from None
        data = b"".join(chunks)
        # Content-Length counts the body as sent; it equals what we hold unless a server encoded it anyway
        # (then a cut-off body is caught by decoding the media in full, see media.py).
        if not encoded and declared is not None and declared.isdigit() and int(declared) != len(data):
            raise Transient(code="truncated_download", message=f"got {len(data)} of {declared} bytes")
        return data


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
