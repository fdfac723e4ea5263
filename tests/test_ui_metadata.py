"""USD per partition in the Dagster metadata (assets/metadata.py): the USD the ledger recorded for each attempt
(money.records prices credits at a declared, documented or learned rate), and 'unknown' when one has none."""

from __future__ import annotations

from typing import Any

import pytest

from wan_pipeline.assets.metadata import partition_usd
from wan_pipeline.execution.outcome import Outcome
from wan_pipeline.money.ledger import Attempt
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.base import Mode
from wan_pipeline.providers.params import NeutralParams


def _outcome(provider: str, model: str, **attempt: Any) -> Outcome:
    task = PlannedTask(dataset="d", provider=provider, model=model, prompt_id="p", variant=0, row=1, prompt="x",
                       params=NeutralParams(seed=1), seed_source="dataset", mode=Mode.TEXT_TO_IMAGE, fingerprint="f")
    fields: dict[str, Any] = dict(identity="i", attempt=1, dataset="d", prompt_id="p", variant=0, fingerprint="f",
                                  provider=provider, model=model, mode="text_to_image", prompt="x", params_json="{}",
                                  seed=1, seed_source="dataset", extra_json="{}", idempotency_key="k",
                                  request_json="{}", state="stored")
    fields.update(attempt)
    return Outcome(task=task, status="stored", attempt=Attempt(**fields))


def test_recorded_usd_is_summed() -> None:
    group = [_outcome("runware", "alibaba:wan@2.7-image", cost_usd=0.03),
             _outcome("runware", "alibaba:wan@2.7-image", cost_usd=0.03)]
    assert partition_usd(group) == pytest.approx(0.06)


def test_unknown_when_the_host_publishes_no_price() -> None:
    # Rivya documents no credit-to-USD rate: USD is unknown, never a made-up zero.
    assert partition_usd([_outcome("rivya", "wan-2-7-image", credits_final=5.0)]) is None
    mixed = [_outcome("reapi", "wan2.7-image", cost_usd=0.01), _outcome("rivya", "wan-2-7-image", credits_final=5.0)]
    assert partition_usd([_outcome("reapi", "wan2.7-image", credits_final=30.0, cost_usd=0.03)]) == pytest.approx(0.03)
    assert partition_usd(mixed) is None
