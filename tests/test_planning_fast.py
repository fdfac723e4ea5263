"""Planning a large table shares work between rows (planning.row_params, planning.fingerprint): the plan and the
problems must be exactly what planning each row on its own gives — the reference path, with nothing to share.

Also the bookkeeping `generate` does before its first submission: which partitions still need outputs, and the
partitions' order without reading them back from the instance.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from conftest import SpecWriter, png_bytes, write_dataset

from wan_pipeline.assets.prompt_table import partition_order, register_partitions
from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, Attempt, Ledger
from wan_pipeline.outputs.status import output_states, unstored_by_prompt
from wan_pipeline.planning.fingerprint import FingerprintTemplate, fingerprint
from wan_pipeline.planning.plan import Plan, PlannedTask, build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.params import NeutralParams
from wan_pipeline.providers.registry import get_provider

SPEC = {"provider": "dashscope", "model": "wan2.7-image", "variants": 3, "seed": 5,
        "params": {"aspect_ratio": "16:9", "resolution": "2K"}}  # fmt: skip
PROMPTS = ["A fox, at dawn", 'Say "cheese"', "back\\slash é 😀", "two\nlines", "line\u2028separator", "A fox, at dawn"]


def edge_rows() -> list[dict[str, str]]:
    """Repeated parameter combinations, spellings that coerce alike, per-row seeds, references, extras."""
    rows = []
    for i in range(48):
        sized = i % 11 == 3  # explicit pixels: the spec's aspect ratio and resolution no longer apply
        rows.append({
            "prompt_id": f"r{i:02d}", "prompt": PROMPTS[i % len(PROMPTS)],
            "seed": ["", "", "007", "7.0", " 12 ", str(i * 7919), "2147483647"][i % 7],
            "watermark": ["", "1", "true", "YES", "no"][i % 5],
            "aspect_ratio": "" if sized else ["", "1:1", "4:3"][i % 3],
            "resolution": "" if sized else ["", "2k", "1K"][i % 3],
            "width": "1024" if sized else "", "height": "768" if sized else "",
            "negative_prompt": ["", 'say "hi", ok', "blurry"][i % 3],
            "reference_images": ["", "a.png", '["a.png", "b.png"]', "", "b.png"][i % 5],
            "note": f"n{i % 4}",
        })  # fmt: skip
    return rows


def projection(task: PlannedTask) -> tuple[Any, ...]:
    """Everything a planned output is, but its line in the table."""
    refs = [(r.kind, r.source, r.sha256, r.mime_type, r.size_bytes) for r in task.references]
    return (task.identity, task.prompt, task.seed, task.seed_source, task.mode, task.params.effective(), refs,
            task.estimate, task.extra, task.pricing, task.provenance.spec_sha256 is not None)  # fmt: skip


def reference_plan_of_each_row(tmp_path: Path, rows: list[dict[str, str]]) -> list[PlannedTask]:
    """Every row planned alone, from a table of that one row: nothing shared with any other row."""
    tasks: list[PlannedTask] = []
    for i, row in enumerate(rows):
        spec = write_dataset(tmp_path, [row], table=f"alone{i}.csv", spec_file=f"alone{i}.yaml", **SPEC)
        tasks.extend(build_plan(load_spec(spec)).tasks)
    return tasks


@pytest.fixture
def refs_beside(tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(png_bytes((1, 2, 3)))
    (tmp_path / "b.png").write_bytes(png_bytes((9, 9, 9)))
    return tmp_path


def test_the_shared_path_plans_exactly_what_each_row_alone_plans(refs_beside: Path) -> None:
    rows = edge_rows()
    plan = build_plan(load_spec(write_dataset(refs_beside, rows, **SPEC)))
    alone = reference_plan_of_each_row(refs_beside, rows)
    assert len(plan.tasks) == 3 * len(rows)
    assert [projection(t) for t in plan.tasks] == [projection(t) for t in alone]
    for task in plan.tasks:  # and the fingerprint is its definition's, byte for byte
        assert task.fingerprint == fingerprint(task.provider, task.model, task.prompt, task.params, task.references)
    # Rows were grouped: equal parameter cells (but for the seed) gave one object.
    assert len({id(r.params) for r in plan.rows}) < len(rows)


def test_cells_that_compare_equal_but_differ_in_type_are_not_shared(refs_beside: Path) -> None:
    frame = pd.DataFrame({
        "prompt_id": [f"q{i}" for i in range(8)],
        "prompt": ["A fox"] * 8,
        "seed": pd.array([None, 1, 2, 1, None, 3, 1, None], dtype="Int64"),
        "watermark": [True, False, None, True, True, False, None, True],
        "n": [1.0, 1.0, None, 2.0, 1.0, None, 2.0, 1.0],
        "reference_images": [None, ["a.png"], ["a.png", "b.png"], None, ["a.png"], None, None, ["b.png"]],
        "score": [0.5, -0.0, 0.0, 1, 2, 3, 4, 5],
    })  # fmt: skip
    frame.to_parquet(refs_beside / "typed.parquet")
    plan = build_plan(load_spec(write_dataset(refs_beside, None, table="typed.parquet", **SPEC)))
    alone = []
    for i in range(len(frame)):
        frame.iloc[[i]].to_parquet(refs_beside / f"alone{i}.parquet")
        spec = write_dataset(refs_beside, None, table=f"alone{i}.parquet", spec_file=f"alone{i}.yaml", **SPEC)
        alone.extend(build_plan(load_spec(spec)).tasks)
    assert [projection(t) for t in plan.tasks] == [projection(t) for t in alone]
    # -0.0 and 0.0 compare equal but print differently: a problem quotes the cell as the user wrote it.
    bad = pd.DataFrame({"prompt_id": ["z1", "z2", "z3"], "prompt": ["a", "b", "c"], "width": [-0.0, 0.0, -0.0],
                        "height": [1.0, 1.0, 1.0]})  # fmt: skip
    bad.to_parquet(refs_beside / "bad.parquet")
    with pytest.raises(InvalidInput) as exc:
        build_plan(load_spec(write_dataset(refs_beside, None, table="bad.parquet", **SPEC)))
    widths = [(p.row, p.reason.split(" is ")[0]) for p in exc.value.problems if p.column == "width"]
    assert widths == [(1, "'-0.0'"), (2, "'0.0'"), (3, "'-0.0'")]


def test_every_line_with_a_problem_is_named_even_when_its_cells_repeat(tmp_path: Path) -> None:
    ok = {"prompt": "fine", "seed": "", "width": "", "height": "", "aspect_ratio": "", "reference_images": ""}
    rows = [
        {"prompt_id": "a", **ok},
        {"prompt_id": "b", **ok, "seed": "abc"},  # the shared cells are fine, the row's own seed is not
        {"prompt_id": "c", **ok, "seed": "-4"},
        {"prompt_id": "d", **ok, "width": "100", "seed": "5"},  # the shared cells are bad, the seed is fine
        {"prompt_id": "e", **ok, "prompt": "two\nlines", "width": "100"},  # starts on line 6, spans two
        {"prompt_id": "f", **ok, "aspect_ratio": "17:x", "seed": "abc"},
        {"prompt_id": "g", **ok, "reference_images": "missing.png"},
        {"prompt_id": "h", **ok, "seed": "abc"},
        {"prompt_id": "i", **ok, "reference_images": "missing.png", "seed": "9"},
    ]
    spec_path = write_dataset(tmp_path, rows, **SPEC)
    with pytest.raises(InvalidInput) as exc:
        build_plan(load_spec(spec_path))
    problems = exc.value.problems
    table = str(tmp_path / "demo.csv")
    assert {p.file for p in problems} == {table}
    lines = {"a": 2, "b": 3, "c": 4, "d": 5, "e": 6, "f": 8, "g": 9, "h": 10, "i": 11}
    expected: list[Problem] = []
    for row in rows:  # the reference: each row's problems when it is checked alone, moved to its line
        alone = write_dataset(tmp_path, [row], table=f"alone_{row['prompt_id']}.csv", spec_file="alone.yaml", **SPEC)
        try:
            build_plan(load_spec(alone))
        except InvalidInput as one:
            expected.extend(replace(p, file=table, row=lines[row["prompt_id"]]) for p in one.problems)
    assert problems == expected
    assert {p.row for p in problems} == {3, 4, 5, 6, 8, 9, 10, 11}
    by_line = {(p.row, p.column) for p in problems}
    assert {(3, "seed"), (10, "seed"), (4, "seed"), (9, "reference_images"), (11, "reference_images")} <= by_line
    assert f"{table}, line 10, column 'seed': 'abc' is not a whole number" in [str(p) for p in problems]


def test_the_fingerprint_template_fills_its_holes_byte_for_byte() -> None:
    refs = ()
    for params in (NeutralParams(aspect_ratio="1:1"), NeutralParams(seed=3, negative_prompt='a "quote" \\ é')):
        template = FingerprintTemplate("dashscope", "wan2.7-image", params, refs)
        for prompt in [*PROMPTS, "", "\x00wan-pipeline:prompt\x00"]:
            for seed in (0, 7, 2_147_483_647):
                seeded = params.model_copy(update={"seed": seed})
                assert template(prompt, seed) == fingerprint("dashscope", "wan2.7-image", prompt, seeded, refs)


def test_a_parameter_that_looks_like_a_hole_falls_back_to_the_full_serialisation() -> None:
    params = NeutralParams(negative_prompt="\x00wan-pipeline:seed\x00")
    template = FingerprintTemplate("rivya", "wan-2-7-image", params, ())
    seeded = params.model_copy(update={"seed": 11})
    assert template("a fox", 11) == fingerprint("rivya", "wan-2-7-image", "a fox", seeded, ())


# -- what generate works out before its first submission ---------------------------------------------------


def _attempt(task: PlannedTask, n: int, state: str) -> Attempt:
    return Attempt(identity=task.identity, attempt=n, dataset=task.dataset, prompt_id=task.prompt_id,
                   variant=task.variant, fingerprint=task.fingerprint, provider=task.provider, model=task.model,
                   mode=task.mode.value, prompt=task.prompt, params_json="{}", seed=task.seed,
                   seed_source=task.seed_source, extra_json="{}", idempotency_key=task.idempotency_key(n),
                   request_json="{}", state=state, call_json="{}", task_id=f"t-{task.identity}-{n}")  # fmt: skip


def test_unstored_outputs_per_prompt_agree_with_the_output_states(write_spec: SpecWriter, tmp_path: Path) -> None:
    rows = [{"prompt_id": p, "prompt": f"A {p}"} for p in ("fox", "owl", "elk", "yak")]
    plan: Plan = build_plan(load_spec(write_spec(rows, variants=2)))
    t = {(x.prompt_id, x.variant): x for x in plan.tasks}
    attempts = [
        _attempt(t["fox", 0], 1, STORED),
        _attempt(t["fox", 1], 1, FAILED), _attempt(t["fox", 1], 2, STORED),  # retried, then stored
        _attempt(t["owl", 0], 1, SUBMITTED),
        _attempt(t["elk", 0], 1, STORED), _attempt(t["elk", 1], 1, FAILED),
        replace(_attempt(t["yak", 0], 1, STORED), identity="demo/yak/0/an-edited-row"),  # not this plan's
    ]  # fmt: skip
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for a in attempts:
            ledger.begin_attempt(replace(a, state="submitting"))
            ledger.update(a.identity, a.attempt, state=a.state)
        states = output_states(plan, ledger)
        recorded = ledger.all_attempts(plan.spec.name)
    expected: dict[str, int] = {}
    for s in states:
        if s.state != "stored":
            expected[s.task.prompt_id] = expected.get(s.task.prompt_id, 0) + 1
    assert unstored_by_prompt(plan, recorded) == expected == {"owl": 2, "elk": 1, "yak": 2}
    assert unstored_by_prompt(plan, list(reversed(recorded))) == expected  # the last attempt wins, in any order


def test_partition_order_is_the_instances_without_reading_it_again(write_spec: SpecWriter) -> None:
    spec = load_spec(write_spec([{"prompt_id": "a", "prompt": "A"}]))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(spec.partitions_name, ["old", "b"])
        assert register_partitions(instance, spec, ["a", "b", "c"]) == ["a", "c"]
        stored = list(instance.get_dynamic_partitions(spec.partitions_name))
        assert stored == ["old", "b", "a", "c"]
        assert list(partition_order(instance, spec)) == stored
        instance.add_dynamic_partitions(spec.partitions_name, ["later"])
        # A registration is used once: the next caller reads what the instance holds now.
        assert list(partition_order(instance, spec)) == [*stored, "later"]


@pytest.mark.parametrize(("provider", "model", "unsupported"), [
    ("dashscope", "wan2.7-image", "duration"), ("reapi", "wan2.7-image", "duration"),
    ("rivya", "wan-2-7-image", "negative_prompt"),
])  # fmt: skip
def test_the_providers_check_is_asked_once_per_combination_and_answers_as_for_each_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, model: str, unsupported: str
) -> None:
    """A prompt that fits (`Provider.prompt_fits`) leaves the provider's answer to the parameters alone, so it
    is asked once per combination; over-long prompts are asked row by row (the message names their length).
    The problems are exactly those of each row checked alone."""
    ok = {"prompt": "fine", "seed": "", unsupported: ""}
    rows = [
        {"prompt_id": "a", **ok},
        {"prompt_id": "b", **ok, "seed": "3"},
        {"prompt_id": "c", **ok, "prompt": "x" * 5001},
        {"prompt_id": "d", **ok, "prompt": "y" * 5007, "seed": "4"},
        {"prompt_id": "e", **ok, unsupported: "blurry" if unsupported == "negative_prompt" else "5"},
        {"prompt_id": "f", **ok, unsupported: "blurry" if unsupported == "negative_prompt" else "5", "seed": "5"},
        {"prompt_id": "g", **ok, "prompt": "another fine one"},
    ]
    spec = {"provider": provider, "model": model, "seed": 1, "params": {}}
    spec_path = write_dataset(tmp_path, rows, **spec)
    cls = type(get_provider(provider))
    asked: list[str] = []
    check = cls.check

    def counting(self: Any, model: str, prompt: str, params: NeutralParams) -> Any:
        asked.append(prompt[:1])
        return check(self, model, prompt, params)

    monkeypatch.setattr(cls, "check", counting)
    with pytest.raises(InvalidInput) as exc:
        build_plan(load_spec(spec_path))
    # a and g share everything but the prompt; b, e, f each differ; c and d are too long: asked alone
    assert sorted(asked) == sorted(["f", "f", "f", "f", "x", "y"])
    table = str(tmp_path / "demo.csv")
    expected: list[Problem] = []
    for line, row in enumerate(rows, start=2):
        alone = write_dataset(tmp_path, [row], table=f"alone_{row['prompt_id']}.csv", spec_file="alone.yaml", **spec)
        try:
            build_plan(load_spec(alone))
        except InvalidInput as one:
            expected.extend(replace(p, file=table, row=line) for p in one.problems)
    assert exc.value.problems == expected
    assert {p.row for p in expected} == {4, 5, 6, 7}  # the long prompts and the unsupported parameter
    assert any("5007 characters" in str(p) for p in expected)
