"""Planning: every output of a dataset, with its fixed seed, mode, request fingerprint and estimate.

The same spec, table and reference files always give the same plan, byte for byte: this is what
makes re-runs resume instead of re-buying.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.planning.fingerprint import FingerprintTemplate
from wan_pipeline.planning.fingerprint import canonical_json as canonical_json  # re-exported: callers import it here
from wan_pipeline.planning.fingerprint import fingerprint as fingerprint  # re-exported: the definition lives there
from wan_pipeline.planning.pricing import estimate_task, pricing_key
from wan_pipeline.planning.provenance import Provenance
from wan_pipeline.planning.spec import DatasetSpec, Pricing, spec_line
from wan_pipeline.planning.table import PromptRow, check_table
from wan_pipeline.providers.base import Estimate, GenerationRequest, Issue, Mode, Provider, Reference
from wan_pipeline.providers.catalog import find_model
from wan_pipeline.providers.mediatypes import sniff_mime
from wan_pipeline.providers.params import MAX_SEED, NeutralParams
from wan_pipeline.providers.registry import get_provider


def derive_seed(master: int, prompt_id: str, variant: int) -> int:
    """A seed in 0..2147483647 fixed by (master seed, prompt_id, variant) alone."""
    digest = hashlib.sha256(f"wan-pipeline/seed/v1:{master}:{prompt_id}:{variant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)


def row_seed(row_value: int | None, master: int, prompt_id: str, variant: int) -> tuple[int, str]:
    """A row's own seed is used as given for variant 0; further variants step from it."""
    if row_value is None:
        return derive_seed(master, prompt_id, variant), "derived"
    return (row_value + variant) % (MAX_SEED + 1), "row"


@dataclass(frozen=True)
class PlannedTask:
    dataset: str
    provider: str
    model: str
    prompt_id: str
    variant: int
    row: int
    prompt: str
    params: NeutralParams  # effective; seed always set
    seed_source: str
    mode: Mode
    fingerprint: str
    references: tuple[Reference, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    estimate: Estimate = field(default_factory=lambda: Estimate(None, None))
    #: what the account pays as the spec declares it (prices reported usage after the task ran)
    pricing: Pricing = field(default_factory=Pricing)
    #: the inputs and code that planned it, written with each ledger attempt (lineage names them per row)
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def identity(self) -> str:
        """The idempotency identity of DESIGN §9: (dataset, prompt_id, variant, fingerprint)."""
        return f"{self.dataset}/{self.prompt_id}/{self.variant}/{self.fingerprint}"

    @property
    def seed(self) -> int:
        assert self.params.seed is not None
        return self.params.seed

    def idempotency_key(self, attempt: int) -> str:
        """Deterministic per attempt: even a lost ledger cannot make the provider bill twice."""
        digest = hashlib.sha256(f"{self.identity}#{attempt}".encode()).hexdigest()
        return f"wanp-{digest[:40]}"

    def provenance_columns(self) -> dict[str, Any]:
        """The ledger attempt's provenance fields, fixed when the attempt is first written."""
        return self.provenance.attempt_columns(self.references)

    def request(self, references: tuple[Reference, ...] | None = None) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            prompt=self.prompt,
            params=self.params,
            references=self.references if references is None else references,
        )


@dataclass(frozen=True)
class Plan:
    spec: DatasetSpec
    rows: tuple[PromptRow, ...]
    tasks: tuple[PlannedTask, ...]

    def tasks_for(self, prompt_id: str) -> list[PlannedTask]:
        return list(self._by_prompt.get(prompt_id, ()))

    @cached_property
    def _by_prompt(self) -> dict[str, list[PlannedTask]]:
        """Tasks by prompt_id, built once: looking up a partition's tasks must not scan the plan."""
        index: dict[str, list[PlannedTask]] = {}
        for t in self.tasks:
            index.setdefault(t.prompt_id, []).append(t)
        return index

    def digest(self) -> str:
        """One hash of every planned identity (fingerprints included): equal plans print equal digests."""
        lines = "\n".join(sorted(t.identity for t in self.tasks))
        return hashlib.sha256(lines.encode("utf-8")).hexdigest()[:32]

    @property
    def prompt_ids(self) -> list[str]:
        return [r.prompt_id for r in self.rows]

    def estimate(self) -> Estimate:
        credits = [t.estimate.credits for t in self.tasks]
        usd = [t.estimate.usd for t in self.tasks]
        sources = {t.estimate.source for t in self.tasks}
        return Estimate(
            credits=None if any(c is None for c in credits) else float(sum(c for c in credits if c is not None)),
            usd=None if any(u is None for u in usd) else float(sum(u for u in usd if u is not None)),
            source=sources.pop() if len(sources) == 1 else None,
        )


def build_plan(spec: DatasetSpec) -> Plan:
    """Load, validate and plan; raises InvalidInput listing every problem (nothing is spent)."""
    with _collector_paused():
        return _build_plan(spec)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Planning allocates several objects per row and frees almost none of them: the cyclic garbage collector's
    passes over the growing heap find nothing to free and were a third of planning a 100,000-row table."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:  # whoever paused it resumes it (a plan built in another thread meanwhile is harmless)
            gc.enable()


def _build_plan(spec: DatasetSpec) -> Plan:
    provider = get_provider(spec.provider)
    file = str(spec.prompts_path)
    spec_problems = _spec_problems(spec, provider)
    if spec_problems:
        raise InvalidInput(spec_problems)
    # The table's own problems and the provider's are reported together: one pass fixes the table.
    table = check_table(spec.prompts_path, spec.params, spec.base_dir)
    checked, problems = table.rows, table.problems
    table_bad = {(p.row, p.column) for p in problems}
    bad_rows = {p.row for p in problems}
    rows = [r for r in checked if r.row not in bad_rows]
    tasks: list[PlannedTask] = []
    provenance = Provenance.of(spec)
    # Rows whose parameter cells are equal but for their own seed share one object (planning.row_params): what
    # depends on the parameters but not on the seed is worked out once per object, not once per row. Keyed by
    # id(), which is safe because `table` keeps every such object alive until planning ends.
    shared: dict[int, _Shared] = {}
    checks: dict[tuple[int, bool], list[Issue]] = {}  # per combination (and whether the row has its own seed)
    for row, params in zip(checked, table.shared, strict=True):
        if provider.prompt_fits(spec.model, row.prompt):  # the provider's answer depends on the parameters alone
            key = (id(params), row.params.seed is None)
            issues = checks.get(key)
            if issues is None:
                issues = checks[key] = provider.check(spec.model, row.prompt, row.params)
        else:
            issues = provider.check(spec.model, row.prompt, row.params)
        if issues:
            problems.extend(
                Problem(file, row.row, i.field, i.reason) for i in issues if (row.row, i.field) not in table_bad
            )
            continue
        if row.row in bad_rows:
            continue
        common = shared.get(id(params))
        if common is None:
            common = shared[id(params)] = _Shared.of(spec, provider, params, file)
        if common.problems:
            problems.extend(replace(p, row=row.row) for p in common.problems)
            continue
        tasks.extend(_row_tasks(spec, row, common, provenance))
    if problems:
        raise InvalidInput(sorted(problems, key=lambda p: p.row or 0))
    plan = Plan(spec, tuple(rows), tuple(tasks))
    _check_budget_covers_nothing_impossible(plan)
    return plan


@dataclass(frozen=True)
class _Shared:
    """What every output of rows with the same parameters (but perhaps their seeds) has in common, worked out
    once: reference files, mode, the fingerprint but for prompt and seed, and the estimate."""

    refs: tuple[Reference, ...]
    problems: tuple[Problem, ...]  # reference problems, addressed to row 0
    mode: Mode
    fingerprint: FingerprintTemplate
    #: a price depends on what is made (size, count, duration), never on the seed: one estimate serves all
    estimate: Estimate

    @staticmethod
    def of(spec: DatasetSpec, provider: Provider, params: NeutralParams, file: str) -> _Shared:
        refs, problems = _references(spec, provider, params, 0, file)
        return _Shared(
            refs=refs,
            problems=tuple(problems),
            mode=provider.mode(spec.model, params),
            fingerprint=FingerprintTemplate(spec.provider, spec.model, params, refs),
            estimate=estimate_task(spec.pricing, provider, spec.model, params),
        )


def _row_tasks(spec: DatasetSpec, row: PromptRow, common: _Shared, provenance: Provenance) -> list[PlannedTask]:
    out = []
    for variant in range(spec.variants):
        seed, source = row_seed(row.params.seed, spec.seed, row.prompt_id, variant)
        params = row.params.model_copy(update={"seed": seed})
        out.append(
            PlannedTask(
                dataset=spec.name,
                provider=spec.provider,
                model=spec.model,
                prompt_id=row.prompt_id,
                variant=variant,
                row=row.row,
                prompt=row.prompt,
                params=params,
                seed_source=source,
                mode=common.mode,
                fingerprint=common.fingerprint(row.prompt, seed),
                references=common.refs,
                extra=row.extra,
                estimate=common.estimate,
                pricing=spec.pricing,
                provenance=provenance,
            )
        )
    return out


def _spec_problems(spec: DatasetSpec, provider: Provider) -> list[Problem]:
    problems: list[Problem] = []
    spec_file = spec.spec_file
    info = find_model(spec.provider, spec.model)
    if info is None:
        problems.append(
            Problem(
                spec_file,
                spec_line(spec, "model"),
                "model",
                f"{spec.provider} has no model '{spec.model}' (known: {', '.join(provider.models())})",
            )
        )
        return problems
    return problems


def _check_budget_covers_nothing_impossible(plan: Plan) -> None:
    """The budget is enforced per submission later; here refuse a budget that nothing could bind (no price
    documented, declared or reported on create for some output) or that no task could ever fit."""
    spec = plan.spec
    provider = get_provider(spec.provider)
    info = find_model(spec.provider, spec.model)
    assert info is not None
    problems: list[Problem] = []
    caps: tuple[tuple[str, float | None, Literal["usd", "credits"]], ...] = (
        ("max_usd", spec.budget.max_usd, "usd"),
        ("max_credits", spec.budget.max_credits, "credits"),
    )
    for name, limit, unit in caps:
        if limit is None:  # no cap, nothing to check (and no pass over every task)
            continue
        unpriced = sorted({t.prompt_id for t in plan.tasks
                           if (t.estimate.usd if unit == "usd" else t.estimate.credits) is None})
        if not unpriced or _learnable(spec, provider.charge_on_create, info.usd_per_credit, unit):
            continue
        # An unknown price would count as zero and the cap would never bind: refuse rather than pretend.
        key = pricing_key(info, unit)
        other = "pricing.usd_per_credit" if provider.charge_on_create == "credits" else None
        fix = f"declare what this account pays under `{key}:`" + (f" (or `{other}:`)" if other else "")
        problems.append(Problem(
            spec.spec_file, spec_line(spec, f"budget.{name}"), f"budget.{name}",
            f"{spec.provider}/{spec.model} has no documented or declared {'USD' if unit == 'usd' else 'credit'} "
            f"price for {len(unpriced)} prompt(s) (e.g. {', '.join(unpriced[:3])}) and the host reports no "
            f"{'USD' if unit == 'usd' else 'credit'} charge when a task is created, so this budget cannot bind; "
            f"{fix}, or remove budget.{name}",
        ))
    if problems:
        raise InvalidInput(problems)
    for name, limit in (("max_credits", spec.budget.max_credits), ("max_usd", spec.budget.max_usd)):
        if limit is None:
            continue
        figures = (t.estimate.credits if name == "max_credits" else t.estimate.usd for t in plan.tasks)
        cheapest = min((f for f in figures if f is not None), default=None)
        if cheapest is not None and cheapest > limit:
            word = "credits" if name == "max_credits" else "USD"
            raise InvalidInput([Problem(spec.spec_file, spec_line(spec, f"budget.{name}"), f"budget.{name}",
                                        f"{limit:g} {word} cannot pay for one task ({cheapest:g} {word})")])


def _learnable(spec: DatasetSpec, reported_unit: str | None, documented_rate: float | None, unit: str) -> bool:
    """Can a cap in `unit` bind by learning the price from the charges the host reports on create?"""
    if reported_unit is None:
        return False
    if reported_unit == unit:
        return True
    # Credits reported, a USD cap: learnable only with a rate to convert them.
    return unit == "usd" and (spec.pricing.usd_per_credit or documented_rate) is not None


def _references(
    spec: DatasetSpec, provider: Provider, params: NeutralParams, rownum: int, file: str
) -> tuple[tuple[Reference, ...], list[Problem]]:
    info = find_model(spec.provider, spec.model)
    assert info is not None
    sources: list[tuple[Literal["image", "video"], str]] = [("image", r) for r in params.reference_images or []]
    if params.reference_video:
        sources.append(("video", params.reference_video))
    refs: list[Reference] = []
    problems: list[Problem] = []
    for kind, source in sources:
        column = "reference_images" if kind == "image" else "reference_video"
        if source.startswith(("https://", "http://")):
            refs.append(Reference(kind=kind, source=source, url=source))
            continue
        path = (spec.base_dir / source).resolve()
        data = Path(path).read_bytes()
        mime = sniff_mime(data[:32])
        allowed = info.reference_mime.get(kind, ())
        if mime not in allowed:
            problems.append(
                Problem(
                    file,
                    rownum,
                    column,
                    f"'{source}' is {mime or 'an unknown type'}; "
                    f"{spec.provider}/{spec.model} takes {', '.join(allowed) or 'no ' + kind}",
                )
            )
            continue
        limit = info.reference_max_bytes.get(kind)
        if limit is not None and len(data) > limit:
            problems.append(
                Problem(file, rownum, column, f"'{source}' is {len(data)} bytes; the limit is {limit} bytes")
            )
            continue
        ref = Reference(
            kind=kind,
            source=source,
            path=path,
            mime_type=mime,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        if not spec.is_s3 and ref.kind not in provider.upload_kinds:
            # The host has no upload API and fetches references from public HTTPS URLs: only S3 storage
            # can serve a local file (as a presigned URL). Said now, before anything is spent.
            problems.append(
                Problem(
                    file,
                    rownum,
                    column,
                    f"'{source}' is a local file, but {spec.provider} takes reference media only as public HTTPS "
                    "URLs and has no upload API: set `storage: s3://bucket/prefix` in the spec (the file is then "
                    "passed as a presigned URL), or give an https:// URL",
                )
            )
            continue
        refs.append(ref)
    return tuple(refs), problems
