"""Fault injection for the emulator: forced (`next`) or random (`rate`, seeded) per fault kind."""

from __future__ import annotations

import random
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["rate_limit", "server_error", "drop", "fail_task", "truncate", "reject_content"]


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    next: int = Field(default=0, ge=0)  # the next N matching requests get this fault
    rate: float = Field(default=0.0, ge=0.0, le=1.0)  # afterwards, each request with this probability


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limit: FaultRule = FaultRule()
    server_error: FaultRule = FaultRule()
    drop: FaultRule = FaultRule()  # submission processed, response lost (connection dropped)
    fail_task: FaultRule = FaultRule()  # task ends `failed` with generation_failed
    truncate: FaultRule = FaultRule()  # result download cut short
    reject_content: FaultRule = FaultRule()  # task ends `failed` with a content-policy code
    retry_after_s: float = Field(default=1.0, ge=0)
    seed: int = 0


class Faults:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self.injected: dict[str, int] = {}

    def hit(self, kind: FaultKind) -> bool:
        with self._lock:
            rule: FaultRule = getattr(self.config, kind)
            fire = False
            if rule.next > 0:
                rule.next -= 1
                fire = True
            elif rule.rate > 0 and self._rng.random() < rule.rate:
                fire = True
            if fire:
                self.injected[kind] = self.injected.get(kind, 0) + 1
            return fire
