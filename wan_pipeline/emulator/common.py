"""Pieces every emulated protocol shares: auth header, JSON bodies, media URLs, image sizes."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request

from wan_pipeline.providers.sizes import image_size


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
