"""execution/calls.py: Caller retries by error class, shares a Retry-After pause, and never re-sends a create that
may have reached a host without idempotency keys — except after a refused connection, which proves it did not.

Rivya has idempotency keys; EvoLink has none (each accepted POST is a new task). Both run in-process.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import Rig, RigFactory

from wan_pipeline import errors as e
from wan_pipeline.execution.wire import CONNECT_ERROR

EVOLINK = {"provider": "evolink", "model": "wan-2.7-image", "params": {"aspect_ratio": "1:1", "resolution": "1K"}}


class RefusingTransport(httpx.AsyncBaseTransport):
    """Refuses the first `refusals` connections (as a closed port does), then lets requests through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, refusals: int) -> None:
        self.inner = inner
        self.refusals = refusals

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refusals > 0:
            self.refusals -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


def submit_calls(r: Rig) -> int:
    latest = r.ledger.latest(r.tasks[0].identity)
    assert latest is not None
    return latest.submit_calls


async def test_a_create_refused_with_5xx_is_resent_to_a_host_with_idempotency_keys(rig: RigFactory) -> None:
    r = rig()
    call = r.record(r.tasks[0])
    r.faults(server_error=2)
    reply = await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert reply.status < 400
    assert submit_calls(r) == 3  # every send is counted in the ledger
    assert r.state.report()["tasks_created"] == 1


async def test_a_create_answered_429_waits_and_is_resent(rig: RigFactory) -> None:
    r = rig()
    call = r.record(r.tasks[0])
    r.faults(rate_limit=1)
    reply = await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert reply.status < 400 and submit_calls(r) == 2
    assert r.state.report()["faults_injected"] == {"rate_limit": 1}


async def test_retry_after_pauses_every_call_through_the_same_gate(rig: RigFactory) -> None:
    """While one create waits out a 429's Retry-After, every other call through the caller's gate waits too."""
    r = rig()
    call = r.record(r.tasks[0])
    r.faults(retry_after_s=0.3, rate_limit=1)
    caller = r.caller()
    create = asyncio.create_task(caller.send(call, submission=(r.tasks[0].identity, 1)))
    while caller.gate.remaining_pause() == 0.0:  # set when the caller reads the 429
        assert not create.done(), "the create finished without pausing the gate"
        await asyncio.sleep(0.001)
    remaining = caller.gate.remaining_pause()
    assert 0.0 < remaining <= 0.3
    loop = asyncio.get_running_loop()
    before = loop.time()
    await caller.gate.before_call()  # what every poll and download does first
    assert loop.time() - before >= remaining - 0.01  # asyncio may wake a clock tick early
    assert (await create).status < 400
    assert submit_calls(r) == 2


async def test_a_5xx_on_a_create_to_a_host_without_idempotency_keys_is_not_resent(rig: RigFactory) -> None:
    r = rig(**EVOLINK)
    call = r.record(r.tasks[0])
    r.faults(server_error=1)
    with pytest.raises(e.Transient):
        await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert submit_calls(r) == 1
    assert r.state.report()["submit_requests"] == 1


async def test_a_lost_answer_to_a_create_on_such_a_host_is_not_resent(rig: RigFactory) -> None:
    r = rig(**EVOLINK)
    call = r.record(r.tasks[0])
    r.faults(drop=1)
    with pytest.raises(e.Transient) as raised:
        await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert raised.value.code != CONNECT_ERROR
    assert r.state.report()["tasks_created"] == 1  # the host holds it: a re-send would buy a second one
    assert submit_calls(r) == 1


async def test_a_refused_connection_is_retried_even_for_such_a_create(rig: RigFactory) -> None:
    r = rig(**EVOLINK, transport=lambda inner: RefusingTransport(inner, refusals=2))
    call = r.record(r.tasks[0])
    reply = await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert reply.status < 400
    assert submit_calls(r) == 3
    assert r.state.report()["tasks_created"] == 1


async def test_a_429_on_a_create_to_such_a_host_is_resent(rig: RigFactory) -> None:
    # a 429 is a refusal before any work: safe to re-send without keys
    r = rig(**EVOLINK)
    call = r.record(r.tasks[0])
    r.faults(rate_limit=1)
    reply = await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert reply.status < 400 and r.state.report()["tasks_created"] == 1


async def test_polls_are_retried_on_5xx_on_any_host(rig: RigFactory) -> None:
    r = rig(**EVOLINK)
    call = r.record(r.tasks[0])
    created = r.provider.accepted(await r.caller().send(call, submission=(r.tasks[0].identity, 1)))
    r.faults(server_error=2)
    snap = r.provider.state(await r.caller().send(r.provider.poll(created.task_id)))
    assert snap.task_id == created.task_id
    assert r.state.report()["faults_injected"] == {"server_error": 2}


async def test_a_permanent_refusal_is_not_retried(rig: RigFactory) -> None:
    r = rig(api_key="")  # rivya refuses a missing key with 401
    call = r.record(r.tasks[0])
    with pytest.raises(e.AuthenticationFailed):
        await r.caller().send(call, submission=(r.tasks[0].identity, 1))
    assert submit_calls(r) == 1 and r.state.report()["tasks_created"] == 0


async def test_retries_stop_at_http_retries(rig: RigFactory) -> None:
    r = rig()
    call = r.record(r.tasks[0])
    r.faults(server_error=10)
    with pytest.raises(e.Transient):
        await r.caller(http_retries=2).send(call, submission=(r.tasks[0].identity, 1))
    assert submit_calls(r) == 3  # the first send and two retries
