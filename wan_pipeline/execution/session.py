"""A generation session: spec + endpoint + ledger + storage + engine, opened once per run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from wan_pipeline.execution.endpoints import Endpoint, in_process_emulator, resolve_endpoint, state_dir
from wan_pipeline.execution.engine import EngineSettings, EventSink, TaskEngine
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.ledger import Ledger
from wan_pipeline.money.location import shared_ledger_url
from wan_pipeline.outputs.storage import Storage, open_storage
from wan_pipeline.planning.spec import DatasetSpec
from wan_pipeline.providers.registry import get_provider


def open_ledger(spec: DatasetSpec) -> Ledger:
    """The shared PostgreSQL ledger when one is configured (money.location), else SQLite in the state dir."""
    url = shared_ledger_url()
    return Ledger.open(url) if url else Ledger(state_dir(spec) / "ledger.sqlite")


@dataclass
class Session:
    spec: DatasetSpec
    endpoint: Endpoint
    ledger: Ledger
    storage: Storage
    engine: TaskEngine


@asynccontextmanager
async def open_session(
    spec: DatasetSpec,
    settings: EngineSettings | None = None,
    run_id: str | None = None,
    on_event: EventSink | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    storage: Storage | None = None,
) -> AsyncIterator[Session]:
    endpoint = resolve_endpoint(spec)
    if transport is None and endpoint.in_process:
        _, transport = in_process_emulator(spec)  # endpoint.base_url already names it
    provider = get_provider(spec.provider)
    ledger = open_ledger(spec)
    storage = storage or open_storage(spec.storage_root)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    try:
        async with httpx.AsyncClient(transport=transport, limits=limits, follow_redirects=True) as client:
            wire = Wire(client, endpoint.base_url, provider.auth_headers(endpoint.api_key))
            engine = TaskEngine(
                provider,
                wire,
                ledger,
                storage,
                spec.budget,
                settings or EngineSettings(),
                run_id=run_id,
                on_event=on_event,
            )
            yield Session(spec, endpoint, ledger, storage, engine)
    finally:
        ledger.close()
