"""A generation session: spec + endpoint + ledger + storage + engine, opened once per run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from wan_pipeline.execution.endpoints import Endpoint, in_process_emulator, resolve_endpoint, state_dir
from wan_pipeline.execution.engine import EngineSettings, EventSink, TaskEngine
from wan_pipeline.execution.journal import Journal
from wan_pipeline.execution.memory import release_free_memory
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.database import Runner
from wan_pipeline.money.leases import LeaseSettings, SlotLeases
from wan_pipeline.money.ledger import Ledger
from wan_pipeline.money.location import shared_ledger_url
from wan_pipeline.money.rate import SharedRateGate
from wan_pipeline.money.wakeups import loop_rank
from wan_pipeline.outputs.storage import Storage, open_storage
from wan_pipeline.planning.spec import DatasetSpec
from wan_pipeline.providers.registry import get_provider


def open_ledger(spec: DatasetSpec) -> Ledger:
    """The shared PostgreSQL ledger when one is configured (money.location), else SQLite in the state dir."""
    url = shared_ledger_url()
    return Ledger.open(url) if url else Ledger(state_dir(spec) / "ledger.sqlite")


def account_scope(endpoint: Endpoint) -> str:
    """The provider account limits are shared over: its host URL (a key is never written, not even hashed)."""
    return f"{endpoint.provider} {endpoint.base_url}"


def shared_limits(
    ledger: Ledger, endpoint: Endpoint, settings: EngineSettings, runner: Runner | None = None
) -> tuple[SharedRateGate, SlotLeases]:
    """Submit pacing and concurrency for every run sharing this ledger (all machines, on PostgreSQL).

    `max_concurrency` and `submits_per_second` are then limits of the account, not of one run; a lease of a
    killed run lapses after WAN_PIPELINE_LEASE_TTL_S seconds (default 60)."""
    scope = account_scope(endpoint)
    ttl = float(os.environ.get("WAN_PIPELINE_LEASE_TTL_S") or 60)
    gate = SharedRateGate(ledger.db, scope, settings.submits_per_second, runner)
    return gate, SlotLeases(ledger.db, scope, LeaseSettings(limit=settings.max_concurrency, ttl_s=ttl), runner=runner)


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
    loop_rank()  # this engine's place among the process's (`money.wakeups`): the order sessions open in
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
            settings = settings or EngineSettings()
            # their database calls ride the engine's journal: one commit shared with the ledger's writes
            journal = Journal(ledger)
            gate, slots = shared_limits(ledger, endpoint, settings, journal)
            engine = TaskEngine(
                provider,
                wire,
                ledger,
                storage,
                spec.budget,
                settings,
                run_id=run_id,
                on_event=on_event,
                gate=gate,
                slots=slots,
                journal=journal,
            )
            yield Session(spec, endpoint, ledger, storage, engine)
    finally:
        ledger.close()
        release_free_memory()  # a long `generate` runs many sessions in one process (execution/memory.py)
