"""The emulator as an ASGI app (Starlette), plus an httpx transport that runs it in-process."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from wan_pipeline.emulator import dashscope, evolink, reapi, rivya, runware
from wan_pipeline.emulator.common import ConnectionDropped
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.imagegen import render_image
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState

MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "mp4": "video/mp4"}


class DroppedResponse(Response):
    """Promises a body, sends a fragment, dies: what a client sees when a connection breaks."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id":', "more_body": True})
        raise ConnectionDropped("emulated connection drop")


class TruncatedResponse(Response):
    """Declares the full length, delivers half."""

    def __init__(self, data: bytes, media_type: str) -> None:
        super().__init__(status_code=200)
        self._data = data
        self._media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", self._media_type.encode()),
                    (b"content-length", str(len(self._data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._data[: len(self._data) // 2], "more_body": False})


@lru_cache(maxsize=64)
def _rendered(key: str, width: int, height: int, fmt: str) -> bytes:
    return render_image(key, width, height, fmt)


def _capped(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The rendered size: as requested, or scaled down (aspect kept, even sides for H.264) to `max_side`."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(16, int(width * scale) // 2 * 2), max(16, int(height * scale) // 2 * 2)


async def media(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    task = state.tasks.get(request.path_params["task_id"])
    index = int(request.path_params["index"])
    if task is None or state.settle(task) != "succeeded" or index >= len(task.outputs):
        return JSONResponse({"error": "not found"}, status_code=404)
    out = task.outputs[index]
    width, height = _capped(out["width"], out["height"], state.config.media_max_side)
    if out["kind"] == "video":
        from wan_pipeline.emulator.videogen import render_video

        data = render_video(out["key"], width, height, out["duration"], out.get("fps", 16))
    else:
        data = _rendered(out["key"], width, height, out["format"])
    mime = MIME[out["format"]]
    if state.faults.hit("truncate"):
        return TruncatedResponse(data, mime)
    return Response(data, media_type=mime)


async def report(request: Request) -> Response:
    return JSONResponse(request.app.state.emulator.report())


async def set_faults(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    state.faults.configure(FaultConfig.model_validate(await request.json()))
    return JSONResponse({"ok": True})


async def set_config(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    body: dict[str, Any] = await request.json()
    with state.lock:
        for key in ("queue_s", "process_s", "answer_delay_s"):
            if key in body:
                setattr(state.config, key, float(body[key]))
        if "media_max_side" in body:
            state.config.media_max_side = None if body["media_max_side"] is None else int(body["media_max_side"])
        if "balance" in body:
            state.balance = float(body["balance"])
        state.save()
    return JSONResponse({"ok": True})


#: emulated wire protocols: provider name -> routes (paths exactly as the provider documents them)
PROTOCOLS: dict[str, Sequence[BaseRoute]] = {
    "rivya": rivya.ROUTES,
    "evolink": evolink.ROUTES,
    # -- evolink routes --
    "reapi": reapi.ROUTES,
    # -- reapi routes --
    "runware": runware.ROUTES,
    # -- runware routes --
    "dashscope": dashscope.ROUTES,
    # -- dashscope routes --
}

CONTROL_ROUTES: list[BaseRoute] = [
    Route("/_media/{task_id}/{index:int}.{fmt}", media, methods=["GET"]),
    Route("/_emulator/report", report, methods=["GET"]),
    Route("/_emulator/faults", set_faults, methods=["POST"]),
    Route("/_emulator/config", set_config, methods=["POST"]),
]


def create_app(state: EmulatorState | None = None, protocol: str = "rivya") -> Starlette:
    """One protocol at the root, as the in-process emulator serves the spec's provider."""
    app = Starlette(routes=[*PROTOCOLS[protocol], *CONTROL_ROUTES])
    app.state.emulator = state or EmulatorState()
    return app


def create_server_app(state: EmulatorState, root_protocol: str = "rivya") -> Starlette:
    """Every protocol under /<provider> (base URL http://127.0.0.1:PORT/<provider>), one also at the root.

    Prefixes keep protocols whose documented paths collide (reAPI's and DashScope's /api/v1/tasks/{id})
    apart while sharing one account: balance, faults and the report.
    """
    mounts: list[BaseRoute] = [Mount(f"/{name}", app=create_app(state, name)) for name in PROTOCOLS]
    app = Starlette(routes=[*mounts, Mount("/", app=create_app(state, root_protocol))])
    app.state.emulator = state
    return app


class InProcessTransport(httpx.AsyncBaseTransport):
    """httpx.ASGITransport that turns an emulated drop into the error a real socket would give."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(f"peer closed connection ({exc})", request=request) from None


#: the base URL the in-process emulator answers on; loopback, so plain-http result URLs are allowed
IN_PROCESS_BASE = "http://127.0.0.1:1"


def in_process(
    config: EmulatorConfig | None = None, protocol: str = "rivya"
) -> tuple[EmulatorState, InProcessTransport]:
    state = EmulatorState(config)
    return state, InProcessTransport(create_app(state, protocol))
