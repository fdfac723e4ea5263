"""CPU per asset materialization written to the instance: Dagster's SQLite event log vs ours
(`assets.dagster_compat.PooledSqliteEventLogStorage`, which `generate` and `wan-pipeline ui` configure).

A partition's materialization is logged as soon as its outputs are stored, while the run's other tasks wait on
the provider in the same process (issue 7): every millisecond of interpreter time spent writing it is taken
from the event loops that poll. Here one run of a partitioned asset logs N materializations (with a data
version tag, as `generate`'s do) on each storage in turn, in a fresh instance, and so does a run that logs
none; the figures are CPU time (process time, not wall), best of `--repeat`: a run's own events (start, step,
end) and each materialization beyond them.

Usage: python benchmarks/bench_event_store.py [--n 1000] [--repeat 3]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import dagster as dg
from dagster import OpExecutionContext

OURS = """event_log_storage:
  module: wan_pipeline.assets.dagster_compat
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {base}
telemetry:
  enabled: false
"""
STOCK = "telemetry:\n  enabled: false\n"
#: as `generate` runs them: Dagster's console log only for what is critical
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _job(n: int) -> dg.JobDefinition:
    @dg.op
    def materialize(context: OpExecutionContext) -> None:
        for i in range(n):
            context.log_event(
                dg.AssetMaterialization(
                    asset_key="bench", partition=f"p{i}", tags={"dagster/data_version": f"v{i}"}
                )
            )

    @dg.job
    def bench() -> None:
        materialize()

    return bench


def _run_cpu(config: str, n: int) -> float:
    """CPU seconds of one run logging `n` materializations, in a fresh instance on `config` (after a first run)."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text(config.format(base=home / "history" / "runs"), encoding="utf-8")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            job = _job(n)
            job.execute_in_process(instance=instance, run_config=QUIET)  # warm: first-use imports and schema checks
            start = time.process_time()
            job.execute_in_process(instance=instance, run_config=QUIET)
            return time.process_time() - start


def _measure(config: str, n: int, repeat: int) -> tuple[float, float]:
    """(CPU ms of a run's own events, CPU ms per materialization): a run of none, and one of `n`, best of each."""
    fixed = min(_run_cpu(config, 0) for _ in range(repeat))
    loaded = min(_run_cpu(config, n) for _ in range(repeat))
    return fixed * 1e3, (loaded - fixed) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    stock_run, stock = _measure(STOCK, args.n, args.repeat)
    ours_run, ours = _measure(OURS, args.n, args.repeat)
    print(json.dumps({"n": args.n, "stock_ms_per_event": round(stock, 3), "ours_ms_per_event": round(ours, 3),
                      "ratio": round(stock / ours, 2), "stock_ms_per_run": round(stock_run, 1),
                      "ours_ms_per_run": round(ours_run, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
