"""`wan-pipeline`: validate, estimate, generate, lineage, emulator, ui (DESIGN §7).

Exit codes: 0 all done; 1 some outputs failed (listed); 2 invalid input or configuration (nothing spent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from wan_pipeline.errors import ConfigError, InvalidInput, Problem, WanPipelineError
from wan_pipeline.planning.plan import Plan, build_plan
from wan_pipeline.planning.spec import DatasetSpec, load_spec

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
DEFAULT_DAGSTER_HOME = Path.home() / ".wan_pipeline" / "dagster_home"


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME if set, else ~/.wan_pipeline/dagster_home: the same instance `wan-pipeline ui` opens."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "# created by wan-pipeline; Dagster's default SQLite storage lives beside it\n"
            "telemetry:\n  enabled: false\n",
            encoding="utf-8",
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _load(spec_path: str) -> tuple[DatasetSpec, Plan]:
    spec = load_spec(spec_path)
    return spec, build_plan(spec)


def _print_invalid(exc: InvalidInput) -> None:
    print(f"error: {len(exc.problems)} problem(s); nothing was submitted:", file=sys.stderr)
    for p in exc.problems:
        print(f"  - {p}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    spec, plan = _load(args.spec)
    modes: dict[str, int] = {}
    for t in plan.tasks:
        modes[t.mode.value] = modes.get(t.mode.value, 0) + 1
    print(f"ok: {spec.name}: {len(plan.rows)} prompt(s), {len(plan.tasks)} output(s) on {spec.provider}/{spec.model}")
    for mode, n in sorted(modes.items()):
        print(f"  {mode}: {n}")
    return EXIT_OK


def cmd_estimate(args: argparse.Namespace) -> int:
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.status import output_states

    spec, plan = _load(args.spec)
    est = plan.estimate()
    with open_ledger(spec) as ledger:
        states = output_states(plan, ledger)
        committed = ledger.committed_credits(spec.name)
    todo = [s for s in states if s.state != "stored"]
    per = {t.identity: t.estimate for t in plan.tasks}
    todo_credits = [per[s.task.identity].credits for s in todo]
    todo_usd = [per[s.task.identity].usd for s in todo]
    print(f"{spec.name}: {len(plan.tasks)} output(s) on {spec.provider}/{spec.model}")
    print(f"  full dataset:   {_amount(est.credits, '{:g} credits')}, {_amount(est.usd, 'USD {:.4f}')}")
    print(
        f"  still to make:  {len(todo)} output(s), {_amount(_total(todo_credits), 'about {:g} credits')}, "
        f"{_amount(_total(todo_usd), 'about USD {:.4f}')}"
    )
    print(f"  committed so far (ledger): {committed:g} credits")
    remaining = _total(todo_credits)
    if spec.budget.max_credits is not None:
        verdict = (
            "unknown (no documented price)"
            if remaining is None
            else ("fits" if committed + remaining <= spec.budget.max_credits else "will stop early")
        )
        print(f"  budget: max_credits {spec.budget.max_credits:g} -> {verdict}")
    if spec.budget.max_usd is not None:
        print(f"  budget: max_usd {spec.budget.max_usd:g}")
    return EXIT_OK


def _total(values: list[float | None]) -> float | None:
    """A sum, or None when any part is unknown: an unknown price never reads as zero."""
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


def _amount(value: float | None, fmt: str) -> str:
    unit = "USD" if "USD" in fmt else "credits"
    return fmt.format(value) if value is not None else f"{unit}: price not documented"


def _contiguous_blocks(ordered: list[str], wanted: set[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in wanted:
            current.append(key)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def cmd_generate(args: argparse.Namespace) -> int:
    import dagster as dg
    from dagster import DagsterInstance
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from wan_pipeline.assets.dataset import (
        dataset_definitions,
        generate_job_name,
        lineage_job_name,
        prompt_table_job_name,
    )
    from wan_pipeline.cli.progress import Progress
    from wan_pipeline.cli.runs import close_orphaned_runs, run_tags
    from wan_pipeline.definitions import resources
    from wan_pipeline.execution.endpoints import resolve_endpoint
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.status import incomplete_prompts

    spec, plan = _load(args.spec)
    endpoint = resolve_endpoint(spec)  # a missing key is exit 2 before anything else happens
    unknown = [p for p in args.only or [] if p not in plan.prompt_ids]
    if unknown:
        raise InvalidInput(
            [
                Problem(
                    str(spec.prompts_path),
                    None,
                    "prompt_id",
                    f"--only names unknown prompt_id(s): {', '.join(unknown)}",
                )
            ]
        )
    if args.resubmit_ambiguous:
        os.environ["WAN_PIPELINE_RESUBMIT_AMBIGUOUS"] = "1"
    home = ensure_dagster_home()
    defs = dg.Definitions.merge(dataset_definitions(Path(args.spec)), dg.Definitions(resources=resources()))
    instance = DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR" if not args.verbose else "INFO"}}}}
    print(
        f"{spec.name}: {len(plan.tasks)} output(s) on {spec.provider}/{spec.model} via {endpoint.describe()}",
        file=sys.stderr,
    )
    print(f"  dagster instance: {home}", file=sys.stderr)

    closed = close_orphaned_runs(instance, spec.name)
    if closed:
        print(f"  closed {len(closed)} run(s) left open by a killed process", file=sys.stderr)
    tags = run_tags(spec.name)
    result = defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=quiet, tags=tags
    )
    if not result.success:
        print("error: prompt_table failed:\n" + _failure_text(result), file=sys.stderr)
        return EXIT_INVALID

    with open_ledger(spec) as ledger:
        todo = set(incomplete_prompts(plan, ledger))
        before = {a.identity + f"#{a.attempt}" for a in ledger.all_attempts(spec.name) if a.task_id}
    if args.only:
        todo &= set(args.only)
    ordered = list(instance.get_dynamic_partitions(spec.partitions_name))
    blocks = _contiguous_blocks(ordered, todo)
    total_outputs = sum(len(plan.tasks_for(p)) for p in (args.only or plan.prompt_ids))
    run_failed = False
    if not blocks:
        print("  nothing to generate: every selected output is already stored", file=sys.stderr)
    with Progress(plan, total_outputs) if blocks else _Null():
        for block in blocks:
            block_tags = {**tags, ASSET_PARTITION_RANGE_START_TAG: block[0], ASSET_PARTITION_RANGE_END_TAG: block[-1]}
            res = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
                instance=instance, tags=block_tags, raise_on_error=False, run_config=quiet
            )
            run_failed |= not res.success
            if not res.success and not _has_partition_failures(res):
                print("error: generation run failed:\n" + _failure_text(res), file=sys.stderr)
    lineage_res = defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=quiet, tags=tags
    )
    return _summary(spec, plan, before, args.only, run_failed or not lineage_res.success)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _has_partition_failures(result: object) -> bool:
    from wan_pipeline.assets.generation import PARTIAL_FAILURE

    return PARTIAL_FAILURE in _failure_text(result)


def _failure_text(result: object) -> str:
    lines = []
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_step_failure or event.is_run_failure:
            data = event.step_failure_data if event.is_step_failure else None
            msg = data.error.message if data and data.error else (event.message or "")
            if data and data.user_failure_data and data.user_failure_data.description:
                msg = data.user_failure_data.description
            lines.append(msg.strip())
    return "\n".join(lines)


def _summary(spec: DatasetSpec, plan: Plan, before: set[str], only: list[str] | None, run_failed: bool) -> int:
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.lineage import LINEAGE_PATH
    from wan_pipeline.outputs.status import counts, output_states, spend_text

    with open_ledger(spec) as ledger:
        states = [s for s in output_states(plan, ledger) if not only or s.task.prompt_id in only]
        after = {a.identity + f"#{a.attempt}" for a in ledger.all_attempts(spec.name) if a.task_id}
        committed = spend_text(ledger.committed_credits(spec.name), ledger.committed_usd(spec.name))
    c = counts(states)
    print("", file=sys.stderr)
    print(f"summary for {spec.name}:")
    print(f"  outputs stored:   {c.get('stored', 0)}/{len(states)}")
    print(f"  new submissions:  {len(after - before)}")
    print(f"  spend (final or held, whole dataset): {committed}")
    print(f"  media:   {Path(spec.storage_root) / 'media' if not spec.is_s3 else spec.storage_root + '/media'}")
    print(f"  lineage: {spec.storage_root}/{LINEAGE_PATH}")
    bad = [s for s in states if s.state != "stored"]
    if bad:
        print(f"  not done ({len(bad)}):")
        for s in bad:
            print(f"    - {s.task.prompt_id} v{s.task.variant}: {s.state}" + (f" — {s.error}" if s.error else ""))
        return EXIT_FAILED
    return EXIT_FAILED if run_failed else EXIT_OK


def cmd_lineage(args: argparse.Namespace) -> int:
    from wan_pipeline.execution.session import open_ledger
    from wan_pipeline.outputs.lineage import write_lineage
    from wan_pipeline.outputs.storage import open_storage

    spec = load_spec(args.spec)
    with open_ledger(spec) as ledger:
        uri, table = write_lineage(ledger, spec.name, open_storage(spec.storage_root))
    frame = table.to_pandas()
    print(f"{spec.name}: lineage at {uri} ({len(frame)} row(s))")
    if frame.empty:
        return EXIT_OK
    by_status = frame.groupby("status").size().to_dict()
    print("  rows by status: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    print(
        f"  prompts: {frame['prompt_id'].nunique()}, files: {int(frame['media_uri'].notna().sum())}, "
        f"bytes: {int(frame['bytes'].fillna(0).sum())}"
    )
    print(f"  credits final: {float(frame['credits_final'].fillna(0).sum()):g}")
    if args.json:
        print(
            json.dumps(
                json.loads(
                    frame.drop(columns=["request_json", "params_json"]).to_json(orient="records", date_format="iso")
                ),
                ensure_ascii=False,
                indent=1,
            )
        )
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from wan_pipeline.emulator.faults import FaultConfig
    from wan_pipeline.emulator.server import serve
    from wan_pipeline.emulator.state import EmulatorConfig

    config = EmulatorConfig(
        queue_s=args.queue_s,
        process_s=args.process_s,
        api_keys=args.api_key or [],
        initial_credits=args.credits,
        state_path=args.state,
        faults=FaultConfig.model_validate_json(args.faults) if args.faults else FaultConfig(),
    )
    print(
        f"emulator on http://{args.host}:{args.port} ({args.root_provider} at /, every provider at /<provider>; "
        "report: /_emulator/report)",
        file=sys.stderr,
        flush=True,
    )
    serve(config, host=args.host, port=args.port, root_protocol=args.root_provider)
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    home = ensure_dagster_home()
    if args.spec:
        os.environ["WAN_PIPELINE_SPECS"] = os.pathsep.join(str(Path(s).resolve()) for s in args.spec)
    print(f"dagster instance: {home}", file=sys.stderr)
    os.execvp("dagster", ["dagster", "dev", "-m", "wan_pipeline.definitions", "-h", args.host, "-p", str(args.port)])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wan-pipeline", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a spec and its prompt table; spend nothing")
    v.add_argument("spec")
    v.set_defaults(fn=cmd_validate)
    e = sub.add_parser("estimate", help="count outputs and credits/USD before spending")
    e.add_argument("spec")
    e.set_defaults(fn=cmd_estimate)
    g = sub.add_parser("generate", help="generate what is missing, through Dagster")
    g.add_argument("spec")
    g.add_argument("--only", nargs="+", metavar="PROMPT_ID", help="only these prompt ids")
    g.add_argument("-v", "--verbose", action="store_true", help="show Dagster's log")
    g.add_argument(
        "--resubmit-ambiguous",
        action="store_true",
        help="re-send creates that may already have reached a host without idempotency keys "
        "(check the provider's dashboard first: this can buy an output twice)",
    )
    g.set_defaults(fn=cmd_generate)
    lg = sub.add_parser("lineage", help="write and summarise the lineage Parquet")
    lg.add_argument("spec")
    lg.add_argument("--json", action="store_true", help="also print every row as JSON")
    lg.set_defaults(fn=cmd_lineage)
    em = sub.add_parser("emulator", help="serve the provider emulator on 127.0.0.1")
    em.add_argument("--port", type=int, default=8765)
    em.add_argument("--host", default="127.0.0.1")
    em.add_argument(
        "--root-provider", default="rivya", help="protocol also served at the root; every protocol is under /<provider>"
    )
    em.add_argument("--queue-s", type=float, default=0.3)
    em.add_argument("--process-s", type=float, default=0.7)
    em.add_argument("--credits", type=float, default=100_000)
    em.add_argument("--api-key", action="append", help="accepted bearer token (repeatable); default: any")
    em.add_argument("--state", help="JSON file to persist the emulator's state in")
    em.add_argument("--faults", help='fault config JSON, e.g. \'{"rate_limit": {"rate": 0.2}}\'')
    em.set_defaults(fn=cmd_emulator)
    ui = sub.add_parser("ui", help="open the Dagster UI on the same instance `generate` records into")
    ui.add_argument("spec", nargs="*")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(fn=cmd_ui)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except InvalidInput as exc:
        _print_invalid(exc)
        return EXIT_INVALID
    except ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except WanPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
