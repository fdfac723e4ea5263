"""A prompt row's parameter cells → its NeutralParams over the spec defaults, and every problem with them.

Validation is what planning a large table costs (coercion, pydantic, reference-file checks: ~100 µs a row),
and tables repeat a handful of parameter combinations over many rows. `RowParams` checks each distinct
combination of cells once and hands every row with the same cells the same (frozen) result. A row's own seed
is the common exception — replayed tables have one per row — so the seed is laid over the combination of the
other cells rather than being part of it: it takes part in no rule that ties parameters together, and when the
combination or the seed has any problem, the row is checked on its own, exactly as it always was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wan_pipeline.errors import Problem
from wan_pipeline.providers.params import BOOL_PARAMS, INT_PARAMS, JSON_PARAMS, PARAM_NAMES, NeutralParams

TRUE_WORDS = {"true", "1", "yes", "y", "on"}
FALSE_WORDS = {"false", "0", "no", "n", "off"}
#: laid over a shared combination of the other cells (see the module docstring)
OWN_SEED = "seed"


@dataclass(frozen=True)
class CheckedParams:
    """One row's parameters, checked."""

    raw: dict[str, Any]  # its parameter cells, coerced (read only: rows may share it)
    params: NeutralParams  # merged over the spec defaults (frozen: rows may share it)
    #: the same without the row's own seed: one object for all rows whose other parameter cells are equal, so
    #: what depends on the parameters but not on the seed is worked out once per object (planning.plan)
    shared: NeutralParams
    problems: tuple[Problem, ...]  # parameter and reference-file problems


class RowParams:
    """Checks the parameter cells of a table's rows, once per distinct combination of cells."""

    def __init__(self, file: str, columns: set[str], defaults: NeutralParams, base_dir: Path) -> None:
        self._file, self._defaults, self._base_dir = file, defaults, base_dir
        self._keyed = sorted(c for c in PARAM_NAMES & columns if c != OWN_SEED)
        self._seeded = OWN_SEED in columns
        self._by_cells: dict[tuple[Any, ...], CheckedParams] = {}

    def check(self, rownum: int, cells: dict[str, Any]) -> CheckedParams:
        """The row's parameters; its problems name `rownum`."""
        common = self._common(cells)
        seed = cells.get(OWN_SEED) if self._seeded else None
        checked = common if seed is None else self._with_seed(common, seed)
        if checked is None:  # some problem: this row on its own, as every row once was
            checked = self._checked(cells)
        if not checked.problems:
            return checked
        return replace(checked, problems=tuple(replace(p, row=rownum) for p in checked.problems))

    def _common(self, cells: dict[str, Any]) -> CheckedParams:
        """The row's cells but its seed, checked once per distinct combination.

        Text cells (all of a CSV's) are their own key; any other cell is keyed by its type and repr, so cells
        that compare equal but validate or read differently (True, 1 and 1.0, or -0.0 and 0.0, from Parquet)
        never share a result.
        """
        key = tuple(_cell_key(cells[c]) for c in self._keyed)
        hit = self._by_cells.get(key)
        if hit is None:
            hit = self._by_cells[key] = self._checked({**cells, OWN_SEED: None} if self._seeded else cells)
        return hit

    def _with_seed(self, common: CheckedParams, cell: Any) -> CheckedParams | None:
        """`common` with the row's own seed, or None when either has a problem (then the row is checked alone,
        so its problems read exactly as they always did)."""
        if common.problems:
            return None
        try:
            value = _coerce(OWN_SEED, cell)
            seed = NeutralParams.model_validate({OWN_SEED: value}).seed  # the contract's own range check
        except (ValueError, ValidationError):
            return None
        params = common.params.model_copy(update={OWN_SEED: seed})
        return CheckedParams({**common.raw, OWN_SEED: value}, params, common.shared, ())

    def _checked(self, cells: dict[str, Any]) -> CheckedParams:
        problems: list[Problem] = []
        raw, params = _row_params(self._file, 0, cells, self._defaults, problems)
        problems.extend(_reference_problems(self._file, 0, params, self._base_dir))
        return CheckedParams(raw, params, params, tuple(problems))


def _cell_key(value: Any) -> Any:
    return value if value is None or type(value) is str else (type(value), repr(value))


def _row_params(file: str, rownum: int, cells: dict[str, Any], defaults: NeutralParams,
                problems: list[Problem]) -> tuple[dict[str, Any], NeutralParams]:
    """One row's parameter cells, coerced (`raw`), and merged over the spec defaults; problems are appended."""
    raw_params: dict[str, Any] = {}
    for name in sorted(PARAM_NAMES & cells.keys()):
        value = cells[name]
        if value is None:
            continue
        try:
            raw_params[name] = _coerce(name, value)
        except ValueError as exc:
            problems.append(Problem(file, rownum, name, str(exc)))

    try:
        params = defaults.merged(NeutralParams.model_validate(raw_params))
    except ValidationError as exc:
        param_problems = _pydantic_problems(file, rownum, exc)
        problems.extend(param_problems)
        # Keep checking the columns that are fine (e.g. reference files) in this same pass.
        params = _partial_params(defaults, raw_params, {p.column for p in param_problems})
    return raw_params, params


def _partial_params(defaults: NeutralParams, raw: dict[str, Any], failed: set[str | None]) -> NeutralParams:
    """The row's parameters without the columns that failed validation (spec defaults if that fails too)."""
    try:
        return defaults.merged(NeutralParams.model_validate({k: v for k, v in raw.items() if k not in failed}))
    except ValidationError:
        return defaults


def _coerce(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name in JSON_PARAMS:
        if name == "reference_images" and not text.startswith("["):
            return [text]  # a single path needs no JSON brackets
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if name in BOOL_PARAMS:
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ValueError(f"'{text}' is not true/false")
    if name in INT_PARAMS:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a whole number") from None
        if not number.is_integer():
            raise ValueError(f"'{text}' is not a whole number")
        return int(number)
    return text


def _pydantic_problems(file: str, rownum: int, exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        column = loc[0] if loc else None
        detail = ".".join(loc[1:])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" or err["type"] == "enum":
            msg = f"'{err.get('input')}' is not allowed: {msg}"
        elif err["type"] in {"less_than_equal", "greater_than_equal", "too_long", "too_short"}:
            msg = f"'{err.get('input')}' is out of range: {msg}"
        out.append(Problem(file, rownum, column, f"{detail}: {msg}" if detail else msg))
    return out


def _reference_problems(file: str, rownum: int, params: NeutralParams, base_dir: Path) -> list[Problem]:
    problems = []
    refs = [("reference_images", r) for r in params.reference_images or []]
    if params.reference_video:
        refs.append(("reference_video", params.reference_video))
    for column, ref in refs:
        if ref.startswith("https://") or ref.startswith("http://"):
            continue
        path = (base_dir / ref).resolve()
        if not path.is_file():
            problems.append(Problem(file, rownum, column, f"reference file '{ref}' not found (looked at {path})"))
            continue
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            problems.append(Problem(file, rownum, column, f"reference file '{ref}' is unreadable: {exc}"))
    return problems


