"""Tables are read strictly and problems are named by their line in the file (DESIGN §4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SpecWriter

from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec


def problems_for(write_spec: SpecWriter, tmp_path: Path, text: str) -> list[Problem]:
    (tmp_path / "prompts.csv").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        build_plan(load_spec(write_spec(None)))
    return info.value.problems


def test_rows_with_more_cells_than_the_header_are_refused_not_read_as_an_index(
    write_spec: SpecWriter, tmp_path: Path
) -> None:
    problems = problems_for(write_spec, tmp_path, "prompt_id,prompt\na,A lighthouse,extra,cells\nb,A harbour,x,y\n")
    assert [(p.row, p.column) for p in problems] == [(2, None), (3, None)]
    assert "4 cells, but the header (line 1) names 2 columns (prompt_id, prompt)" in problems[0].reason
    assert str(problems[0]).startswith(f"{tmp_path / 'prompts.csv'}, line 2: ")


def test_rows_with_fewer_cells_are_refused_too(write_spec: SpecWriter, tmp_path: Path) -> None:
    problems = problems_for(write_spec, tmp_path, "prompt_id,prompt,seed\na,A lighthouse,1\nb,A harbour\n")
    assert [(p.row, p.reason.split(",")[0]) for p in problems] == [(3, "2 cells")]


def test_lines_count_blank_lines_and_quoted_cells_that_span_lines(write_spec: SpecWriter, tmp_path: Path) -> None:
    text = 'prompt_id,prompt,aspect_ratio\n\na,"A lighthouse\non two lines",16:9\nb,A harbour,7:5\n'
    (problem,) = problems_for(write_spec, tmp_path, text)
    assert (problem.row, problem.column) == (5, "aspect_ratio")  # line 5 in an editor
    assert f"{tmp_path / 'prompts.csv'}, line 5, column 'aspect_ratio'" in str(problem)


def test_header_names_must_be_distinct_and_present(write_spec: SpecWriter, tmp_path: Path) -> None:
    problems = problems_for(write_spec, tmp_path, "prompt_id,prompt,prompt,\na,x,y,z\n")
    assert [(p.row, p.column, p.reason) for p in problems] == [
        (1, "prompt", "column 'prompt' appears twice in the header"),
        (1, None, "header cell 4 has no column name"),
    ]


def test_a_byte_order_mark_is_not_part_of_the_first_column(write_spec: SpecWriter, tmp_path: Path) -> None:
    (tmp_path / "prompts.csv").write_text("\ufeffprompt_id,prompt\na,A lighthouse\n", encoding="utf-8")
    (task,) = build_plan(load_spec(write_spec(None))).tasks
    assert (task.prompt_id, task.prompt, task.row) == ("a", "A lighthouse", 2)


def test_unclosed_quote_is_refused_naming_the_line(write_spec: SpecWriter, tmp_path: Path) -> None:
    problems = problems_for(write_spec, tmp_path, 'prompt_id,prompt\na,"A lighthouse\n')
    assert problems and all(p.row is not None for p in problems)


def test_only_newlines_end_lines_not_form_feeds_or_unicode_separators(write_spec: SpecWriter, tmp_path: Path) -> None:
    # Unquoted, as Python's csv module writes them: a prompt keeps them, and the lines after them count right.
    text = "prompt_id,prompt,aspect_ratio\na,A fox\u2028at dawn,16:9\nb,Page\x0cbreak\x85here,16:9\nc,A harbour,7:5\n"
    (problem,) = problems_for(write_spec, tmp_path, text)
    assert (problem.row, problem.column) == (4, "aspect_ratio")
    (tmp_path / "prompts.csv").write_text(text.replace("7:5", "1:1"), encoding="utf-8")
    plan = build_plan(load_spec(write_spec(None)))
    assert [r.prompt for r in plan.rows] == ["A fox\u2028at dawn", "Page\x0cbreak\x85here", "A harbour"]
