"""Pieces every emulated protocol shares: auth header, JSON bodies, media URLs, image sizes, loopback URLs."""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from wan_pipeline.emulator.limits import image_size


class ConnectionDropped(Exception):
    """Raised by a handler to emulate a connection that dies after the server did the work."""


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


async def read_json(request: Request) -> tuple[Any, str | None]:
    raw = await request.body()
    try:
        return json.loads(raw), None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "body is not valid JSON"


def request_id() -> str:
    return "req_" + uuid.uuid4().hex[:12]


def media_url(base: str, task_id: str, index: int, fmt: str) -> str:
    return f"{base.rstrip('/')}/_media/{task_id}/{index}.{fmt}"


def size_for_image(aspect: str, resolution: str) -> tuple[int, int]:
    return image_size(aspect, resolution.upper())


def is_loopback_http(url: str) -> bool:
    """A plain-http URL on this machine: the only http a host emulated on 127.0.0.1 lets through (DESIGN §6)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False
