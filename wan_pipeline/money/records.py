"""Ledger records shaped from a planned task and from what the host said: one place decides each column."""

from __future__ import annotations

import json

from wan_pipeline import errors as e
from wan_pipeline.money.ledger import FAILED, SUBMITTING, SUCCEEDED, Attempt, utcnow
from wan_pipeline.planning.plan import PlannedTask, canonical_json
from wan_pipeline.planning.pricing import REPORTED, per_image_settlement, usage_cost, usd_per_credit
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
        cost_source=task.estimate.source,
        run_id=run_id,
        **task.provenance_columns(),
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


def terminal_values(task: PlannedTask, snap: TaskSnapshot, reserved: float | None = None) -> dict[str, object]:
    """The columns of an attempt the host reported finished (succeeded or failed), with its charges.

    `reserved` is what the host pre-charged on create (already recorded). A charge the host reports is
    `reported`: its own figure, or the units it billed (`snap.usage`) priced at the submitted model's
    price, declared or documented, since its answer may not name the model (DashScope)."""
    values: dict[str, object] = {"completed_at": utcnow()}
    values.update(charge_values(task, snap, reserved))
    if snap.provider_seed is not None:
        values["provider_seed"] = snap.provider_seed
    if snap.status == TaskStatus.SUCCEEDED:
        values.update(state=SUCCEEDED, output_urls=json.dumps(list(snap.output_urls)))
    else:
        err = snap.error or e.GenerationFailed(code="generation_failed", message="task failed")
        values.update(failure_values(err))
    return values


def charge_values(task: PlannedTask, snap: TaskSnapshot, reserved: float | None = None) -> dict[str, object]:
    """The charge columns from what the host reported; nothing when it reported nothing (the estimate stands)."""
    credits_final, usd = snap.credits_final, snap.cost_usd
    reserved = snap.credits_reserved if snap.credits_reserved is not None else reserved
    if credits_final is None:
        # A reservation on the requested images, settled on the images produced (EvoLink).
        credits_final = per_image_settlement(reserved, task.params.n or 1, snap.usage)
    if snap.usage is not None and (usd is None or credits_final is None):
        priced = usage_cost(task.pricing, task.provider, task.model, snap.usage)
        usd = usd if usd is not None else priced.usd
        credits_final = credits_final if credits_final is not None else priced.credits
    rate = task.pricing.usd_per_credit or usd_per_credit(task.provider, task.model)
    if usd is None and credits_final is not None and rate is not None:
        usd = round(credits_final * rate, 6)
    values: dict[str, object] = {}
    if snap.credits_reserved is not None:
        values["credits_reserved"] = snap.credits_reserved
    if credits_final is not None:
        values["credits_final"] = credits_final
    if usd is not None:
        values["cost_usd"] = usd
    if credits_final is not None or usd is not None:
        values["cost_source"] = REPORTED
    return values
