"""Partitions reach the Dagster instance while the run goes on (issue 7: live materialization).

Structural, not timed: the emulator (served over HTTP on 127.0.0.1 by this test) holds the run's *last*
create request until the instance shows what the earlier partitions became — a materialization for a stored
one, an observation with its reason for a failed one. If the op published only at the end, nothing would
appear while the last task waits to be submitted, and the hold would end empty-handed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import uvicorn
from conftest import SpecWriter
from e2e_helpers import FAST_ENGINE, free_port

from wan_pipeline.assets.backfill import range_tags
from wan_pipeline.assets.dataset import generate_job_name, prompt_table_job_name
from wan_pipeline.assets.generation import FAILED_PARTITIONS
from wan_pipeline.definitions import build_definitions
from wan_pipeline.emulator.app import create_app
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.planning.spec import load_spec

PROMPTS = [f"p{i}" for i in range(5)]
CREATE_PATH = "/api/v1/generations"


class HoldLastCreate:
    """ASGI middleware: the `last`-th create waits until `ready()` returns something truthy (or 60 s pass)."""

    def __init__(self, app: Any, last: int, ready: Any) -> None:
        self.app, self.last, self.ready = app, last, ready
        self.creates = 0
        self.seen_at_last_create: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == CREATE_PATH:
            self.creates += 1
            if self.creates == self.last:
                self.seen_at_last_create = await asyncio.to_thread(self._wait)
        await self.app(scope, receive, send)

    def _wait(self) -> Any:
        deadline = time.monotonic() + 60  # a bound on a hold that fails the test, never a speed limit
        while not (seen := self.ready()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, port


def _observed_failed(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str) -> dict[str, Any] | None:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=5
    ).records
    for record in records:
        observation = record.asset_observation
        if observation is not None and observation.metadata["status"].value == "failed":
            return {k: v.value for k, v in observation.metadata.items()}
    return None


def test_partitions_are_published_before_the_last_task_is_submitted(
    write_spec: SpecWriter, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = dg.AssetKey(["demo", "media"])
    generations = dg.AssetKey(["demo", "generations"])

    def ready() -> Any:
        stored = set(instance.get_materialized_partitions(media))
        failed = _observed_failed(instance, generations, PROMPTS[0])
        return (stored, failed) if stored and failed else None

    # The first task created (p0's, concurrency 1) is refused by content moderation; the rest succeed.
    state = EmulatorState(
        EmulatorConfig(queue_s=0, process_s=0.05, faults=FaultConfig.model_validate({"reject_content": {"next": 1}}))
    )
    gate = HoldLastCreate(create_app(state, "rivya"), last=len(PROMPTS), ready=ready)
    server, thread, port = _serve(gate)
    try:
        for name in [n for n in os.environ if n.startswith(("WAN_PIPELINE_", "RIVYA_"))]:
            monkeypatch.delenv(name)
        for name, value in {**FAST_ENGINE, "WAN_PIPELINE_MAX_CONCURRENCY": "1"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RIVYA_API_KEY", "test-key")
        spec_path = write_spec(
            [{"prompt_id": p, "prompt": f"A lighthouse, view {p}"} for p in PROMPTS],
            endpoint=f"http://127.0.0.1:{port}",
            params={"resolution": "1K"},
            storage="./out",
        )
        spec = load_spec(spec_path)
        defs = build_definitions([spec_path])
        assert defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance).success
        run = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
            instance=instance, tags=range_tags(PROMPTS[0], PROMPTS[-1]), raise_on_error=False
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    assert gate.seen_at_last_create is not None, "nothing reached the instance before the last task was submitted"
    assert gate.creates == len(PROMPTS)
    stored_before_last, failed_before_last = gate.seen_at_last_create
    assert stored_before_last <= set(PROMPTS[1:-1]) and stored_before_last
    assert failed_before_last["status"] == "failed" and "content_policy_violation" in failed_before_last["reason"]

    # The step fails at the end, naming the failed partition as data; every good one is materialized.
    assert not run.success
    [failure] = [e.step_failure_data for e in run.all_events if e.is_step_failure]
    assert failure.user_failure_data is not None
    failed = failure.user_failure_data.metadata[FAILED_PARTITIONS].value
    assert list(failed) == [PROMPTS[0]] and "content_policy_violation" in failed[PROMPTS[0]]
    assert set(instance.get_materialized_partitions(media)) == set(PROMPTS[1:])
    assert set(instance.get_materialized_partitions(generations)) == set(PROMPTS[1:])
