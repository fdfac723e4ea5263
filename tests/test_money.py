"""Money right on every host (DESIGN §3, §9): declared prices, learned prices, reported charges, budgets
that bind — against the in-process emulator, which reports what it really charged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_csv

from wan_pipeline import errors as e
from wan_pipeline.emulator.app import in_process
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.execution.engine import EngineSettings, Outcome
from wan_pipeline.execution.session import open_ledger, open_session
from wan_pipeline.outputs.lineage import lineage_table
from wan_pipeline.planning.plan import Plan, build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import Estimate

FAST = EngineSettings(max_concurrency=4, submits_per_second=1000.0, poll_initial_s=0.01, poll_max_s=0.05,
                      backoff_base_s=0.01, backoff_max_s=0.05, request_timeout_s=10.0)
EVOLINK_IMAGE_CREDITS = 6.0  # the emulated EvoLink account's tariff for wan-2.7-image (undocumented by EvoLink)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WAN_PIPELINE_STATE_DIR", str(tmp_path / "state"))
    for provider in ("EVOLINK", "REAPI", "DASHSCOPE"):
        monkeypatch.delenv(f"{provider}_API_KEY", raising=False)
        monkeypatch.delenv(f"{provider}_BASE_URL", raising=False)
    return tmp_path


def plan_for(root: Path, provider: str, model: str, prompts: int, **fields: Any) -> Plan:
    write_csv(root / "prompts.csv", [{"prompt_id": f"p{i:02d}", "prompt": f"A lighthouse, take {i}"}
                                     for i in range(prompts)])
    spec = {"name": "money", "prompts": "prompts.csv", "provider": provider, "model": model, "endpoint": "emulator",
            "seed": 3, "storage": "./out", **fields}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return build_plan(load_spec(root / "spec.yaml"))


async def run(plan: Plan, transport: Any, engines: int = 1) -> list[Outcome]:
    """`engines` sessions at once on the same ledger file (separate connections, as separate processes)."""

    async def one(tasks: list[Any]) -> list[Outcome]:
        async with open_session(plan.spec, FAST, transport=transport) as session:
            return await session.engine.run(tasks)

    halves = [list(plan.tasks)[i::engines] for i in range(engines)]
    return [o for part in await asyncio.gather(*(one(t) for t in halves)) for o in part]


def host(protocol: str) -> tuple[EmulatorState, Any]:
    return in_process(EmulatorConfig(queue_s=0, process_s=0.02), protocol)


@pytest.mark.parametrize("engines", [1, 2])
def test_evolink_budget_in_credits_binds_by_learning_the_price(env: Path, engines: int) -> None:
    plan = plan_for(env, "evolink", "wan-2.7-image", 10, budget={"max_credits": 40})
    assert {t.estimate for t in plan.tasks} == {Estimate(None, None, None)}  # nothing documented or declared
    state, transport = host("evolink")
    outcomes = asyncio.run(run(plan, transport, engines))
    stored = [o for o in outcomes if o.status == "stored"]
    refused = [o for o in outcomes if o.status == "failed"]
    charged = state.report()["credits_charged"]
    # 6 credits a task, learned from the first create answer: 6 tasks fit in 40, a 7th would not.
    assert (len(stored), charged) == (6, 6 * EVOLINK_IMAGE_CREDITS)
    assert all(isinstance(o.error, e.BudgetExceeded) for o in refused)
    with open_ledger(plan.spec) as ledger:
        rows = lineage_table(ledger, plan.spec.name).to_pylist()
    done = [r for r in rows if r["status"] == "succeeded"]
    assert {(r["credits_reserved"], r["credits_final"], r["cost_source"]) for r in done} == {
        (6.0, 6.0, "reported")}  # reserved on create, final on the images produced


def test_evolink_final_charge_is_per_image_produced(env: Path) -> None:
    plan = plan_for(env, "evolink", "wan-2.7-image", 1, params={"n": 3})
    state, transport = host("evolink")
    assert [o.status for o in asyncio.run(run(plan, transport))] == ["stored"]
    with open_ledger(plan.spec) as ledger:
        (attempt,) = ledger.all_attempts(plan.spec.name)
    assert (attempt.credits_reserved, attempt.credits_final) == (18.0, 18.0)
    assert state.report()["credits_net"] == 18.0


def test_reapi_declared_price_prices_the_estimate_the_budget_and_lineage(env: Path) -> None:
    plan = plan_for(env, "reapi", "wan2.7-image", 5, params={"resolution": "1K"},
                    pricing={"usd_per_image": 0.02}, budget={"max_usd": 0.07})
    assert {t.estimate for t in plan.tasks} == {Estimate(20.0, 0.02, "declared")}  # reAPI: 1 credit = $0.001
    assert plan.estimate() == Estimate(100.0, 0.1, "declared")
    state, transport = host("reapi")
    outcomes = asyncio.run(run(plan, transport))
    assert sorted(o.status for o in outcomes) == ["failed", "failed", "stored", "stored", "stored"]
    assert state.report()["tasks_created"] == 3  # $0.06 of $0.07: a fourth would pass the cap
    with open_ledger(plan.spec) as ledger:
        rows = [r for r in lineage_table(ledger, plan.spec.name).to_pylist() if r["status"] == "succeeded"]
    assert {(r["cost_usd"], r["cost_source"]) for r in rows} == {(0.02, "declared")}


def test_a_budget_nothing_can_bind_is_refused_naming_the_pricing_key(env: Path) -> None:
    with pytest.raises(e.InvalidInput) as info:
        plan_for(env, "reapi", "wan2.7-image", 2, budget={"max_usd": 1})
    (problem,) = info.value.problems
    assert problem.column == "budget.max_usd" and "`pricing.usd_per_image:`" in problem.reason
    lines = (env / "spec.yaml").read_text(encoding="utf-8").splitlines()
    assert lines[(problem.row or 0) - 1].strip().startswith("max_usd:")  # the line to edit
    with pytest.raises(e.InvalidInput) as info:
        plan_for(env, "reapi", "wan2.7-video", 2, budget={"max_credits": 100})
    assert "`pricing.credits_per_second:`" in info.value.problems[0].reason


def test_declared_video_prices_by_resolution_and_usd_per_credit(env: Path) -> None:
    plan = plan_for(env, "reapi", "wan2.7-video", 1, params={"resolution": "1080p", "duration": 4},
                    pricing={"credits_per_second": {"720P": 50, "1080p": 80}, "usd_per_credit": 0.002})
    assert {t.estimate for t in plan.tasks} == {Estimate(320.0, 0.64, "declared")}


def test_pricing_is_checked_like_the_rest_of_the_spec(env: Path) -> None:
    with pytest.raises(e.InvalidInput) as info:
        plan_for(env, "reapi", "wan2.7-video", 1, pricing={"usd_per_second": {"4K": 1}, "usd_per_image": -1,
                                                           "per_image": 2})
    assert sorted(p.column or "" for p in info.value.problems) == [
        "pricing.per_image", "pricing.usd_per_image", "pricing.usd_per_second"]


def test_dashscope_group_mode_is_charged_for_the_images_produced_at_the_model_price(env: Path) -> None:
    plan = plan_for(env, "dashscope", "wan2.7-image-pro", 1, params={"sequential": True, "resolution": "1K"})
    assert plan.tasks[0].estimate == Estimate(None, 0.9, "documented")  # up to 12 images × $0.075
    state, transport = host("dashscope")
    (outcome,) = asyncio.run(run(plan, transport))
    assert outcome.status == "stored"
    produced = len(outcome.outputs)
    with open_ledger(plan.spec) as ledger:
        (attempt,) = ledger.all_attempts(plan.spec.name)
    assert (attempt.cost_usd, attempt.cost_source) == (pytest.approx(0.075 * produced), "reported")
    assert state.report()["credits_net"] == pytest.approx(0.075 * produced)
