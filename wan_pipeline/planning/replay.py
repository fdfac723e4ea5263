"""Replay: a spec and a prompt table rebuilt from a lineage Parquet file alone.

Every output the lineage names is planned again from what its row records (prompt, effective neutral
parameters, seed and seed policy, reference files by SHA-256), and the result is checked by planning it:
on the same host every fingerprint must come out equal, which (since the wire payload is a function of the
planned task) means `generate` sends the same request bodies. Re-targeted at another host, the same
neutral parameters and seeds must come out, and whatever that host cannot do is refused as `validate`
refuses it.

When a prompt id was edited between runs its rows name several versions; the most recently submitted one
is replayed and the others are reported as superseded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.planning.plan import Plan, build_plan, canonical_json, derive_seed
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.params import BOOL_PARAMS, JSON_PARAMS, MAX_SEED

SPEC_NAME = "spec.yaml"
TABLE_NAME = "prompts.csv"
PARQUET_TABLE_NAME = "prompts.parquet"
REFERENCES_DIR = "references"
#: how far up from the lineage file a reference's recorded relative path is looked for
SEARCH_LEVELS = 4
REQUIRED = ("dataset", "prompt_id", "variant", "prompt", "provider", "model", "params_json", "seed", "seed_source",
            "fingerprint", "identity")


@dataclass(frozen=True)
class Output:
    """One planned output (an identity) as the lineage recorded it."""

    prompt_id: str
    variant: int
    prompt: str
    provider: str
    model: str
    params: dict[str, Any]  # effective neutral parameters, seed included
    seed: int
    seed_source: str
    master_seed: int | None
    fingerprint: str
    reference_sha256s: tuple[str | None, ...] | None
    extra: dict[str, Any]
    when: str  # latest submission or completion time, for choosing between versions

    def version_key(self) -> str:
        """Equal for the variants of one table row as it stood at one time (seed policy included)."""
        params = {k: v for k, v in self.params.items() if k != "seed"}
        policy: Any = self.master_seed if self.seed_source == "derived" else (self.seed - self.variant) % (MAX_SEED + 1)
        return canonical_json([self.prompt, self.provider, self.model, params, self.reference_sha256s,
                               self.seed_source, policy])


@dataclass
class ReplayResult:
    spec_path: Path
    table_path: Path
    prompts: int
    outputs: int  # outputs the lineage names that the replayed spec plans
    planned: int  # outputs the replayed spec plans in all
    plan_digest: str = ""  # Plan.digest() of the replayed spec, as `validate` prints it
    references: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retargeted: bool = False


def read_outputs(lineage: Path) -> list[Output]:
    """One Output per identity in the lineage file (attempts and output files collapse into it)."""
    file = str(lineage)
    if not lineage.is_file():
        raise InvalidInput([Problem(file, None, None, "lineage file not found")])
    try:
        table = pq.read_table(lineage)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InvalidInput([Problem(file, None, None, f"not a readable Parquet file: {exc}")]) from exc
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise InvalidInput([Problem(file, None, c, "column missing: not a wan-pipeline lineage file") for c in missing])
    by_identity: dict[str, Output] = {}
    for row in table.to_pylist():
        if row["identity"] is None:
            continue  # a task the host holds that no output claims (status `orphaned`): nothing to replay
        when = str(row.get("submitted_at") or row.get("completed_at") or "")
        known = by_identity.get(row["identity"])
        if known is not None and known.when >= when:
            continue
        refs = row.get("reference_sha256s")
        by_identity[row["identity"]] = Output(
            prompt_id=row["prompt_id"], variant=int(row["variant"]), prompt=row["prompt"], provider=row["provider"],
            model=row["model"], params=json.loads(row["params_json"]), seed=int(row["seed"]),
            seed_source=row["seed_source"], master_seed=row.get("master_seed"), fingerprint=row["fingerprint"],
            reference_sha256s=tuple(json.loads(refs)) if refs else None,
            extra=json.loads(row.get("extra_json") or "{}"), when=when,
        )
    if not by_identity:
        raise InvalidInput([Problem(file, None, None, "the lineage has no rows")])
    datasets = set(table.column("dataset").to_pylist())
    if len(datasets) > 1:
        raise InvalidInput([Problem(file, None, "dataset", f"holds several datasets: {sorted(datasets)}")])
    return list(by_identity.values())


def choose_versions(outputs: list[Output]) -> tuple[dict[str, list[Output]], list[str]]:
    """Per prompt id, the variants of its most recently submitted version; notes on what was left out."""
    versions: dict[str, dict[str, list[Output]]] = defaultdict(lambda: defaultdict(list))
    for o in outputs:
        versions[o.prompt_id][o.version_key()].append(o)
    chosen: dict[str, list[Output]] = {}
    notes: list[str] = []
    for pid in sorted(versions):
        ordered = sorted(versions[pid].values(), key=lambda group: max(o.when for o in group))
        chosen[pid] = sorted(ordered[-1], key=lambda o: o.variant)
        superseded = sum(len(g) for g in ordered[:-1])
        if superseded:
            notes.append(f"{pid}: {superseded} output(s) of an earlier version of this row are not replayed")
    return chosen, notes


def _master_seed(chosen: dict[str, list[Output]]) -> int:
    """The one master seed of the derived-seed rows (the most common if the spec's seed changed)."""
    counts: dict[int, int] = defaultdict(int)
    for group in chosen.values():
        for o in group:
            if o.seed_source == "derived" and o.master_seed is not None:
                counts[o.master_seed] += 1
    return max(sorted(counts), key=lambda s: counts[s]) if counts else 0


def _row_seed(group: list[Output], master: int) -> tuple[int | None, str | None]:
    """The row's seed cell (None: derived from the master seed), or why no cell can give these seeds."""
    if all(o.seed_source == "derived" and derive_seed(master, o.prompt_id, o.variant) == o.seed for o in group):
        return None, None
    base = (group[0].seed - group[0].variant) % (MAX_SEED + 1)
    if all((base + o.variant) % (MAX_SEED + 1) == o.seed for o in group):
        return base, None  # a row seed (or one derived seed per row, which a row seed reproduces)
    return None, "its variants' seeds were derived from another master seed than the other rows'"


def _cell(name: str, value: Any) -> str:
    """A table cell that the prompt table reads back as exactly `value` (DESIGN §4 encodings)."""
    if name in JSON_PARAMS:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if name in BOOL_PARAMS:
        return "true" if value else "false"
    return str(value)


def _candidates(source: str, sha256: str, lineage: Path, search: list[Path]) -> list[Path]:
    """Where a reference file may still be: stored beside the lineage, given directories, its recorded path."""
    storage_root = lineage.resolve().parent.parent
    found = [p for p in sorted((storage_root / REFERENCES_DIR).glob(f"{sha256}*")) if p.is_file()]
    for directory in search:
        found.extend(p for p in sorted(directory.rglob("*")) if p.is_file())
    recorded = Path(source)
    if recorded.is_absolute():
        found.append(recorded)
    else:
        found.append(Path.cwd() / recorded)
        found.extend(parent / recorded for parent in list(lineage.resolve().parents)[:SEARCH_LEVELS])
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class _Writer:
    """Builds the replayed table's rows and copies the reference files they name."""

    lineage: Path
    out: Path
    search: list[Path]
    copied: dict[str, Path] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def reference(self, source: str, sha256: str | None) -> str:
        """The table cell for one reference: a URL as recorded, a local file as its verified copy."""
        if source.startswith(("https://", "http://")):
            return source
        for candidate in _candidates(source, sha256 or "", self.lineage, self.search):
            if not candidate.is_file() or (sha256 is not None and _sha256(candidate) != sha256):
                continue
            digest = sha256 or _sha256(candidate)
            target = self.out / REFERENCES_DIR / f"{digest}{Path(source).suffix.lower()}"
            if digest not in self.copied:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(candidate, target)
                self.copied[digest] = target
            return f"{REFERENCES_DIR}/{target.name}"
        self.problems.append(
            Problem(str(self.lineage), None, "reference_sha256s",
                    f"reference '{source}' (sha256 {sha256 or 'not recorded'}) is neither stored beside the lineage "
                    "nor found at its recorded path; pass the directory that holds it (--references DIR)")
        )
        return source

    def row(self, group: list[Output], seed: int | None) -> dict[str, str]:
        first = group[0]
        params = {k: v for k, v in first.params.items() if k != "seed"}
        shas = list(first.reference_sha256s or [])
        images = params.get("reference_images") or []
        if images:
            params["reference_images"] = [self.reference(s, shas[i] if i < len(shas) else None)
                                          for i, s in enumerate(images)]
        if "reference_video" in params:
            sha = shas[len(images)] if len(shas) > len(images) else None
            params["reference_video"] = self.reference(params["reference_video"], sha)
        cells = {"prompt_id": first.prompt_id, "prompt": first.prompt}
        cells.update({k: _cell(k, v) for k, v in params.items()})
        if seed is not None:
            cells["seed"] = str(seed)
        for key, value in first.extra.items():
            if key not in cells:
                cells[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return cells


def _write_table(out: Path, rows: list[dict[str, str]]) -> Path:
    """prompts.csv; prompts.parquet when a cell holds a carriage return, which CSV reading turns into a newline."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    if any("\r" in value for row in rows for value in row.values()):
        path = out / PARQUET_TABLE_NAME
        # Every column as text: the table reads Parquet strings exactly as it reads CSV cells.
        table = pa.table({c: pa.array([row.get(c) for row in rows], type=pa.string()) for c in columns})
        pq.write_table(table, path)
        return path
    path = out / TABLE_NAME
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="", quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def replay(
    lineage: Path,
    out: Path,
    provider: str | None = None,
    model: str | None = None,
    endpoint: str | None = None,
    search: list[Path] | None = None,
) -> ReplayResult:
    """Write `out/spec.yaml` and `out/prompts.csv` (and `out/references/`) from `lineage`, then check them."""
    if (provider is None) != (model is None):
        raise InvalidInput([Problem("replay", None, "provider" if model else "model",
                                    "--provider and --model go together (a model belongs to one host)")])
    if (out / SPEC_NAME).exists():
        raise InvalidInput([Problem(str(out / SPEC_NAME), None, None, "already exists; replay into a fresh directory")])
    outputs = read_outputs(lineage)
    chosen, notes = choose_versions(outputs)
    hosts = sorted({(o.provider, o.model) for g in chosen.values() for o in g})
    if len(hosts) > 1 and provider is None:
        raise InvalidInput([Problem(str(lineage), None, "provider",
                                    f"the rows name several hosts {hosts}; choose one with --provider/--model")])
    master = _master_seed(chosen)
    out.mkdir(parents=True, exist_ok=True)
    writer = _Writer(lineage, out, list(search or []))
    rows: list[dict[str, str]] = []
    for pid, group in chosen.items():
        seed, why_not = _row_seed(group, master)
        if why_not is not None:
            notes.append(f"{pid}: not replayed: {why_not}")
            continue
        rows.append(writer.row(group, seed))
    if writer.problems:
        raise InvalidInput(writer.problems)
    replayed = [o for g in chosen.values() for o in g if o.prompt_id in {r["prompt_id"] for r in rows}]
    first = replayed[0] if replayed else outputs[0]
    table_path = _write_table(out, rows)
    spec: dict[str, Any] = {
        "name": _dataset_name(lineage),
        "prompts": table_path.name,
        "provider": provider or first.provider,
        "model": model or first.model,
        **({"endpoint": endpoint} if endpoint else {}),
        "variants": max((o.variant for o in replayed), default=0) + 1,
        "seed": master,
        "storage": "./wan_output",
    }
    (out / SPEC_NAME).write_text(_spec_text(spec, lineage), encoding="utf-8")
    retargeted = provider is not None and (provider, model) != (first.provider, first.model)
    try:
        plan = build_plan(load_spec(out / SPEC_NAME))  # refuses what the (new) host cannot do, as validate does
        _check(plan, replayed, retargeted, out / SPEC_NAME)
    except InvalidInput:
        # Leave no spec behind that was refused: the directory stays usable for another attempt.
        for written in [out / SPEC_NAME, table_path, *writer.copied.values()]:
            written.unlink(missing_ok=True)
        raise
    notes.extend(_unrecorded_variants(plan, replayed))
    return ReplayResult(out / SPEC_NAME, table_path, len(rows), len(replayed), len(plan.tasks),
                        plan.digest(), sorted(writer.copied.values()), notes, retargeted)


def _dataset_name(lineage: Path) -> str:
    names = pq.read_table(lineage, columns=["dataset"]).column("dataset").unique().to_pylist()
    return str(names[0])


def _spec_text(spec: dict[str, Any], lineage: Path) -> str:
    header = (
        f"# Rebuilt by `wan-pipeline replay` from {lineage.name} alone.\n"
        "# Generating it on the same host sends the same request bodies as the outputs the lineage names.\n"
    )
    return header + yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)


def _check(plan: Plan, replayed: list[Output], retargeted: bool, spec_file: Path) -> None:
    """Every replayed output planned again as recorded: same fingerprint, or (re-targeted) same params."""
    planned = {(t.prompt_id, t.variant): t for t in plan.tasks}
    problems: list[Problem] = []
    for o in replayed:
        task = planned.get((o.prompt_id, o.variant))
        if task is None:
            problems.append(Problem(str(spec_file), None, None, f"{o.prompt_id}/v{o.variant} is not planned"))
        elif not retargeted and task.fingerprint != o.fingerprint:
            problems.append(Problem(str(spec_file), task.row, None,
                                    f"{o.prompt_id}/v{o.variant} plans fingerprint {task.fingerprint}, "
                                    f"the lineage recorded {o.fingerprint}"))
        elif retargeted and task.params.effective() != _without_paths(o.params, task.params.effective()):
            problems.append(Problem(str(spec_file), task.row, None,
                                    f"{o.prompt_id}/v{o.variant} plans other neutral parameters than recorded"))
    if problems:
        raise InvalidInput(problems)


def _without_paths(recorded: dict[str, Any], planned: dict[str, Any]) -> dict[str, Any]:
    """The recorded parameters with reference paths as replay rewrote them (files count by content)."""
    return {**recorded, **{k: planned[k] for k in ("reference_images", "reference_video") if k in recorded}}


def _unrecorded_variants(plan: Plan, replayed: list[Output]) -> list[str]:
    recorded = {(o.prompt_id, o.variant) for o in replayed}
    extra = [f"{t.prompt_id}/v{t.variant}" for t in plan.tasks if (t.prompt_id, t.variant) not in recorded]
    if not extra:
        return []
    return [f"{len(extra)} planned output(s) have no lineage row (never submitted): {', '.join(extra[:10])}"]
