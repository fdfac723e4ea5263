"""Spec and prompt-table validation (DESIGN §3-§5): every problem found in one pass, named precisely."""

from __future__ import annotations

import hashlib
import pathlib
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SpecWriter, png_bytes

from wan_pipeline.errors import ConfigError, InvalidInput, Problem
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.rivya import PROVIDER as RIVYA


def problems_of(spec_path: Path) -> list[Problem]:
    with pytest.raises(InvalidInput) as info:
        build_plan(load_spec(spec_path))
    return info.value.problems


def where(problems: list[Problem]) -> list[tuple[int | None, str | None]]:
    return [(p.row, p.column) for p in problems]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# -- a valid table --------------------------------------------------------------------------------


def test_valid_table_plans_every_row_with_spec_defaults_and_row_overrides(write_spec: SpecWriter) -> None:
    spec = write_spec([
        {"prompt_id": "cat", "prompt": "a cat", "aspect_ratio": ""},
        {"prompt_id": "dog", "prompt": "a dog", "aspect_ratio": "9:16"},
    ], variants=2)
    plan = build_plan(load_spec(spec))
    assert plan.prompt_ids == ["cat", "dog"]
    assert [(t.prompt_id, t.variant) for t in plan.tasks] == [("cat", 0), ("cat", 1), ("dog", 0), ("dog", 1)]
    assert plan.tasks[0].params.aspect_ratio == "16:9"  # spec default
    assert plan.tasks[2].params.aspect_ratio == "9:16"  # the row's own value wins
    assert {t.params.resolution for t in plan.tasks} == {"2K"}
    assert [r.row for r in plan.rows] == [2, 3]  # lines in the file; the header is line 1


def test_resolution_spelling_2k_lowercase_is_normalised(write_spec: SpecWriter) -> None:
    plan = build_plan(load_spec(write_spec([{"prompt_id": "a", "prompt": "x", "resolution": "1k"}])))
    assert plan.tasks[0].params.resolution == "1K"


# -- the table's own problems ---------------------------------------------------------------------


def test_duplicate_prompt_id_names_both_rows(write_spec: SpecWriter, tmp_path: Path) -> None:
    problem = only(problems_of(write_spec([
        {"prompt_id": "a", "prompt": "one"},
        {"prompt_id": "b", "prompt": "two"},
        {"prompt_id": "a", "prompt": "three"},
    ])))
    assert problem.file == str(tmp_path / "prompts.csv")
    assert (problem.row, problem.column) == (4, "prompt_id")
    assert problem.reason == "duplicate prompt_id 'a' (first on line 2)"


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_reported_with_its_row(write_spec: SpecWriter, prompt: str) -> None:
    spec = write_spec([{"prompt_id": "a", "prompt": "fine"}, {"prompt_id": "b", "prompt": prompt}])
    problem = only(problems_of(spec))
    assert (problem.row, problem.column, problem.reason) == (3, "prompt", "prompt is empty")


def test_missing_prompt_column_is_reported(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "text": "hello"}])))
    assert (problem.row, problem.column, problem.reason) == (None, "prompt", "required column is missing")


def test_table_without_rows_is_reported(write_spec: SpecWriter, tmp_path: Path) -> None:
    spec = write_spec(None)
    (tmp_path / "prompts.csv").write_text("prompt_id,prompt\n", encoding="utf-8")
    assert only(problems_of(spec)).reason == "the table has no rows"


def test_prompt_over_5000_characters_is_refused_for_rivya_image(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([
        {"prompt_id": "max", "prompt": "x" * 5000},
        {"prompt_id": "over", "prompt": "y" * 5001},
    ])))
    assert (problem.row, problem.column) == (3, "prompt")
    assert problem.reason == "5001 characters; wan-2-7-image allows at most 5000"


def test_aspect_ratio_rivya_does_not_offer_is_refused_with_the_allowed_list(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "aspect_ratio": "5:4"}])))
    assert (problem.row, problem.column) == (2, "aspect_ratio")
    assert problem.reason.startswith(
        "'5:4' is not one of 1:1, 16:9, 4:3, 21:9, 3:4, 9:16, 8:1, 1:8 for rivya/wan-2-7-image; supported by "
    )
    # The hint names only image models of other providers that take this aspect ratio.
    hinted = problem.reason.split("; supported by ")[1].split(", ")
    assert hinted and all(not h.startswith("rivya/") for h in hinted)


def test_malformed_aspect_ratio_is_refused(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "aspect_ratio": "wide"}])))
    assert (problem.row, problem.column) == (2, "aspect_ratio")
    assert problem.reason == "'wide' is not an aspect ratio like '16:9'"


def test_resolution_4k_is_refused_for_rivya_naming_the_reason(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "resolution": "4K"}])))
    assert (problem.row, problem.column) == (2, "resolution")
    assert problem.reason == (
        "'4K' is not one of 1K, 2K for rivya/wan-2-7-image; "
        "supported by reapi/wan2.7-image-pro, dashscope/wan2.7-image-pro"
    )


def test_unknown_resolution_value_lists_the_contract_values(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "resolution": "8K"}])))
    assert (problem.row, problem.column) == (2, "resolution")
    assert problem.reason.startswith("'8K' is not allowed: ")
    assert "'1K', '2K', '4K', '720p' or '1080p'" in problem.reason


@pytest.mark.parametrize(
    ("seed", "reason"),
    [
        ("-1", "'-1' is out of range: Input should be greater than or equal to 0"),
        ("2147483648", "'2147483648' is out of range: Input should be less than or equal to 2147483647"),
        ("1.5", "'1.5' is not a whole number"),
        ("abc", "'abc' is not a whole number"),
    ],
)
def test_seed_outside_0_to_2147483647_or_not_whole_is_refused(write_spec: SpecWriter, seed: str, reason: str) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "seed": seed}])))
    assert (problem.row, problem.column, problem.reason) == (2, "seed", reason)


def test_seed_at_the_bounds_is_accepted(write_spec: SpecWriter) -> None:
    plan = build_plan(load_spec(write_spec([
        {"prompt_id": "lo", "prompt": "x", "seed": "0"},
        {"prompt_id": "hi", "prompt": "x", "seed": "2147483647"},
    ])))
    assert [t.seed for t in plan.tasks] == [0, 2147483647]


def test_bad_json_in_a_json_column_names_the_column_and_position(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "provider_params": '{"a": 1,'}])))
    assert (problem.row, problem.column) == (2, "provider_params")
    assert problem.reason == "not valid JSON (Expecting property name enclosed in double quotes at character 8)"


def test_bool_column_with_maybe_is_refused(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "watermark": "maybe"}])))
    assert (problem.row, problem.column, problem.reason) == (2, "watermark", "'maybe' is not true/false")


@pytest.mark.parametrize(("cell", "value"), [("true", True), ("Yes", True), ("1", True), ("no", False), ("OFF", False)])
def test_bool_column_accepts_common_spellings(write_spec: SpecWriter, cell: str, value: bool) -> None:
    plan = build_plan(load_spec(write_spec([{"prompt_id": "a", "prompt": "x", "watermark": cell}])))
    assert plan.tasks[0].params.watermark is value


@pytest.mark.parametrize(
    ("prompt_id", "reason"),
    [
        ("a/b", "'a/b' contains '/', '\\', '...' or a control character (it names a Dagster partition)"),
        ("wait...", "'wait...' contains '/', '\\', '...' or a control character (it names a Dagster partition)"),
        (" padded", "' padded' has leading or trailing spaces"),
        ("x" * 129, "'" + "x" * 40 + "...' is 129 characters; at most 128"),
    ],
)
def test_prompt_id_that_cannot_name_a_partition_is_refused(write_spec: SpecWriter, prompt_id: str, reason: str) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": prompt_id, "prompt": "x"}])))
    assert (problem.row, problem.column, problem.reason) == (2, "prompt_id", reason)


def test_prompt_ids_with_spaces_and_any_script_are_accepted_and_stored_under_safe_names(
    write_spec: SpecWriter,
) -> None:
    from wan_pipeline.planning.table import safe_name

    plan = build_plan(load_spec(write_spec([{"prompt_id": "img 1", "prompt": "x"}, {"prompt_id": "猫", "prompt": "y"},
                                            {"prompt_id": "plain_id-2.v", "prompt": "z"}])))
    assert plan.prompt_ids == ["img 1", "猫", "plain_id-2.v"]
    assert safe_name("plain_id-2.v") == "plain_id-2.v"  # safe ids keep their names (and existing files)
    names = {safe_name(p) for p in plan.prompt_ids}
    assert len(names) == 3
    assert all(n.isascii() and "/" not in n and " " not in n for n in names)


def test_missing_prompt_id_becomes_a_stable_content_hash(write_spec: SpecWriter) -> None:
    spec = write_spec([{"prompt": "a cat"}, {"prompt": "a dog"}])
    first = build_plan(load_spec(spec)).prompt_ids
    assert first == build_plan(load_spec(spec)).prompt_ids
    assert all(pid.startswith("p_") and len(pid) == 14 for pid in first)
    assert first[0] != first[1]


# -- reference files -------------------------------------------------------------------------------


def test_missing_reference_file_is_reported_with_where_it_was_looked_for(
    write_spec: SpecWriter, tmp_path: Path
) -> None:
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "reference_images": "refs/gone.png"}])))
    assert (problem.row, problem.column) == (2, "reference_images")
    assert problem.reason == f"reference file 'refs/gone.png' not found (looked at {tmp_path / 'refs' / 'gone.png'})"


def test_unreadable_reference_file_is_reported(
    write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked.png").write_bytes(png_bytes())
    real_open = pathlib.Path.open

    def guarded_open(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if self.name == "locked.png":  # chmod 000 is no obstacle for root, so refuse here
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pathlib.Path, "open", guarded_open)
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "reference_images": '["locked.png"]'}])))
    assert (problem.row, problem.column) == (2, "reference_images")
    assert problem.reason.startswith("reference file 'locked.png' is unreadable: ")
    assert "Permission denied" in problem.reason


def test_reference_file_that_is_not_an_image_is_refused_by_content(write_spec: SpecWriter, tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("not a picture", encoding="utf-8")
    problem = only(problems_of(write_spec([{"prompt_id": "a", "prompt": "x", "reference_images": "fake.png"}])))
    assert (problem.row, problem.column) == (2, "reference_images")
    assert problem.reason == (
        "'fake.png' is an unknown type; rivya/wan-2-7-image takes image/jpeg, image/png, image/webp"
    )


def test_reference_url_is_refused_for_rivya_which_needs_its_files_api(write_spec: SpecWriter) -> None:
    problem = only(problems_of(write_spec([
        {"prompt_id": "a", "prompt": "x", "reference_images": '["https://example.com/a.png"]'},
    ])))
    assert (problem.row, problem.column) == (2, "reference_images")
    assert "rivya takes reference files only through its Files API" in problem.reason


def test_local_reference_image_plans_an_edit_with_its_content_hash(write_spec: SpecWriter, tmp_path: Path) -> None:
    data = png_bytes()
    (tmp_path / "ref.png").write_bytes(data)
    plan = build_plan(load_spec(write_spec([{"prompt_id": "a", "prompt": "x", "reference_images": "ref.png"}])))
    task = plan.tasks[0]
    assert task.mode == "image_edit"
    assert task.params.reference_images == ["ref.png"]
    (ref,) = task.references
    assert (ref.kind, ref.path, ref.mime_type) == ("image", tmp_path / "ref.png", "image/png")
    assert ref.size_bytes == len(data)
    assert ref.sha256 == hashlib.sha256(data).hexdigest()


# -- every problem at once -------------------------------------------------------------------------


def test_all_problems_of_a_table_are_reported_together(write_spec: SpecWriter, tmp_path: Path) -> None:
    spec = write_spec([
        {"prompt_id": "ok", "prompt": "fine"},                                             # line 2
        {"prompt_id": "ok", "prompt": "dup", "aspect_ratio": "5:4", "watermark": "maybe"},  # line 3
        {"prompt_id": "c", "prompt": " ", "seed": "-1", "color_palette": "[{oops"},         # line 4
        {"prompt_id": "d", "prompt": "z" * 5001, "resolution": "4K"},                       # line 5
        {"prompt_id": "e", "prompt": "x", "seed": "2147483648", "reference_images": "nope.png"},  # line 6
        {"prompt_id": "f", "prompt": "x", "n": "2"},                                        # line 7
    ])
    problems = problems_of(spec)
    assert {p.file for p in problems} == {str(tmp_path / "prompts.csv")}
    assert sorted(where(problems)) == sorted([
        (3, "prompt_id"), (3, "aspect_ratio"), (3, "watermark"),
        (4, "prompt"), (4, "seed"), (4, "color_palette"),
        (5, "prompt"), (5, "resolution"),
        (6, "seed"), (6, "reference_images"),
        (7, "n"),
    ])
    assert [p.row for p in problems] == sorted(p.row or 0 for p in problems)  # listed in table order


def test_invalid_input_message_lists_file_row_column_and_reason(write_spec: SpecWriter, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        build_plan(load_spec(write_spec([{"prompt_id": "a", "prompt": "x", "watermark": "maybe"},
                                          {"prompt_id": "b", "prompt": ""}])))
    text = str(info.value)
    assert text.startswith("2 problem(s) in the input:\n")
    assert f"  - {tmp_path / 'prompts.csv'}, line 2, column 'watermark': 'maybe' is not true/false" in text
    assert f"  - {tmp_path / 'prompts.csv'}, line 3, column 'prompt': prompt is empty" in text


# -- parameters rivya cannot take -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "refused"),
    [
        ({"n": "2"}, ["n"]),
        ({"thinking": "true"}, ["thinking"]),
        ({"sequential": "false"}, ["sequential"]),
        ({"prompt_extend": "true"}, ["prompt_extend"]),
        ({"negative_prompt": "blurry"}, ["negative_prompt"]),
        ({"width": "1024", "height": "1024"}, ["width", "height"]),
    ],
)
def test_parameter_rivya_does_not_support_is_refused_with_reason(
    write_spec: SpecWriter, cells: dict[str, str], refused: list[str]
) -> None:
    spec = write_spec([{"prompt_id": "a", "prompt": "x", **cells}], params={})
    problems = problems_of(spec)
    assert where(problems) == [(2, name) for name in refused]
    for problem, name in zip(problems, refused, strict=True):
        assert_refused_naming_alternatives(problem.reason, name)


def test_provider_check_refuses_unsupported_params_directly() -> None:
    from wan_pipeline.providers.params import NeutralParams

    issues = RIVYA.check("wan-2-7-image", "x", NeutralParams(n=2, thinking=True, aspect_ratio="1:1"))
    assert [i.field for i in issues] == ["n", "thinking"]
    for issue in issues:
        assert_refused_naming_alternatives(issue.reason, issue.field)


def assert_refused_naming_alternatives(reason: str, name: str) -> None:
    """Refused with the reason, and pointed at image models elsewhere that do take the parameter."""
    head, _, hint = reason.partition("; supported by ")
    assert head == f"rivya/wan-2-7-image does not support '{name}'"
    alternatives = hint.split(", ")
    # DashScope (Alibaba's first-party host) takes every neutral image parameter.
    assert "dashscope/wan2.7-image-pro" in alternatives
    assert not any(a.startswith("rivya/") for a in alternatives)
    assert not any("video" in a or "2v" in a for a in alternatives)


def test_unsupported_spec_default_is_reported_for_every_row(write_spec: SpecWriter) -> None:
    problems = problems_of(write_spec([{"prompt_id": "a", "prompt": "x"}, {"prompt_id": "b", "prompt": "y"}],
                                      params={"thinking": True}))
    assert where(problems) == [(2, "thinking"), (3, "thinking")]


# -- spec errors ----------------------------------------------------------------------------------


def spec_problems(write_spec: SpecWriter, **fields: object) -> list[Problem]:
    path = write_spec([{"prompt_id": "a", "prompt": "x"}], **fields)
    with pytest.raises(InvalidInput) as info:
        build_plan(load_spec(path))
    return info.value.problems


def test_spec_with_bad_name_is_refused(write_spec: SpecWriter, tmp_path: Path) -> None:
    problem = only(spec_problems(write_spec, name="My Dataset"))
    lines = (tmp_path / "spec.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, start=1) if text.startswith("name:"))
    assert (problem.file, problem.row, problem.column) == (str(tmp_path / "spec.yaml"), line, "name")
    assert str(problem).startswith(f"{tmp_path / 'spec.yaml'}, line {line}, column 'name': ")
    assert problem.reason.startswith("must match [a-z0-9_]+")


def test_spec_problems_name_the_line_of_nested_fields(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "name: demo\nprompts: p.csv\nprovider: rivya\nmodel: wan-2-7-image\n"
        "params:\n  aspect_ratio: '16:9'\n  seed: -4\nbudget:\n  max_usd: 0\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        load_spec(tmp_path / "spec.yaml")
    assert [(p.row, p.column) for p in info.value.problems] == [(7, "params.seed"), (9, "budget.max_usd")]


def test_spec_with_unknown_provider_lists_the_known_ones(write_spec: SpecWriter) -> None:
    problem = only(spec_problems(write_spec, provider="acme"))
    assert problem.column == "provider"
    assert "'rivya', 'evolink', 'reapi', 'runware' or 'dashscope'" in problem.reason


def test_registry_refuses_an_unknown_provider_naming_the_available_ones() -> None:
    from wan_pipeline.providers.registry import get_provider

    with pytest.raises(ConfigError, match=r"provider 'acme' is not implemented yet \(available: "
                                          r"dashscope, evolink, reapi, rivya, runware\)"):
        get_provider("acme")


def test_spec_with_unknown_model_names_the_known_models(write_spec: SpecWriter, tmp_path: Path) -> None:
    problem = only(spec_problems(write_spec, model="wan-9-image"))
    assert (problem.file, problem.column) == (str(tmp_path / "spec.yaml"), "model")
    assert problem.reason == "rivya has no model 'wan-9-image' (known: wan-2-7-image, wan-2-7-video)"


def test_spec_file_missing_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_spec(tmp_path / "absent.yaml")
    assert only(info.value.problems) == Problem(str(tmp_path / "absent.yaml"), None, None, "spec file not found")


def test_spec_naming_a_missing_prompt_table_is_reported(write_spec: SpecWriter, tmp_path: Path) -> None:
    spec = write_spec(None, table="absent.csv")
    problem = only(problems_of(spec))
    assert (problem.file, problem.reason) == (str(tmp_path / "absent.csv"), "prompt table not found")


def test_spec_prompt_table_must_be_csv_or_parquet(write_spec: SpecWriter) -> None:
    problem = only(spec_problems(write_spec, prompts="prompts.xlsx"))
    assert (problem.column, problem.reason) == ("prompts", "must be a .csv or .parquet file")


def test_spec_reports_every_field_problem_together(write_spec: SpecWriter) -> None:
    problems = spec_problems(write_spec, name="Bad-Name", variants=0, seed=-5, colour="blue")
    assert sorted(p.column or "" for p in problems) == ["colour", "name", "seed", "variants"]


def test_spec_budget_in_usd_is_refused_for_credit_only_rivya(write_spec: SpecWriter) -> None:
    problem = only(spec_problems(write_spec, budget={"max_usd": 5}))
    assert problem.column == "budget.max_usd"
    assert problem.reason == (
        "rivya/wan-2-7-image has no documented or declared USD price for 1 prompt(s) (e.g. a) and the host reports "
        "no USD charge when a task is created, so this budget cannot bind; declare what this account pays under "
        "`pricing.usd_per_image:` (or `pricing.usd_per_credit:`), or remove budget.max_usd"
    )


def test_spec_budget_below_one_task_is_refused(write_spec: SpecWriter) -> None:
    problem = only(spec_problems(write_spec, budget={"max_credits": 4}))
    assert (problem.column, problem.reason) == ("budget.max_credits", "4 credits cannot pay for one task (5 credits)")


def test_spec_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(["a", "list"]), encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        load_spec(path)
    assert only(info.value.problems).reason == "must be a YAML mapping"


# -- table formats and user columns ---------------------------------------------------------------


def test_parquet_table_plans_exactly_like_the_same_csv(write_spec: SpecWriter, tmp_path: Path) -> None:
    rows = [
        {"prompt_id": "a", "prompt": "a cat", "seed": "7", "watermark": "true", "category": "pets"},
        {"prompt_id": "b", "prompt": "a dog", "seed": "", "watermark": "", "category": "pets"},
    ]
    csv_plan = build_plan(load_spec(write_spec(rows)))
    frame = pd.DataFrame({
        "prompt_id": ["a", "b"], "prompt": ["a cat", "a dog"],
        "seed": [7, None], "watermark": [True, None], "category": ["pets", "pets"],
    })
    frame.to_parquet(tmp_path / "prompts.parquet")
    pq_plan = build_plan(load_spec(write_spec(None, table="prompts.parquet")))
    assert [t.fingerprint for t in pq_plan.tasks] == [t.fingerprint for t in csv_plan.tasks]
    assert pq_plan.tasks[0].seed == 7
    assert pq_plan.tasks[0].params.watermark is True
    assert pq_plan.tasks[1].params.watermark is None
    assert pq_plan.tasks[0].extra == {"category": "pets"}


def test_parquet_table_problems_name_row_and_column(write_spec: SpecWriter, tmp_path: Path) -> None:
    pd.DataFrame({"prompt_id": ["a", "b", "a"], "prompt": ["x", "", "z"], "seed": [1, -1, 2]}).to_parquet(
        tmp_path / "prompts.parquet"
    )
    problems = problems_of(write_spec(None, table="prompts.parquet"))
    assert where(problems) == [(2, "prompt"), (2, "seed"), (3, "prompt_id")]
    assert {p.file for p in problems} == {str(tmp_path / "prompts.parquet")}


def test_unreadable_parquet_is_reported_as_not_a_table(write_spec: SpecWriter, tmp_path: Path) -> None:
    (tmp_path / "prompts.parquet").write_bytes(b"this is not parquet")
    problem = only(problems_of(write_spec(None, table="prompts.parquet")))
    assert problem.reason.startswith("cannot be read as a table: ")


def test_extra_columns_go_to_extra_and_never_to_the_provider(write_spec: SpecWriter) -> None:
    plan = build_plan(load_spec(write_spec([
        {"prompt_id": "a", "prompt": "x", "category": "pets", "notes": "from batch 7", "owner": ""},
    ])))
    task = plan.tasks[0]
    assert task.extra == {"category": "pets", "notes": "from batch 7", "owner": None}
    body = RIVYA.submit(task.request(), task.idempotency_key(1)).json_body
    assert set(body) == {"model", "prompt", "params"}
    assert set(body["params"]) == {"aspect_ratio", "resolution", "watermark", "seed"}


def test_prompt_with_commas_quotes_newlines_and_chinese_survives_csv(write_spec: SpecWriter) -> None:
    prompt = '一座雨中的江南茶馆, "golden hour", it\'s 50% fog;\nsecond line'
    plan = build_plan(load_spec(write_spec([{"prompt_id": "tea", "prompt": prompt, "note": "青瓦, 白墙"}])))
    assert plan.tasks[0].prompt == prompt
    assert plan.tasks[0].extra == {"note": "青瓦, 白墙"}


def test_csv_cells_stay_strings_so_leading_zeros_survive(write_spec: SpecWriter) -> None:
    plan = build_plan(load_spec(write_spec([{"prompt_id": "007", "prompt": "x", "batch": "0042"}])))
    assert plan.prompt_ids == ["007"]
    assert plan.tasks[0].extra == {"batch": "0042"}


def test_non_utf8_csv_is_reported(write_spec: SpecWriter, tmp_path: Path) -> None:
    spec = write_spec(None)
    (tmp_path / "prompts.csv").write_bytes("prompt_id,prompt\na,caf\u00e9\n".encode("latin-1"))
    problem = only(problems_of(spec))
    assert problem.reason.startswith("not UTF-8 text")

