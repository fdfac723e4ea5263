"""The emulator's accounts, tasks and bookkeeping, optionally persisted so it outlives a process.

Persistence is what lets the in-process emulator behave like a remote service across runs of the CLI:
a task created before a crash is still there, still billed once, when the next run polls it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wan_pipeline.emulator.faults import FaultConfig, Faults


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue_s: float = Field(default=0.3, ge=0)  # time a task stays `queued`
    process_s: float = Field(default=0.7, ge=0)  # then `processing`
    initial_credits: float = Field(default=100_000, ge=0)
    #: accepted bearer tokens; empty = any non-empty token (the demo has no key to give)
    api_keys: list[str] = Field(default_factory=list)
    faults: FaultConfig = FaultConfig()
    state_path: str | None = None
    #: render media no larger than this on their longer side (benchmarks: keep the server's CPU out of the
    #: measurement); None renders the requested size. Clients then see a size mismatch (a lineage warning).
    media_max_side: int | None = Field(default=None, ge=16)
    #: a create is acted on at once but answered this much later (DashScope): the window in which a client
    #: that dies has bought a task it never hears of (the kill-storm test aims its kills there)
    answer_delay_s: float = Field(default=0.0, ge=0)


@dataclass
class EmuTask:
    id: str
    protocol: str
    model: str
    created_at: float
    queue_s: float
    process_s: float
    outcome: str  # succeeded | failed
    error_code: str | None
    credits: float
    outputs: list[dict[str, Any]]  # each: {"kind", "width", "height", "format", "key", "duration", "fps"}
    idempotency_key: str | None
    body_sha256: str
    client_ref: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    refunded: bool = False

    def status_at(self, now: float) -> str:
        age = now - self.created_at
        if age < self.queue_s:
            return "queued"
        if age < self.queue_s + self.process_s:
            return "processing"
        return self.outcome


def body_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class EmulatorState:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = Faults(self.config.faults)
        self.lock = threading.RLock()
        self.tasks: dict[str, EmuTask] = {}
        self.idempotency: dict[str, tuple[str, str]] = {}  # "protocol|key" -> (body sha, task id)
        self.files: dict[str, dict[str, Any]] = {}
        self.balance = self.config.initial_credits
        self.charged = 0.0
        self.refunded = 0.0
        self.submit_requests = 0  # every create request that reached a handler
        self.polls = 0  # every status request that reached a handler (polls per task, benchmarks/)
        self.requests_by_key: dict[str, int] = {}
        #: SHA-256 of every create request's raw body -> how many times it arrived (replay checks compare these)
        self.create_bodies: dict[str, int] = {}
        self.counter = 0
        self._path = Path(self.config.state_path) if self.config.state_path else None
        if self._path and self._path.is_file():
            self._load(self._path)

    # -- persistence -------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.tasks = {k: EmuTask(**v) for k, v in data["tasks"].items()}
        self.idempotency = {k: (v[0], v[1]) for k, v in data["idempotency"].items()}
        self.files = data.get("files", {})
        self.balance = data["balance"]
        self.charged = data["charged"]
        self.refunded = data["refunded"]
        self.submit_requests = data["submit_requests"]
        self.requests_by_key = data["requests_by_key"]
        self.create_bodies = data.get("create_bodies", {})  # absent in state files of older versions
        self.counter = data["counter"]

    def save(self) -> None:
        if self._path is None:
            return
        data = {
            "tasks": {k: asdict(v) for k, v in self.tasks.items()},
            "idempotency": self.idempotency,
            "files": self.files,
            "balance": self.balance,
            "charged": self.charged,
            "refunded": self.refunded,
            "submit_requests": self.submit_requests,
            "requests_by_key": self.requests_by_key,
            "create_bodies": self.create_bodies,
            "counter": self.counter,
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".emu-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, self._path)

    # -- ids and auth ------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:06d}{hashlib.sha256(f'{time.time()}{self.counter}'.encode()).hexdigest()[:8]}"

    def key_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return not self.config.api_keys or token in self.config.api_keys

    # -- tasks -------------------------------------------------------------------------------
    def lookup_idempotent(self, protocol: str, key: str | None, body_sha: str) -> EmuTask | str | None:
        """The task for a replayed key, None for a new key, or 'conflict' for a key reused with another body."""
        if not key:
            return None
        found = self.idempotency.get(f"{protocol}|{key}")
        if found is None:
            return None
        sha, task_id = found
        return self.tasks[task_id] if sha == body_sha else "conflict"

    def create_task(self, task: EmuTask) -> EmuTask:
        with self.lock:
            self.tasks[task.id] = task
            if task.idempotency_key:
                self.idempotency[f"{task.protocol}|{task.idempotency_key}"] = (task.body_sha256, task.id)
            self.balance -= task.credits
            self.charged += task.credits
            self.save()
            return task

    def note_submit(self, key: str | None) -> None:
        with self.lock:
            self.submit_requests += 1
            if key:
                self.requests_by_key[key] = self.requests_by_key.get(key, 0) + 1

    def note_poll(self) -> None:
        with self.lock:
            self.polls += 1

    def note_create_body(self, raw: bytes) -> None:
        """The exact bytes a create request carried (not re-serialised: field order and spacing count)."""
        digest = hashlib.sha256(raw).hexdigest()
        with self.lock:
            self.create_bodies[digest] = self.create_bodies.get(digest, 0) + 1

    def settle(self, task: EmuTask, now: float | None = None) -> str:
        """The task's status now; a failed task is refunded once (Rivya's doc example: final 0)."""
        status = task.status_at(time.time() if now is None else now)
        if status == "failed" and not task.refunded:
            with self.lock:
                task.refunded = True
                self.balance += task.credits
                self.refunded += task.credits
                self.save()
        return status

    def decide_outcome(self) -> tuple[str, str | None]:
        if self.faults.hit("reject_content"):
            return "failed", "content_policy_violation"
        if self.faults.hit("fail_task"):
            return "failed", "generation_failed"
        return "succeeded", None

    # -- report ------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        with self.lock:
            by_ref: dict[str, int] = {}
            by_body: dict[str, int] = {}
            for t in self.tasks.values():
                if t.client_ref:
                    by_ref[t.client_ref] = by_ref.get(t.client_ref, 0) + 1
                by_body[t.body_sha256] = by_body.get(t.body_sha256, 0) + 1
            now = time.time()
            return {
                "tasks_created": len(self.tasks),
                "submit_requests": self.submit_requests,
                "polls": self.polls,
                "requests_by_idempotency_key": dict(self.requests_by_key),
                "create_bodies_by_sha256": dict(self.create_bodies),
                "tasks_by_idempotency_key": _count(t.idempotency_key for t in self.tasks.values() if t.idempotency_key),
                "tasks_by_client_ref": by_ref,
                "tasks_by_body": by_body,
                "credits_charged": self.charged,
                "credits_refunded": self.refunded,
                "credits_net": self.charged - self.refunded,
                "balance": self.balance,
                "faults_injected": dict(self.faults.injected),
                "tasks": [
                    {
                        "id": t.id,
                        "protocol": t.protocol,
                        "model": t.model,
                        "status": t.status_at(now),
                        "credits": t.credits,
                        "idempotency_key": t.idempotency_key,
                        "client_ref": t.client_ref,
                    }
                    for t in self.tasks.values()
                ],
            }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out
