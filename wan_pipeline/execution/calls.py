"""One HTTP call to the host, retried by error class (DESIGN §9): the only place requests are re-sent."""

from __future__ import annotations

import asyncio
import random

from wan_pipeline import errors as e
from wan_pipeline.execution.journal import AsyncLedger
from wan_pipeline.execution.pacing import Pacer, backoff_delay
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.execution.wire import CONNECT_ERROR, Wire
from wan_pipeline.providers.base import HttpCall, HttpReply, Provider


class Caller:
    """Sends calls through the wire: paced by the gate, retried on 429/5xx/network with byte-identical bodies."""

    def __init__(
        self,
        provider: Provider,
        wire: Wire,
        ledger: AsyncLedger,
        gate: Pacer,
        settings: EngineSettings,
        rng: random.Random,
    ) -> None:
        self.provider = provider
        self.wire = wire
        self.ledger = ledger
        self.gate = gate
        self.settings = settings
        self.rng = rng

    async def send(self, call: HttpCall, submission: tuple[str, int] | None = None) -> HttpReply:
        """Send with retries; `submission` (identity, attempt) marks a create, counted in the ledger per send."""
        retry = 0
        while True:
            await (self.gate.before_submit() if submission is not None else self.gate.before_call())
            try:
                if submission is not None:
                    await self.ledger.count_submit_call(*submission)
                reply = await self.wire.send(call, timeout_s=self.settings.request_timeout_s)
                if reply.status < 400:
                    return reply
                err = self.provider.error(reply)
            except e.Transient as exc:
                err = exc
            if not self._may_retry(err, retry, submission is not None):
                raise err
            retry += 1
            await asyncio.sleep(self._delay(err, retry - 1))

    def _may_retry(self, err: e.ProviderError, retry: int, is_create: bool) -> bool:
        if not err.retryable or retry >= self.settings.http_retries:
            return False
        # A create that may have been acted on must not be re-sent to a host without idempotency keys:
        # it could be bought twice. Only a refused connection proves nothing arrived.
        unsafe = not self.provider.supports_idempotency_key and isinstance(err, e.Transient)
        return not (is_create and unsafe and err.code != CONNECT_ERROR)

    def _delay(self, err: e.ProviderError, retry: int) -> float:
        if isinstance(err, e.RateLimited) and err.retry_after_s is not None:
            self.gate.pause(err.retry_after_s)  # Retry-After applies to every call to the host
            return err.retry_after_s
        delay = backoff_delay(retry, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)
        return max(delay, err.retry_after_s) if err.retry_after_s is not None else delay
