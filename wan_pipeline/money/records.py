"""Ledger records shaped from a planned task and from what the host said: one place decides each column."""

from __future__ import annotations

import json

from wan_pipeline import errors as e
from wan_pipeline.money.ledger import FAILED, SUBMITTING, SUCCEEDED, Attempt, utcnow
from wan_pipeline.planning.plan import PlannedTask, canonical_json
from wan_pipeline.providers.base import HttpCall, TaskSnapshot, TaskStatus


def new_attempt(task: PlannedTask, attempt_no: int, call: HttpCall, task_id: str | None, run_id: str | None) -> Attempt:
    """The record written before a create is sent: the whole call, so a resume re-sends the same bytes."""
    return Attempt(
        identity=task.identity,
        attempt=attempt_no,
        dataset=task.dataset,
        prompt_id=task.prompt_id,
        variant=task.variant,
        fingerprint=task.fingerprint,
        provider=task.provider,
        model=task.model,
        mode=task.mode.value,
        prompt=task.prompt,
        params_json=canonical_json(task.params.effective()),
        seed=task.seed,
        seed_source=task.seed_source,
        extra_json=canonical_json(task.extra),
        idempotency_key=task.idempotency_key(attempt_no),
        request_json=call.body_json(),
        call_json=call.to_record(),
        state=SUBMITTING,
        task_id=task_id,
        credits_estimate=task.estimate.credits,
        cost_usd=task.estimate.usd,
        cost_source="catalog" if task.estimate.usd is not None else None,
        run_id=run_id,
    )


def failure_values(err: e.ProviderError) -> dict[str, object]:
    """The columns of a failed attempt."""
    return {
        "state": FAILED,
        "error_code": err.code,
        "error_class": type(err).__name__,
        "error_message": err.message,
        "completed_at": utcnow(),
    }


def terminal_values(task: PlannedTask, snap: TaskSnapshot) -> dict[str, object]:
    """The columns of an attempt the host reported finished (succeeded or failed), with its charges."""
    values: dict[str, object] = {"completed_at": utcnow()}
    if snap.credits_reserved is not None:
        values["credits_reserved"] = snap.credits_reserved
    if snap.credits_final is not None:
        values["credits_final"] = snap.credits_final
    if snap.cost_usd is not None:
        values["cost_usd"] = snap.cost_usd
        values["cost_source"] = "provider"
    elif snap.credits_final is not None:
        values["cost_source"] = "provider" if task.estimate.usd is None else "catalog"
    if snap.provider_seed is not None:
        values["provider_seed"] = snap.provider_seed
    if snap.status == TaskStatus.SUCCEEDED:
        values.update(state=SUCCEEDED, output_urls=json.dumps(list(snap.output_urls)))
    else:
        err = snap.error or e.GenerationFailed(code="generation_failed", message="task failed")
        values.update(failure_values(err))
    return values
