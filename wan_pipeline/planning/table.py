"""The prompt table (DESIGN §4, a contract): CSV or Parquet rows → validated prompt rows.

Every problem of the table is collected (file, line, column, reason) before anything is raised, so a
user fixes the whole table in one pass. A CSV row is named by its line in the file (the header is line 1,
a quoted cell spanning lines counts from the line it starts on), so an editor finds it; a Parquet table
has no lines and names its rows 1, 2, ... in table order.

CSV is read strictly: every row must have exactly as many cells as the header has names. A ragged row is
refused, never re-aligned (pandas would read four cells under a two-name header as an index plus the last
two cells, and spend money on the wrong prompt).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.planning.row_params import RowParams
from wan_pipeline.providers.params import PARAM_NAMES, NeutralParams

#: prompt ids name Dagster partitions (which refuse control characters and "...") and, slugged, files
PROMPT_ID_MAX = 128
FORBIDDEN_IN_ID = re.compile(r"[\x00-\x1f\x7f/\\]|\.\.\.")
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: columns that are not user metadata
NOT_EXTRA = PARAM_NAMES | {"prompt", "prompt_id"}


@dataclass(frozen=True)
class PromptRow:
    row: int  # CSV: the line in the file where the row starts; Parquet: 1-based row
    prompt_id: str
    prompt: str
    params: NeutralParams  # spec defaults merged with this row's own values
    extra: dict[str, Any] = field(default_factory=dict)  # user metadata, never sent to a provider


@dataclass(frozen=True)
class RawTable:
    columns: tuple[str, ...]
    #: (line in the file, or 1-based row for Parquet; the row's cells by column name)
    records: tuple[tuple[int, dict[str, Any]], ...]


def read_table(path: Path) -> RawTable:
    """Read the raw table; CSV cells stay strings so nothing is guessed (e.g. '007' stays '007')."""
    file = str(path)
    if not path.is_file():
        raise InvalidInput([Problem(file, None, None, "prompt table not found")])
    if path.suffix.lower() == ".parquet":
        import pandas as pd  # here: a second of imports that a CSV table (and `generate`'s start) does without

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a malformed file
            raise InvalidInput([Problem(file, None, None, f"cannot be read as a table: {exc}")]) from exc
        records = frame.to_dict(orient="records")
        rows = tuple((i + 1, {str(k): v for k, v in r.items()}) for i, r in enumerate(records))
        return RawTable(tuple(str(c) for c in frame.columns), rows)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput([Problem(file, None, None, f"not UTF-8 text: {exc}")]) from exc
    return _read_csv(file, text)


def _read_csv(file: str, text: str) -> RawTable:
    """Strict CSV: a header of distinct names, then rows of exactly that many cells (blank lines skipped)."""
    # Lines end at \n or \r only (as csv expects): str.splitlines would also split at form feeds, U+2028 and
    # the like, cutting an unquoted cell that holds one and miscounting the lines after it.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[Problem] = []
    header: list[str] | None = None
    records: list[tuple[int, dict[str, Any]]] = []
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not cells:
                continue  # a blank line
            if header is None:
                header = [c.strip() for c in cells]
                problems.extend(_header_problems(file, start, header))
                continue
            if len(cells) != len(header):
                problems.append(Problem(file, start, None, f"{len(cells)} cells, but the header (line 1) names "
                                                           f"{len(header)} columns ({', '.join(header)}); "
                                                           "quote cells that contain commas"))
                continue
            records.append((start, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        problems.append(Problem(file, line, None, f"not valid CSV: {exc}"))
    if header is None:
        raise InvalidInput([Problem(file, None, None, "the table is empty (no header line)")])
    if problems:
        raise InvalidInput(problems)
    return RawTable(tuple(header), tuple(records))


def _header_problems(file: str, line: int, header: list[str]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name:
            problems.append(Problem(file, line, None, f"header cell {index} has no column name"))
        elif name in seen:
            problems.append(Problem(file, line, name, f"column '{name}' appears twice in the header"))
        seen.add(name)
    return problems


def load_rows(path: Path, defaults: NeutralParams, base_dir: Path) -> list[PromptRow]:
    """Validate every row against the neutral parameter contract; raise InvalidInput listing all problems."""
    rows, problems = check_rows(path, defaults, base_dir)
    if problems:
        raise InvalidInput(problems)
    return rows


def check_rows(path: Path, defaults: NeutralParams, base_dir: Path) -> tuple[list[PromptRow], list[Problem]]:
    """Every row (best-effort params: columns that failed are left at the spec default) and every problem.

    Rows with problems are returned too, so later checks (the provider's limits) can still report what
    else is wrong with them in the same pass; a row is valid when no problem names its row number.
    """
    table = check_table(path, defaults, base_dir)
    return table.rows, table.problems


@dataclass(frozen=True)
class CheckedTable:
    rows: list[PromptRow]
    problems: list[Problem]
    #: per row, its parameters without its own seed; rows whose other parameter cells are equal share one
    #: object (planning works out what depends on the parameters alone once per object)
    shared: list[NeutralParams]


def check_table(path: Path, defaults: NeutralParams, base_dir: Path) -> CheckedTable:
    """`check_rows`, with which rows share their parameters."""
    table = read_table(path)
    file = str(path)
    if "prompt" not in table.columns:
        raise InvalidInput([Problem(file, None, "prompt", "required column is missing")])
    if not table.records:
        raise InvalidInput([Problem(file, None, None, "the table has no rows")])

    out = CheckedTable([], [], [])
    seen: dict[str, int] = {}
    where = "row" if path.suffix.lower() == ".parquet" else "line"
    row_params = RowParams(file, set(table.columns), defaults, base_dir)
    for rownum, record in table.records:
        row_problems: list[Problem] = []
        cells = {k: _clean(v) for k, v in record.items()}  # read_table's names are text already

        prompt = cells.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            row_problems.append(Problem(file, rownum, "prompt", "prompt is empty"))
            prompt = ""

        checked = row_params.check(rownum, cells)
        row_problems.extend(checked.problems)

        prompt_id = _row_prompt_id(file, rownum, cells, prompt, checked.raw, row_problems)
        if prompt_id in seen:
            row_problems.append(
                Problem(
                    file, rownum, "prompt_id", f"duplicate prompt_id '{prompt_id}' (first on {where} {seen[prompt_id]})"
                )
            )
        else:
            seen[prompt_id] = rownum

        extra = {k: v for k, v in cells.items() if k not in NOT_EXTRA}
        out.problems.extend(row_problems)
        out.rows.append(PromptRow(rownum, prompt_id, prompt, checked.params, extra))
        out.shared.append(checked.shared)
    return out


def _row_prompt_id(file: str, rownum: int, cells: dict[str, Any], prompt: str, raw_params: dict[str, Any],
                   problems: list[Problem]) -> str:
    """The row's prompt_id cell as text, or its content id when the table has none; problems are appended."""
    prompt_id = cells.get("prompt_id")
    if prompt_id is None:
        return _content_id(prompt, raw_params)
    if isinstance(prompt_id, int) and not isinstance(prompt_id, bool):
        prompt_id = str(prompt_id)  # Parquet tables may carry numeric ids
    reason = prompt_id_problem(prompt_id)
    if reason is not None:
        problems.append(Problem(file, rownum, "prompt_id", reason))
    return str(prompt_id)


def prompt_id_problem(value: object) -> str | None:
    """Why a prompt_id cannot name a partition, or None when it can."""
    if not isinstance(value, str):
        return f"'{value}' must be text"
    if value != value.strip():
        return f"'{value}' has leading or trailing spaces"
    if len(value) > PROMPT_ID_MAX:
        return f"'{value[:40]}...' is {len(value)} characters; at most {PROMPT_ID_MAX}"
    if FORBIDDEN_IN_ID.search(value):
        return f"'{value}' contains '/', '\\', '...' or a control character (it names a Dagster partition)"
    return None


def safe_name(prompt_id: str) -> str:
    """A file-system-safe name for a prompt id: the id itself when already safe, else a slug plus a hash."""
    if SAFE_NAME_RE.match(prompt_id):
        return prompt_id
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", prompt_id).strip("._-")[:40] or "p"
    return f"{slug}-{hashlib.sha256(prompt_id.encode('utf-8')).hexdigest()[:10]}"


def _clean(value: Any) -> Any:
    """Empty CSV cells and Parquet nulls mean 'not set'."""
    if type(value) is str:  # every CSV cell: the common case first
        return value if value.strip() else None
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    if hasattr(value, "tolist"):  # numpy scalars and arrays from Parquet
        return value.tolist()
    return value


def _content_id(prompt: str, params: dict[str, Any]) -> str:
    """A stable id for a row without prompt_id: the same content always gives the same id."""
    blob = json.dumps({"prompt": prompt, "params": params}, sort_keys=True, ensure_ascii=False)
    return "p_" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
