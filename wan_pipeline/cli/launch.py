"""What `generate` launches in Dagster: the prompt table, the backfill's runs, then lineage.

The generation runs are the ones a UI backfill makes — the partitions still missing, cut into runs by the
generate assets' own backfill policy (`assets.backfill`) and tagged with their range — executed one after the
other in this process on the persistent instance, so they work with the default SQLite instance and no daemon.
Results are read back as data: each run's step failure carries the failed partitions as metadata.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg

from wan_pipeline.assets.backfill import account_concurrency, backfill_chunks, range_tags
from wan_pipeline.assets.dagster_compat import batch_event_writes, prepare_side_by_side
from wan_pipeline.assets.dataset import dataset_definitions, generate_job_name, lineage_job_name, prompt_table_job_name
from wan_pipeline.assets.generation import FAILED_PARTITIONS
from wan_pipeline.assets.keys import key
from wan_pipeline.assets.prompt_table import partition_order
from wan_pipeline.cli.console import EXIT_INVALID, StepFailed, say
from wan_pipeline.cli.head_start import HeadStart
from wan_pipeline.cli.home import ensure_dagster_home
from wan_pipeline.cli.outcome import RunOutcome
from wan_pipeline.cli.progress import LiveProgress, Snapshot
from wan_pipeline.cli.runs import close_orphaned_runs, run_tags, unrecorded_partitions
from wan_pipeline.errors import ConfigError
from wan_pipeline.execution.endpoints import resolve_endpoint
from wan_pipeline.execution.memory import settle_collector
from wan_pipeline.execution.session import open_ledger
from wan_pipeline.money.ledger import FAILED, STORED, SUBMITTED, SUBMITTING
from wan_pipeline.money.lulls import collect_in_lull, wait_for_lull
from wan_pipeline.planning.plan import Plan
from wan_pipeline.planning.spec import DatasetSpec


def launch_generation(
    spec_path: Path,
    spec: DatasetSpec,
    plan: Plan,
    selected: list[str] | None,
    verbose: bool,
    start: tuple[RunOutcome, dict[str, int]],
    early: HeadStart | None,
) -> RunOutcome:
    """The runs from `start` (`outcome.starting_point`, read before `early` began), then lineage."""
    outcome, todo = start
    done = _launch(spec_path, spec, plan, selected, verbose, outcome, todo, early)
    # Its outputs are in a run's range, so in practice already final. Not waited for when the runs raised
    # (Ctrl-C, a failed prompt table): what it sent is recorded, and the next run resumes it.
    if early is not None:
        early.wait()
    return done


def _launch(
    spec_path: Path,
    spec: DatasetSpec,
    plan: Plan,
    selected: list[str] | None,
    verbose: bool,
    outcome: RunOutcome,
    todo: dict[str, int],
    early: HeadStart | None,
) -> RunOutcome:
    home = ensure_dagster_home()
    defs = _definitions(spec_path)
    instance = _instance(home)
    batch_event_writes(instance)
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO" if verbose else "CRITICAL"}}}}
    say(f"  dagster instance: {home}", to_err=True)
    closed = close_orphaned_runs(instance, spec.name)
    if closed:
        say(f"  closed {len(closed)} run(s) left open by a killed process", to_err=True)
    tags = run_tags(spec.name)

    def execute(
        job_name: str, extra: dict[str, str] | None = None, run_id: str | None = None
    ) -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def(job_name).execute_in_process(
            instance=instance,
            tags={**tags, **(extra or {})},
            run_config=run_config,
            raise_on_error=False,
            run_id=run_id,
        )

    table = execute(prompt_table_job_name(spec))
    if not table.success:
        raise StepFailed("prompt_table failed:\n" + _failure_text(table), EXIT_INVALID)
    todo.update(unrecorded_partitions(instance, spec, plan, selected, todo))  # published by their runs, unbought
    policy = defs.resolve_assets_def(key(spec, "media")).backfill_policy
    chunks = backfill_chunks(partition_order(instance, spec), todo, policy)
    if not chunks:
        say("  nothing to generate: every selected output is already stored", to_err=True)
    else:
        lanes = _lanes(instance, spec, policy, len(chunks))
        say(f"  {len(chunks)} run(s) of at most {_chunk_size(policy)} partition(s), as a backfill would, "
            f"{lanes} at a time", to_err=True)  # fmt: skip
        with LiveProgress(_counters(spec, outcome.counts_before), sum(todo.values())):
            first_id = early.run_id if early is not None else None

            def run_one(chunk: list[str]) -> dg.ExecuteInProcessResult:
                run_id = first_id if chunk is chunks[0] else None  # the head start's attempts carry its id
                if chunk is not chunks[0]:
                    wait_for_lull()  # a run's start holds the interpreter: in a gap between two waves
                return execute(generate_job_name(spec), range_tags(chunk[0], chunk[-1]), run_id)

            _read_runs(_side_by_side(run_one, chunks, lanes, spec), len(chunks), outcome)
    outcome.run_failed |= not execute(lineage_job_name(spec)).success
    return outcome


def _instance(home: Path) -> dg.DagsterInstance:
    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # a dagster.yaml that does not load: named, not a stack trace (its text may hold
        # a database password, so only the class of the error; --verbose shows it whole)
        raise ConfigError(
            f"the Dagster instance in {home} did not load ({type(exc).__name__}); check its dagster.yaml"
        ) from exc


def _read_runs(results: Iterator[dg.ExecuteInProcessResult], runs: int, outcome: RunOutcome) -> None:
    """Each range run's result folded into `outcome` as it ends; between runs (not after the last) a full garbage
    collection in a gap between waves (`execution.memory.settle_collector`)."""
    for done, result in enumerate(results, start=1):
        _read_run(result, outcome)
        if done < runs:
            collect_in_lull()


def _side_by_side(
    run_one: Callable[[list[str]], dg.ExecuteInProcessResult], chunks: list[list[str]], lanes: int, spec: DatasetSpec
) -> Iterator[dg.ExecuteInProcessResult]:
    """The range runs, `lanes` at a time, results in order. The first starts alone until its first wave is on
    its way (as many sends recorded as the account has slots, or as its range has partitions) or it ends: a
    run starting takes most of the interpreter for half a second (it reads every partition key and writes its
    "planned" events), which delayed the first wave's creates by as much, and the runs after it are not
    needed before it runs out of creates (the slots serve the earliest run first: `money.wakeups`). So does
    loading the lineage step's modules."""
    pool = ThreadPoolExecutor(lanes, "wan-run")
    try:
        first = pool.submit(run_one, chunks[0])
        wave = min(account_concurrency(spec), len(chunks[0]))
        with open_ledger(spec) as ledger:
            before = ledger.attempt_count(spec.name, sent=True)
            while not first.done() and ledger.attempt_count(spec.name, sent=True) - before < wave:
                time.sleep(0.05)
        settle_collector()  # start-up is over (`execution.memory`)
        preload = threading.Thread(target=_load_lineage_modules, name="wan-preload", daemon=True)
        preload.start()
        rest = deque(pool.submit(run_one, chunk) for chunk in chunks[1:])
        yield first.result()
        del first
        while rest:  # each result dropped once read: a run's result holds all its events
            yield rest.popleft().result()
        preload.join()
    except BaseException:
        # Ctrl-C (or an error reading a run): the runs' threads are not waited for — they wait on the host,
        # minutes for a video — and end with the process, as if it were killed: what they sent is recorded
        # and the next generate resumes it and closes their runs (`cli.runs.close_orphaned_runs`).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _load_lineage_modules() -> None:
    """What the lineage step after the runs loads — Arrow, and pandas, which Arrow imports at its first
    conversion from Python objects: about a second; the lineage, audit and card modules its steps import on
    first use — loaded while the runs wait on the provider, instead of after the last output is stored
    (imports take the GIL; the runs' threads mostly wait on the network), in a gap between two waves."""
    wait_for_lull()
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.dataset  # what `pyarrow.parquet.read_table` imports on its first call
    import pyarrow.parquet

    import wan_pipeline.outputs.audit
    import wan_pipeline.outputs.card
    import wan_pipeline.outputs.lineage  # noqa: F401

    pa.array([""])  # the conversion that imports pandas


def _definitions(spec_path: Path) -> dg.Definitions:
    from wan_pipeline.definitions import resources

    return dg.Definitions.merge(dataset_definitions(spec_path), dg.Definitions(resources=resources()))


def _lanes(instance: dg.DagsterInstance, spec: DatasetSpec, policy: dg.BackfillPolicy | None, runs: int) -> int:
    """How many range runs go at once. One at a time, a run's last wave leaves most of the provider's
    concurrency idle until the next run starts; side by side (the shared account limits in `money.leases` keep
    the total in flight at `max_concurrency`), the next run's creates fill the gaps. Enough runs to hold
    `max_concurrency` outputs plus one, but one at a time where steps can't share the process: an instance
    that captures step output or configures Python log handlers (`dagster_compat.prepare_side_by_side`), or
    the in-process emulator (its state is one process's)."""
    if runs <= 1 or resolve_endpoint(spec).in_process or not prepare_side_by_side(instance):
        return 1
    per_run = (policy.max_partitions_per_run if policy and policy.max_partitions_per_run else runs) * spec.variants
    return max(1, min(runs, MAX_LANES, math.ceil(account_concurrency(spec) / max(1, per_run)) + 2))


def _chunk_size(policy: dg.BackfillPolicy | None) -> str:
    return "1" if policy is None else str(policy.max_partitions_per_run or "all")


def _read_run(result: dg.ExecuteInProcessResult, outcome: RunOutcome) -> None:
    """Fold one generation run's result into the outcome: failed partitions as data, anything else as an error."""
    outcome.runs += 1
    if result.success:
        return
    outcome.run_failed = True
    failed = _failed_partitions(result)
    if failed is None:
        say(f"error: generation run {result.run_id} failed (--verbose shows Dagster's log):", to_err=True)
        say(_failure_text(result), to_err=True)
    else:
        outcome.failed_partitions.update(failed)


def _failed_partitions(result: dg.ExecuteInProcessResult) -> dict[str, str] | None:
    """The step failure's structured list of failed partitions, or None if the run failed otherwise."""
    for event in result.all_events:
        if event.is_step_failure:
            user = event.step_failure_data.user_failure_data
            if user is not None and FAILED_PARTITIONS in user.metadata:
                listing = user.metadata[FAILED_PARTITIONS].value
                return {str(k): str(v) for k, v in listing.items()} if isinstance(listing, Mapping) else {}
    return None


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = data.user_failure_data
            msg = user.description if user and user.description else (data.error.message if data.error else "")
            lines.append((msg or event.message or "").strip())
        elif event.is_run_failure:
            lines.append((event.message or "").strip())
    return "\n".join(line for line in lines if line)


#: most range runs `generate` keeps going at once (each is a thread with its own engine and event loop)
MAX_LANES = 6

#: at the host: created (or being created) and not answered terminally; an attempt recorded and waiting for its
#: slot is not (an engine records up to as many again as its slots, `execution.engine._in_hand`)
_IN_FLIGHT = (SUBMITTING, SUBMITTED)
_WAITING = "waiting"


def _counters(spec: DatasetSpec, start: dict[str, int]) -> Any:
    """Progress from the ledger's counters (three aggregate queries a tick, whatever the dataset's size),
    counted from `start`, the counts where this generate started."""

    def read() -> Snapshot:
        with open_ledger(spec) as ledger:
            now = ledger.latest_state_counts(spec.name, unsent=_WAITING)
            credits, usd = ledger.committed_credits(spec.name), ledger.committed_usd(spec.name)
        return Snapshot(
            stored=max(0, now.get(STORED, 0) - start.get(STORED, 0)),
            in_flight=sum(now.get(s, 0) for s in _IN_FLIGHT),
            failed=max(0, now.get(FAILED, 0) - start.get(FAILED, 0)),
            credits=credits,
            usd=usd,
        )

    return read
